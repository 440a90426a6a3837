"""Measurement in the loop: how many device measurements a winner *measured* within the budget
costs, and whether it still fits when measured again.

For each budget (the 25th/50th/75th percentile of the profile's measured architectures, as the
demo uses) one evolution search is run on the profile's predictors; then

* ``predicted``: the search's own winner (prediction only), and
* ``measured``: the winner of the measurement loop (``hwnas search --measured``)

are both re-measured afterwards, together, interleaved, ``--repeats`` times each (canary units x
the profile's canary reference).  Reported: the share strictly within the budget, within 1.05 x
budget, the median measured / budget ratio, the loop's measurements against the candidates whose
interval crossed the budget, and wall times.

    python benchmarks/measured_search.py [--profile profiles/cpu-1t] [--repeats 3]

Measures on this machine: run it alone.
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
    from hwnas.builders.onnx_graph import build_onnx
    from hwnas.demo import search_budgets
    from hwnas.measure import Measurer
    from hwnas.profile import Profile
    from hwnas.search import SearchConfig, run_search
    from hwnas.search.measured import measure_in_loop
    from hwnas.space import Arch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(ROOT / "profiles" / "cpu-1t"))
    ap.add_argument("--generations", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=1, help="searches per budget (seeds 0, 1, ...)")
    ap.add_argument("--out", default=str(HERE / "results" / "measured_search.json"))
    args = ap.parse_args()
    prof = Profile.load(args.profile)
    budgets = search_budgets(prof)
    rows = []
    for seed in range(args.seeds):
        for budget in budgets:
            cfg = SearchConfig(budgets_ms=(budget,), profiles=(args.profile,), generations=args.generations, seed=seed)
            result = run_search(cfg)
            plain = result.best[0]
            [loop] = measure_in_loop(result)
            rows.append({"budget_ms": budget, "seed": seed, "search_s": round(result.seconds, 2),
                         "predicted": {"arch": plain.arch, "predicted_ms": plain.predicted_latency_ms,
                                       "accuracy": plain.accuracy_estimate},
                         "measured": {"arch": loop.winner, "predicted_ms": loop.winner_predicted_ms,
                                      "loop_measured_ms": loop.winner_measured_ms,
                                      "accuracy": result.best[0].accuracy_estimate},
                         "loop": {"n_measured": loop.n_measured, "n_plausible": loop.n_plausible,
                                  "n_evaluated": loop.n_evaluated, "seconds": round(loop.seconds, 1),
                                  "bias_correction": loop.bias_correction, "interval": loop.interval_source}})
            print(f"budget {budget:5.2f} ms seed {seed}: loop measured {loop.n_measured} of {loop.n_plausible} "
                  f"plausible ({loop.n_evaluated} evaluated) in {loop.seconds:.1f} s", flush=True)
    # re-measure both winners of every run, interleaved, repeated
    archs = sorted({r[k]["arch"] for r in rows for k in ("predicted", "measured")})
    again: dict[str, list[float]] = {a: [] for a in archs}
    with Measurer(prof.device) as m:
        for _ in range(args.repeats):
            for a in archs:
                meas = m.measure(build_onnx(Arch.parse(a), batch=prof.device.batch_size), a)
                again[a].append(meas.relative_to_canary * prof.canary_reference_ms)
    summary = {}
    for kind in ("predicted", "measured"):
        ratios = []
        for r in rows:
            ms = float(np.median(again[r[kind]["arch"]]))
            r[kind]["remeasured_ms"] = ms
            r[kind]["remeasured_all_ms"] = again[r[kind]["arch"]]
            ratios.append(ms / r["budget_ms"])
        ratios = np.array(ratios)
        summary[kind] = {"within_budget": float(np.mean(ratios <= 1.0)), "within_1.05": float(np.mean(ratios <= 1.05)),
                         "median_ratio": float(np.median(ratios)), "max_ratio": float(ratios.max()), "n": len(ratios)}
        print(f"{kind:9s} winners re-measured: {100 * summary[kind]['within_budget']:.0f}% strictly within budget, "
              f"{100 * summary[kind]['within_1.05']:.0f}% within 1.05x, median measured/budget "
              f"{summary[kind]['median_ratio']:.3f}, max {summary[kind]['max_ratio']:.3f}", flush=True)
    acc_gap = [r["predicted"]["accuracy"] - r["measured"]["accuracy"] for r in rows]
    summary["accuracy_given_up"] = {"median": float(np.median(acc_gap)), "max": float(np.max(acc_gap))}
    summary["loop_measurements"] = {"median": float(np.median([r["loop"]["n_measured"] for r in rows])),
                                    "max": int(max(r["loop"]["n_measured"] for r in rows)),
                                    "median_plausible": float(np.median([r["loop"]["n_plausible"] for r in rows]))}
    res = {"profile": args.profile, "budgets_ms": budgets, "repeats": args.repeats, "runs": rows, "summary": summary,
           "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
