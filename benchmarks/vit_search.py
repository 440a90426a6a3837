"""Search the vit space under three latency budgets, then measure each winner on this machine.

Budgets: the 25th, 50th and 75th percentile of the profile's measured architectures (the
profile's milliseconds).  Each winner of ``search_vit`` (evolution, the profile's default
predictor) is built, measured with the project's Measurer (canary-bracketed) and converted to
the profile's milliseconds (canary units x the profile's canary reference), so a machine that
runs slower or faster today than when the profile was made does not move the verdict.
Acceptance (issue 18): measured <= 1.05 x budget for the three budgets.

    python benchmarks/vit_search.py [--profile profiles/cpu-1t-vit] [--seed 0]

Measures: run it alone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> None:
    from hwnas.measure import Measurer
    from hwnas.profile import Profile
    from hwnas.spaces.vit import VitArch
    from hwnas.spaces.vit_onnx import build_vit_onnx
    from hwnas.spaces.vit_predictors import load_vit_predictor
    from hwnas.spaces.vit_search import search_vit

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(ROOT / "profiles" / "cpu-1t-vit"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "vit_search.json"))
    args = ap.parse_args()
    prof = Profile.load(args.profile, check_machine=False)
    pred = load_vit_predictor(args.profile)
    measured = prof.measurements[prof.measurements["kind"] == "arch"]["relative_to_canary"].to_numpy()
    ref_ms = prof.canary_reference_ms
    budgets = [float(np.quantile(measured * ref_ms, q)) for q in (0.25, 0.5, 0.75)]
    res: dict = {"profile": args.profile, "predictor": type(pred).__name__, "canary_reference_ms": ref_ms,
                 "budgets": []}
    with Measurer(prof.device) as m:
        for b in budgets:
            r = search_vit(pred, b, seed=args.seed)
            win = r.top[0]
            meas = m.measure(build_vit_onnx(VitArch.parse(win.arch), batch=prof.device.batch_size), win.arch)
            ms = meas.relative_to_canary * ref_ms
            row = {"budget_ms": round(b, 3), "arch": win.arch, "predicted_ms": round(win.predicted_latency_ms, 3),
                   "measured_ms": round(ms, 3), "measured_over_budget": round(ms / b, 4),
                   "fits_1_05": bool(ms <= 1.05 * b), "noise_rel": round(meas.noise_rel, 4),
                   "n_queries": r.n_queries, "search_s": r.seconds}
            res["budgets"].append(row)
            print(f"budget {b:7.2f} ms: {win.arch}  predicted {win.predicted_latency_ms:7.2f}  measured {ms:7.2f} ms "
                  f"({100 * (ms / b - 1):+.1f}% of the budget; noise {100 * meas.noise_rel:.1f}%)", flush=True)
    res["all_fit_1_05"] = all(r["fits_1_05"] for r in res["budgets"])
    res["measured_at"] = time.time()
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"{sum(r['fits_1_05'] for r in res['budgets'])}/3 winners measured within 1.05 x budget; saved {args.out}")


if __name__ == "__main__":
    main()
