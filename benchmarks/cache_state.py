"""How much a kernel's cache state moves its time: in a model, alone with warm caches, alone cold.

The kernel campaign times single-op graphs run back to back, so a kernel's weights and input stay
in the caches between runs.  Inside a model the same kernel runs after the rest of the model has
streamed its own weights and activations through the caches.  For a few kernels of zoo models
this script times the kernel three ways, each in canary units (ORT's profiler, median over runs,
the canary timed before and after):

* ``in_model``: the kernel's record in the whole model, profiled;
* ``alone_warm``: the kernel cut out of the model (its node and initializers, the same optimized
  kernel), run back to back as the campaign does;
* ``alone_cold``: the same graph with ``--evict-mb`` of memory written between runs (untimed),
  so its weights and input come from DRAM.

    python benchmarks/cache_state.py [--rounds 3] [--runs 20] [--evict-mb 64]
           [--out benchmarks/results/cache_state.json]

Nothing here is fitted; the figures say where a campaign timed warm underprices a kernel that runs
cold in its model (README, "Where the canary falls short").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

# (zoo model name, op type of the kernel, which one of that op type in graph order)
CASES = (
    ("vit_192x4_h3_p32_r224", "Conv", 0),  # patch embedding, 2.4 MB of weights
    ("vit_192x4_h3_p16_r112", "Conv", 0),  # patch embedding, 0.6 MB
    ("deit_256x6_h4_p16_r160", "Conv", 0),
    ("resnet50_w1.0_r224", "Conv", 0),  # a CNN stem, 7x7 / 2
    ("convnext_nano_r160", "Conv", 0),  # 4 px patch stem
    ("convnext_nano_r160", "MatMul", 0),  # first channels-last MLP matmul
)


def _extract(model, op_type: str, index: int):
    """The ``index``-th ``op_type`` node of ``model`` as a graph of its own (activations as inputs)."""
    import onnx
    import onnx.utils

    model = onnx.shape_inference.infer_shapes(model)
    nodes = [n for n in model.graph.node if n.op_type == op_type]
    if index >= len(nodes):
        raise SystemExit(f"error: the model has {len(nodes)} {op_type} nodes, not {index + 1}")
    node = nodes[index]
    inits = {i.name for i in model.graph.initializer}
    inputs = [x for x in node.input if x and x not in inits]
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
              for v in (*model.graph.input, *model.graph.value_info)}
    alone = onnx.utils.Extractor(model).extract_model(inputs, [node.output[0]])
    return alone, node, shapes[node.input[0]]


def _profile(model, device, op_type: str, shape, runs: int, evict: np.ndarray | None) -> float:
    """Median ms of the first (in graph order) kernel of ``op_type`` whose input shape is ``shape``."""
    from hwnas.measure import make_session, optimized_node_attributes, parse_kernel_trace, random_feed

    with tempfile.TemporaryDirectory(prefix="hwnas-cache-") as tmp:
        opt = os.path.join(tmp, "optimized.onnx")
        sess = make_session(model, device, profile_prefix=os.path.join(tmp, "trace"), optimized_path=opt)
        feed = random_feed(sess, 0)
        for _ in range(3 + runs):
            if evict is not None:
                evict += 1.0  # writes every cache line of a buffer larger than the caches
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
        recs = parse_kernel_trace(events, optimized_node_attributes(opt), skip_runs=3)
    kinds = {op_type, "Fused" + op_type, "Gemm", "FusedMatMul"} if op_type == "MatMul" else {op_type, "Fused" + op_type}
    # ORT may flatten a matmul's leading axes (1 x 40 x 40 x 80 -> 1600 x 80): same elements, same last axis
    cands = sorted((r for r in recs if r.op_type in kinds and math.prod(r.input_shapes[0]) == math.prod(shape)
                    and r.input_shapes[0][-1] == shape[-1]), key=lambda r: r.node_index)
    if not cands:
        raise SystemExit(f"error: no {op_type} kernel on a {shape} input in the optimized graph")
    return cands[0].duration_ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20, help="profiled runs per timing")
    ap.add_argument("--evict-mb", type=int, default=64, help="memory written between cold runs")
    ap.add_argument("--device", default="cpu-1t")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cache_state.json")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.runs < 1 or args.evict_mb < 1:
        print("error: --rounds, --runs and --evict-mb must be >= 1", file=sys.stderr)
        return 2

    from results_io import save_results

    from hwnas.devices import load_device
    from hwnas.measure import Measurer
    from hwnas.zoo_sealed import model_by_name

    device = load_device(args.device)
    evict = np.ones(args.evict_mb * 2**20 // 4, np.float32)
    rows = []
    t0 = time.time()
    with Measurer(device) as m:
        for name, op_type, index in CASES:
            full = model_by_name(name).build()
            alone, node, shape = _extract(full, op_type, index)
            got: dict[str, list[float]] = {"in_model": [], "alone_warm": [], "alone_cold": []}
            for _ in range(args.rounds):
                before = m._canary_round()
                ms_model = _profile(full, device, op_type, shape, args.runs, None)
                ms_warm = _profile(alone, device, op_type, shape, args.runs, None)
                ms_cold = _profile(alone, device, op_type, shape, args.runs, evict)
                canary = math.sqrt(before * m._canary_round())
                got["in_model"].append(ms_model / canary)
                got["alone_warm"].append(ms_warm / canary)
                got["alone_cold"].append(ms_cold / canary)
            med = {k: float(np.median(v)) for k, v in got.items()}
            row = {"model": name, "node": node.name, "op_type": op_type, "input_shape": list(shape),
                   **{f"{k}_canary": v for k, v in med.items()},
                   "in_model_over_warm": med["in_model"] / med["alone_warm"],
                   "cold_over_warm": med["alone_cold"] / med["alone_warm"],
                   "rounds": {k: [round(x, 5) for x in v] for k, v in got.items()}}
            rows.append(row)
            print(f"{name:26s} {op_type:7s} in model {med['in_model']:.4f}  alone warm {med['alone_warm']:.4f}  "
                  f"alone cold {med['alone_cold']:.4f} canaries   in-model / warm {row['in_model_over_warm']:.2f}  "
                  f"cold / warm {row['cold_over_warm']:.2f}", flush=True)
        canaries = list(m.canary_history_ms)
    out = {"device": args.device, "rounds": args.rounds, "runs": args.runs, "evict_mb": args.evict_mb,
           "canary_ms_range": [min(canaries), max(canaries)], "seconds": time.time() - t0,
           "command": "python benchmarks/cache_state.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "kernels": rows}
    save_results(out, args.out)
    print(f"saved {args.out} ({out['seconds']:.0f} s, canary {min(canaries):.2f}-{max(canaries):.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
