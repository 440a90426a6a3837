"""Latency predictors of the vit space, judged on architectures they were never fitted on.

On a vit profile (``hwnas profile --space vit``): the measured architectures are split by a hash of
their string (the same 50/50 split as ``hwnas train``); each predictor (``macs``, ``lut``,
``learned``) is fitted on one half and scored on the other, in canary units.  Also a 5-fold
cross-validation (folds by hash, every architecture held out once, scores pooled), how close the
raw block-table sum comes to the whole-model measurement, the measured latency span and the
noise the profile saw.  Prints a table and saves ``benchmarks/results/vit_space.json``.

    python benchmarks/vit_space.py [--profile profiles/cpu-1t-vit]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
N_FOLDS = 5


def main() -> None:
    from hwnas.paths import profiles_dir
    from hwnas.predictors.evaluate import metrics
    from hwnas.profile import Profile
    from hwnas.space import stable_hash
    from hwnas.spaces.vit_predictors import VIT_PREDICTORS, VitLutPredictor, evaluate_vit, make_vit_predictor, vit_data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(profiles_dir() / "cpu-1t-vit"))
    ap.add_argument("--out", default=str(HERE / "results" / "vit_space.json"))
    args = ap.parse_args()
    t0 = time.time()
    load_at_start = os.getloadavg()
    prof = Profile.load(args.profile)
    data = vit_data(prof)
    keys = [str(a) for a in data.archs]
    ms = data.relative * prof.canary_reference_ms

    split = evaluate_vit(prof, VIT_PREDICTORS)
    fold = np.array([stable_hash(k, "vit-fold") % N_FOLDS for k in keys])
    cv = {}
    for name in VIT_PREDICTORS:
        pred = np.zeros(len(keys))
        for f in range(N_FOLDS):
            train = [k for k, g in zip(keys, fold) if g != f]
            p = make_vit_predictor(name).fit(prof, train)
            idx = np.flatnonzero(fold == f)
            pred[idx] = p.predict_archs([data.archs[i] for i in idx])
        cv[name] = metrics(pred, data.relative)

    lut = VitLutPredictor().fit(prof)
    raw = lut.lut_sum(data.archs)
    ratio = raw / data.relative
    res = {
        "profile": args.profile,
        "device": prof.meta["device"]["name"],
        "canary_reference_ms": prof.canary_reference_ms,
        "n_archs": len(keys),
        "n_block_entries": int(len(prof.table("block"))),
        "profile_part_seconds": prof.meta.get("part_seconds", {}),
        "latency_ms": {"min": float(ms.min()), "max": float(ms.max()), "span": float(ms.max() / ms.min()),
                       "median": float(np.median(ms))},
        "noise": {"median_noise_rel": float(np.median(data.noise_rel)),
                  "p90_noise_rel": float(np.quantile(data.noise_rel, 0.9)),
                  "median_abs_canary_drift": float(prof.table("arch")["canary_drift"].abs().median())},
        "heldout_split": split,
        "cv5_pooled": cv,
        "raw_lut_sum_over_measured": {"median": float(np.median(ratio)), "p10": float(np.quantile(ratio, 0.1)),
                                      "p90": float(np.quantile(ratio, 0.9)),
                                      "fitted_overhead": {"a": lut.coef_[0], "b_canary_units": lut.coef_[1]}},
        "load_average_at_start": list(load_at_start),
        "load_average_at_end": list(os.getloadavg()),
        "seconds": round(time.time() - t0, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))

    lat = res["latency_ms"]
    print(f"{res['n_archs']} measured vit architectures on {res['device']}, {lat['min']:.2f}-{lat['max']:.2f} ms "
          f"({lat['span']:.1f}x); median per-measurement noise {100 * res['noise']['median_noise_rel']:.1f}%")
    print(f"raw block-table sum / measured: median {res['raw_lut_sum_over_measured']['median']:.3f} "
          f"(p10 {res['raw_lut_sum_over_measured']['p10']:.3f}, p90 {res['raw_lut_sum_over_measured']['p90']:.3f})")
    for title, block in ((f"held-out half ({split['n_train']} fitted, {split['n_test']} judged, never fitted on)",
                          split["predictors"]), (f"{N_FOLDS}-fold, pooled (every architecture judged once)", cv)):
        print(title)
        print(f"  {'predictor':10s} {'MAPE%':>7s} {'±5%':>6s} {'±10%':>6s} {'Spearman':>9s}")
        for n, m in block.items():
            if "error" in m:
                print(f"  {n:10s} {m['error']}")
                continue
            print(f"  {n:10s} {m['mape_pct']:7.2f} {100 * m['within_5pct']:5.1f}% {100 * m['within_10pct']:5.1f}% "
                  f"{m['spearman']:9.4f}")
    print(f"load average at start {load_at_start[0]:.2f}, at end {res['load_average_at_end'][0]:.2f}; "
          f"saved {args.out} ({res['seconds']} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
