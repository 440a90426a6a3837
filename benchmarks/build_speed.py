"""Benchmark: how fast are ONNX graphs built (hwnas.builders.onnx_graph vs torch.onnx.export)?

Builds ``--n`` seeded sample architectures of ``DEFAULT_SPACE`` as full ONNX models (random
weights included) and every block of them as a single-block graph, and times each build with
``time.perf_counter``.  For comparison, ``--n-export`` of the same architectures are exported
with the legacy TorchScript exporter (``torch.onnx.export(..., dynamo=False)``).

Usage::

    python benchmarks/build_speed.py [--n 50] [--n-export 3] [--seed 0] [--out benchmarks/results/build_speed.json]

Prints a table and writes the figures (milliseconds) as JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

from hwnas.builders.onnx_graph import build_block_onnx, build_onnx
from hwnas.cost import arch_cost
from hwnas.layers import plan
from hwnas.space import DEFAULT_SPACE, Arch

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "build_speed.json"


def _time_ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call in milliseconds, and its result."""
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1e3, result


def _summary(ms: list[float]) -> dict[str, float]:
    """Median / p90 / mean / min / max of a list of durations (ms)."""
    a = np.asarray(ms, dtype=np.float64)
    return {
        "n": int(a.size),
        "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "mean_ms": float(a.mean()),
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
    }


def bench_full(archs: list[Arch], seed: int) -> list[dict[str, Any]]:
    """Time ``build_onnx`` (random weights) per architecture; one warm-up build first."""
    build_onnx(archs[0], seed=seed)
    rows = []
    for a in archs:
        ms, model = _time_ms(lambda a=a: build_onnx(a, seed=seed))
        rows.append(
            {
                "arch": str(a),
                "params": arch_cost(a).params,
                "macs": arch_cost(a).macs,
                "nodes": len(model.graph.node),
                "bytes": model.ByteSize(),
                "build_ms": ms,
            }
        )
    return rows


def bench_blocks(archs: list[Arch], seed: int) -> list[float]:
    """Time ``build_block_onnx`` for every block of every architecture (ms each)."""
    out = []
    for a in archs:
        for spec in plan(a).all_blocks():
            ms, _ = _time_ms(lambda s=spec: build_block_onnx(s, seed=seed))
            out.append(ms)
    return out


def _median_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time (ms) of ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        ms, result = _time_ms(fn)
        times.append(ms)
    return float(np.median(times)), result


def bench_torch_export(archs: list[Arch], seed: int, repeats: int = 3) -> list[dict[str, Any]]:
    """Legacy ``torch.onnx.export`` (opset 17, into memory) vs ``build_onnx`` on the same archs.

    Each figure is the median of ``repeats`` runs: torch model construction, export of the
    eval-mode model (BN folded by the exporter's constant folding), and ``build_onnx``.
    """
    import torch

    from hwnas.builders.torch_model import build_torch

    torch.manual_seed(seed)
    rows = []
    for a in archs:
        ms_torch, model = _median_ms(lambda a=a: build_torch(a).eval(), repeats)
        x = torch.zeros(1, 3, a.resolution, a.resolution)

        def export() -> bytes:
            buf = io.BytesIO()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model, (x,), buf, input_names=["input"], output_names=["output"], opset_version=17, dynamo=False
                )
            return buf.getvalue()

        ms_export, _ = _median_ms(export, repeats)
        ms_direct, _ = _median_ms(lambda a=a: build_onnx(a, seed=seed), repeats)
        rows.append(
            {
                "arch": str(a),
                "torch_build_ms": ms_torch,
                "torch_export_ms": ms_export,
                "hwnas_build_ms": ms_direct,
                "speedup": (ms_torch + ms_export) / ms_direct,
            }
        )
    return rows


def _env() -> dict[str, Any]:
    import onnxruntime

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="number of sampled architectures (default 50)")
    ap.add_argument("--n-export", type=int, default=3, help="architectures also exported with torch (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of sampling and weights (default 0)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be >= 1")

    archs = DEFAULT_SPACE.sample_many(args.n, seed=args.seed)
    full = bench_full(archs, args.seed)
    blocks = bench_blocks(archs, args.seed)
    export = bench_torch_export(archs[: args.n_export], args.seed) if args.n_export > 0 else []

    full_ms = [r["build_ms"] for r in full]
    per_mparam = [r["build_ms"] / (r["params"] / 1e6) for r in full]
    result = {
        "n_archs": args.n,
        "seed": args.seed,
        "env": _env(),
        "full_model": _summary(full_ms),
        "full_model_ms_per_mparam": _summary(per_mparam),
        "block": _summary(blocks),
        "torch_export_note": "median of 3 runs each; speedup = (torch build + export) / hwnas build",
        "torch_export": export,
        "models": full,
    }

    print(f"ONNX build speed, {args.n} sampled archs (seed {args.seed}), times in ms")
    print(f"{'what':<34}{'n':>6}{'median':>10}{'p90':>10}{'max':>10}")
    for label, s in (("full model (build_onnx)", result["full_model"]),
                     ("  per M params", result["full_model_ms_per_mparam"]),
                     ("block (build_block_onnx)", result["block"])):  # fmt: skip
        print(f"{label:<34}{s['n']:>6}{s['median_ms']:>10.2f}{s['p90_ms']:>10.2f}{s['max_ms']:>10.2f}")
    if export:
        print()
        print(f"{'arch':<72}{'torch build':>12}{'export':>10}{'hwnas':>9}{'speedup':>9}")
        for r in export:
            print(
                f"{r['arch']:<72}{r['torch_build_ms']:>12.1f}{r['torch_export_ms']:>10.1f}"
                f"{r['hwnas_build_ms']:>9.1f}{r['speedup']:>8.0f}x"
            )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
