"""Why the error, per kernel family: predicted (``hwnas predict --breakdown``) against measured
(``hwnas measure --kernels``) kernel times of the same ONNX models, joined by node name.

    python benchmarks/kernel_breakdown.py MODEL.onnx... [--profile DIR] [--device cpu-1t] [--out FILE]

Prints, per model, the end-to-end error and, per kernel family, predicted / measured time and
the family's share of the measured time; saves the same as JSON (default
``benchmarks/results/kernel_breakdown.json``).  Measured kernel times are the profiler's medians
scaled to the unprofiled latency; predicted ones the kernel predictor's, scaled to its end-to-end
prediction: both add up to their model's figure, so a family's ratio says where the error is.
Run it on a quiet machine (it measures)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--profile", type=Path, default=None, help="profile directory (default: the bundled one)")
    ap.add_argument("--device", default=None, help="device to measure on (default: the profile's)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "kernel_breakdown.json")
    args = ap.parse_args(argv)

    from hwnas.cli.measure_cmds import _measured_kernels
    from hwnas.devices import load_device
    from hwnas.measure import Measurer
    from hwnas.onnx_io import load_onnx
    from hwnas.paths import default_profile_dir
    from hwnas.predictors import load_predictor
    from hwnas.profile import Profile

    prof_dir = args.profile or default_profile_dir()
    pred = load_predictor(prof_dir, "kernel", target_kind="onnx")
    device = load_device(args.device) if args.device else Profile.load(prof_dir, check_machine=False).device
    results = []
    with Measurer(device) as m:
        for path in args.models:
            model = load_onnx(path).model
            predicted_ms = float(pred.predict([model])[0])
            kernels = pred.breakdown(model)
            scale = predicted_ms / max(sum(k.relative for k in kernels), 1e-12)
            meas = m.measure(model, path.name)
            measured = _measured_kernels(m.profile_kernels(model), meas.latency_ms)
            fam = defaultdict(lambda: {"predicted_ms": 0.0, "measured_ms": 0.0, "n": 0})
            for k in kernels:
                fam[k.family]["predicted_ms"] += k.relative * scale
            for k in measured:
                fam[k["family"]]["measured_ms"] += k["latency_ms"]
                fam[k["family"]]["n"] += 1
            row = {"model": path.name, "predicted_ms": predicted_ms, "measured_ms": meas.latency_ms,
                   "error_pct": 100 * (predicted_ms / meas.latency_ms - 1), "noise_rel": meas.noise_rel,
                   "families": dict(fam)}
            results.append(row)
            print(f"{path.name}: predicted {predicted_ms:.3f} ms, measured {meas.latency_ms:.3f} ms "
                  f"({row['error_pct']:+.1f}%)")
            for f, v in sorted(fam.items(), key=lambda kv: -kv[1]["measured_ms"]):
                ratio = v["predicted_ms"] / v["measured_ms"] if v["measured_ms"] > 0 else float("inf")
                share = 100 * v["measured_ms"] / meas.latency_ms
                print(f"    {f:12s} n={v['n']:4d}  predicted {v['predicted_ms']:8.3f}  measured "
                      f"{v['measured_ms']:8.3f} ms  ratio {ratio:5.2f}  share {share:5.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"profile": str(prof_dir), "device": device.name, "models": results}, indent=1))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
