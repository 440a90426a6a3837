"""Are the prediction intervals calibrated?  Nominal 90% intervals judged on measurements that
neither fitted the predictor nor calibrated the interval.

In-space (per bundled profile, per predictor): the profile's measured architectures are split
three ways by a hash of their string (the same split every run): the predictor is fitted on
part A, its interval computed from its residuals on part B (as ``hwnas train`` does on its
held-out half), and coverage counted on part C.

ONNX models (kernel and MACs predictors): every zoo family is held out of the fit in turn
(``evaluate_families``); each family's coverage is judged with the interval computed from the
*other* families' residuals only.

    python benchmarks/intervals.py [--profiles cpu-1t cpu-2t cpu-1t-int8]

No measurement: reads the profiles' stored data.  Few-shot intervals are judged in
``benchmarks/new_device.py`` (coverage on the full profile's architectures).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PREDICTORS = ("lut", "learned", "macs", "macs+", "kernel")


def three_way(keys):
    from hwnas.space import stable_hash

    parts: dict[str, list[str]] = {"A": [], "B": [], "C": []}
    for k in keys:
        parts["ABC"[stable_hash(k, "intervals") % 3]].append(k)
    return parts


def in_space(profile) -> dict:
    from hwnas.errors import HwnasError
    from hwnas.predictors import make_predictor
    from hwnas.predictors.data import arch_data
    from hwnas.predictors.interval import PredictionInterval

    parts = three_way(list(profile.table("arch")["key"]))
    B, C = arch_data(profile, parts["B"]), arch_data(profile, parts["C"])
    out = {"n": {k: len(v) for k, v in parts.items()}, "predictors": {}}
    for name in PREDICTORS:
        try:
            pred = make_predictor(name).fit(profile, parts["A"])
        except HwnasError as e:  # e.g. the kernel predictor on a profile without kernel records
            print(f"  {name:8s} skipped: {e}", flush=True)
            continue
        iv = PredictionInterval.from_residuals(pred.predict_relative(B.archs), B.relative)
        pc = pred.predict_relative(C.archs)
        cov = float(np.mean(iv.contains(pc, C.relative)))
        lo, hi = iv.bounds(1.0)
        out["predictors"][name] = {"coverage": cov, "interval_rel": [lo, hi], "n_judged": len(C.archs)}
        print(f"  {name:8s} in-space: nominal 90%  covered {100 * cov:5.1f}% of {len(C.archs)}  "
              f"(interval x{lo:.3f} .. x{hi:.3f})", flush=True)
    return out


def families(profile) -> dict:
    from hwnas.predictors.evaluate import evaluate_families
    from hwnas.predictors.interval import PredictionInterval

    fam = evaluate_families(profile).get("families", {})
    out: dict = {}
    for name in ("kernel", "macs"):
        inside, total, per = 0, 0, {}
        if len(fam) < 2:
            continue
        for f, g in fam.items():
            others = [m for h, gg in fam.items() if h != f for m in gg["models"]]
            iv = PredictionInterval.from_residuals([m[name] for m in others], [m["measured"] for m in others])
            ok = iv.contains([m[name] for m in g["models"]], [m["measured"] for m in g["models"]])
            per[f] = {"covered": int(ok.sum()), "n": int(len(ok))}
            inside += int(ok.sum())
            total += int(len(ok))
        out[name] = {"coverage": inside / max(total, 1), "n_judged": total, "families": per}
        print(f"  {name:8s} ONNX, family held out: nominal 90%  covered {100 * inside / max(total, 1):5.1f}% "
              f"of {total}  " + " ".join(f"{f}:{v['covered']}/{v['n']}" for f, v in per.items()), flush=True)
    return out


def main() -> None:
    from hwnas.profile import Profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", nargs="+", default=["cpu-1t", "cpu-2t", "cpu-1t-int8"])
    ap.add_argument("--out", default=str(HERE / "results" / "intervals.json"))
    args = ap.parse_args()
    res: dict = {"nominal": 0.9, "profiles": {}}
    for name in args.profiles:
        t0 = time.perf_counter()
        prof = Profile.load(ROOT / "profiles" / name)
        print(f"{name}:", flush=True)
        res["profiles"][name] = {"in_space": in_space(prof), "onnx_families": families(prof),
                                 "seconds": round(time.perf_counter() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
