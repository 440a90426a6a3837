"""Held-out accuracy of every latency predictor on a profile, in-space and on unseen families.

In-space: the profile's measured architectures split 50/50 by hash; predictors fitted on one
half, scored on the other (canary units).  Out-of-space, two sets reported apart: the tuning
families (hwnas.zoo; each held out in turn) and the sealed families (hwnas.zoo_sealed, listed in
benchmarks/sealed_families.txt before any was measured; judged by a kernel predictor fitted with
every sealed model excluded), and the transformer families (hwnas.zoo_transformers; each held
out in turn).  No sealed model is fitted on anywhere here.  Judge the sealed set once per change of
the predictor; a change made because of its figure makes it a tuning set.

    python benchmarks/predictor_accuracy.py [--profile profiles/cpu-1t]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    from hwnas.paths import default_profile_dir
    from hwnas.predictors import PREDICTORS
    from hwnas.predictors.evaluate import evaluate_families, evaluate_in_space
    from hwnas.profile import Profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(default_profile_dir()))
    ap.add_argument("--out", default=str(HERE / "results" / "predictor_accuracy.json"))
    args = ap.parse_args()
    t0 = time.time()
    prof = Profile.load(args.profile)
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    res = {"profile": args.profile, "in_space": evaluate_in_space(prof, list(PREDICTORS), progress=log),
           "out_of_space": evaluate_families(prof, progress=log)}
    res["seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    ins = res["in_space"]
    print(f"in-space: {ins['n_test']} held-out architectures, {ins['n_train']} for fitting; "
          f"noise floor: median per-measurement spread {100 * ins['noise_floor']['median_noise_rel']:.1f}%")
    print(f"{'predictor':10s} {'MAPE%':>7s} {'RMSPE%':>7s} {'±5%':>6s} {'±10%':>6s} {'Spearman':>9s} {'Kendall':>8s}")
    for n, m in ins["predictors"].items():
        print(f"{n:10s} {m['mape_pct']:7.2f} {m['rmspe_pct']:7.2f} {100 * m['within_5pct']:5.1f}% "
              f"{100 * m['within_10pct']:5.1f}% {m['spearman']:9.4f} {m['kendall']:8.4f}")
    oos = res["out_of_space"]
    if oos:
        _families_table("tuning families (the predictor was tuned on them; each held out from fitting)", oos)
        if "transformers" in oos:
            _families_table("transformer families (each held out from fitting)", oos["transformers"])
        if "sealed" in oos:
            _families_table("SEALED families (never tuned on; every sealed model held out from fitting)",
                            oos["sealed"])
    print(f"saved {args.out} ({res['seconds']} s)")


def _families_table(title: str, res: dict) -> None:
    nf = res["noise_floor"]
    print(f"{title}; median per-measurement spread {100 * nf['median_noise_rel']:.1f}%:")
    print(f"{'family':14s} {'n':>3s} {'kernel ±10%':>12s} {'kernel ±5%':>11s} {'kernel MAPE%':>13s} "
          f"{'MACs ±10%':>10s} {'MACs MAPE%':>11s}")
    for fam, v in list(res["families"].items()) + [("ALL", res["overall"])]:
        k, m = v["kernel"], v["macs"]
        print(f"{fam:14s} {k['n']:3d} {100 * k['within_10pct']:11.0f}% {100 * k['within_5pct']:10.0f}% "
              f"{k['mape_pct']:13.1f} {100 * m['within_10pct']:9.0f}% {m['mape_pct']:11.1f}")


if __name__ == "__main__":
    main()
