"""Why a held-out family's error, per op type, from the profile alone (nothing is measured).

For each named zoo family: the kernel predictor is fitted without it (and without every sealed
model, as ``predictor_accuracy.py`` fits the tuning families), then each of the family's profiled
models is predicted kernel by kernel from its stored kernel records and compared with those
records (canary units, rescaled to the model's end-to-end measurement as the fit's targets are).
Prints per model the end-to-end error and per op type predicted / profiled time and the op's share
of the model's error; saves the same as JSON (default ``benchmarks/results/heldout_breakdown.json``).

    python benchmarks/heldout_breakdown.py FAMILY... [--profile profiles/cpu-1t] [--out FILE]

A sealed family may be named only with ``--sealed`` (judging it this way makes it a tuning set).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("families", nargs="+")
    ap.add_argument("--profile", type=Path, default=None, help="profile directory (default: the bundled one)")
    ap.add_argument("--sealed", action="store_true", help="allow sealed families (they stop being a test set)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "heldout_breakdown.json")
    args = ap.parse_args(argv)

    from hwnas.paths import default_profile_dir
    from hwnas.predictors.data import kernel_data
    from hwnas.predictors.evaluate import zoo_table
    from hwnas.predictors.kernel import KernelPredictor
    from hwnas.predictors.kernel_features import records_from_frame
    from hwnas.profile import Profile
    from hwnas.zoo_sealed import SEALED_FAMILIES

    prof = Profile.load(args.profile or default_profile_dir(), check_machine=False)
    df = zoo_table(prof)
    known = set(df["family"])
    for fam in args.families:
        if fam not in known:
            print(f"error: no zoo family {fam!r} in the profile; it holds {', '.join(sorted(known))}", file=sys.stderr)
            return 2
        if fam in SEALED_FAMILIES and not args.sealed:
            print(f"error: {fam} is a sealed family; name it with --sealed only if it may become a tuning set",
                  file=sys.stderr)
            return 2
    never = set(df.loc[df["family"].isin(SEALED_FAMILIES), "key"])
    kr = prof.kernel_records
    kd = kernel_data(prof)
    out = {"profile": str(args.profile or default_profile_dir()), "families": {}}
    for fam in args.families:
        g = df[df["family"] == fam]
        kp = KernelPredictor().fit(prof, exclude_models=sorted(never | set(g["key"])))
        rows = []
        for key, name, measured in zip(g["key"], g["name"], g["relative_to_canary"]):
            preds = kp._predict_records(records_from_frame(kr[kr["arch"] == key]))
            sel = np.flatnonzero(kd.model == key)
            ops: dict[str, dict[str, float]] = defaultdict(lambda: {"predicted": 0.0, "profiled": 0.0})
            for p in preds:
                ops[p.op_type]["predicted"] += p.relative
            for i in sel:
                ops[kd.rows[i].op_type]["profiled"] += float(kd.relative[i])
            predicted = kp.calibrate_sum(sum(p.relative for p in preds))
            for v in ops.values():
                v["share_of_error_pct"] = 100 * (v["predicted"] - v["profiled"]) / measured
            rows.append({"name": name, "measured": float(measured), "predicted": float(predicted),
                         "error_pct": 100 * (predicted / measured - 1), "ops": dict(ops)})
            worst = sorted(ops.items(), key=lambda kv: -abs(kv[1]["share_of_error_pct"]))[:3]
            print(f"{name:32s} {rows[-1]['error_pct']:+6.1f}%  " + "  ".join(
                f"{op} {v['predicted']:.3f}/{v['profiled']:.3f} ({v['share_of_error_pct']:+.1f}%)" for op, v in worst))
        out["families"][fam] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
