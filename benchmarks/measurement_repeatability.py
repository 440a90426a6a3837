"""Two independent measurement passes over sampled architectures: how often do they agree?

Each pass runs in its own process (fresh sessions, fresh canary).  Agreement is reported for
absolute latency (median ms) and canary-relative latency.  Target (issue #2): >= 90% within
±5% and 100% within ±10%, canary-relative.

    python benchmarks/measurement_repeatability.py [--n 20] [--device cpu-1t] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def one_pass(device: str, n: int, seed: int) -> list[dict]:
    from hwnas.builders.onnx_graph import build_onnx
    from hwnas.devices import load_device
    from hwnas.measure import Measurer
    from hwnas.space import DEFAULT_SPACE

    archs = DEFAULT_SPACE.sample_many(n, seed=seed)
    out = []
    with Measurer(load_device(device)) as m:
        for a in archs:
            r = m.measure(build_onnx(a), str(a))
            out.append({"arch": str(a), "latency_ms": r.latency_ms, "relative_to_canary": r.relative_to_canary,
                        "noise_rel": r.noise_rel, "canary_ms": r.canary_ms})
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    dev = np.abs(a / b - 1.0)
    return {"within_5pct": float(np.mean(dev <= 0.05)), "within_10pct": float(np.mean(dev <= 0.10)),
            "mean_abs_dev_pct": float(100 * dev.mean()), "max_abs_dev_pct": float(100 * dev.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--device", default="cpu-1t")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "measurement_repeatability.json"))
    ap.add_argument("--pass-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pass_only:
        json.dump(one_pass(args.device, args.n, args.seed), sys.stdout)
        return
    passes, t0 = [], time.time()
    for i in range(2):
        r = subprocess.run([sys.executable, __file__, "--pass-only", "--n", str(args.n), "--device", args.device,
                            "--seed", str(args.seed)], capture_output=True, text=True, check=True)
        passes.append(json.loads(r.stdout))
        print(f"pass {i + 1}: {len(passes[-1])} architectures measured", file=sys.stderr)
    p1, p2 = passes
    res = {
        "device": args.device, "n": args.n, "seed": args.seed, "seconds": round(time.time() - t0, 1),
        "absolute": agreement(np.array([r["latency_ms"] for r in p1]), np.array([r["latency_ms"] for r in p2])),
        "canary_relative": agreement(np.array([r["relative_to_canary"] for r in p1]),
                                     np.array([r["relative_to_canary"] for r in p2])),
        "canary_ms_per_pass": [float(np.median([r["canary_ms"] for r in p])) for p in passes],
        "median_noise_rel": float(np.median([r["noise_rel"] for p in passes for r in p])),
        "passes": passes,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"{'':18s} {'within ±5%':>11s} {'within ±10%':>12s} {'mean |dev|':>11s} {'max |dev|':>10s}")
    for k in ("absolute", "canary_relative"):
        a = res[k]
        print(f"{k:18s} {100 * a['within_5pct']:10.0f}% {100 * a['within_10pct']:11.0f}% "
              f"{a['mean_abs_dev_pct']:10.1f}% {a['max_abs_dev_pct']:9.1f}%")
    print(f"canary median per pass (ms): {res['canary_ms_per_pass']}; saved {args.out}")


if __name__ == "__main__":
    main()
