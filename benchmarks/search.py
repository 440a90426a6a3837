"""Search benchmarks on the bundled profile.

1. Evolution vs random search at equal numbers of evaluated candidates, at budgets spread over
   the space's latency range, over several seeds (accuracy estimate of the winner).
2. The Once-for-All-scale run: population 100 x 500 generations, wall time.
3. Verification: for budgets spread over the range, the winner is re-measured on the device
   (canary-corrected, one measurement each); reported strictly: the share within the budget T
   (with a 95% Wilson interval), the share within T x 1.05 (the tolerance ``--verify`` uses),
   and the median and range of measured / budget.

    python benchmarks/search.py [--accuracy predictor] [--seeds 5] [--verify-budgets 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    from scipy import stats as sps

    from hwnas.search import VERIFY_TOLERANCE, SearchConfig, run_search, verify

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accuracy", default="predictor")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--generations", type=int, default=60, help="evolution generations for the comparison")
    ap.add_argument("--verify-budgets", type=int, default=20)
    ap.add_argument("--out", default=str(HERE / "results" / "search.json"))
    args = ap.parse_args()
    res: dict = {"accuracy": args.accuracy}

    probe = run_search(SearchConfig(budgets_ms=(1e6,), accuracy=args.accuracy, population=10, generations=1))
    lo, hi = probe.min_latency_ms[0], probe.max_latency_ms[0]
    budgets = [round(lo + f * (hi - lo), 2) for f in (0.05, 0.1, 0.2, 0.3, 0.45)]
    res["latency_range_ms"] = [lo, hi]
    rows = []
    for b in budgets:
        for seed in range(args.seeds):
            evo = run_search(SearchConfig(budgets_ms=(b,), accuracy=args.accuracy, generations=args.generations, seed=seed))
            rnd = run_search(SearchConfig(budgets_ms=(b,), accuracy=args.accuracy, strategy="random",
                                          n_samples=evo.n_queries, seed=seed))
            rows.append({"budget_ms": b, "seed": seed, "evaluated": evo.n_queries,
                         "evolution": evo.best[0].accuracy_estimate, "random": rnd.best[0].accuracy_estimate})
        print(f"budget {b:6.2f} ms: evolution {np.mean([r['evolution'] for r in rows if r['budget_ms'] == b]):.4f} "
              f"vs random {np.mean([r['random'] for r in rows if r['budget_ms'] == b]):.4f} "
              f"(mean over {args.seeds} seeds, {rows[-1]['evaluated']} candidates each)", file=sys.stderr)
    res["evolution_vs_random"] = rows
    wins = [r["evolution"] > r["random"] for r in rows]
    ties = [r["evolution"] == r["random"] for r in rows]
    res["evolution_wins"] = int(sum(wins))
    res["ties"] = int(sum(ties))
    res["runs"] = len(rows)

    t0 = time.perf_counter()
    ofa = run_search(SearchConfig(budgets_ms=(round(lo + 0.4 * (hi - lo), 2),), accuracy=args.accuracy,
                                  population=100, generations=500))
    res["ofa_scale"] = {"population": 100, "generations": 500, "evaluated": ofa.n_queries,
                        "search_s": ofa.seconds, "wall_s": time.perf_counter() - t0}

    vb = np.linspace(lo * 1.15, lo + 0.6 * (hi - lo), args.verify_budgets)
    ver = []
    for b in vb:
        r = run_search(SearchConfig(budgets_ms=(float(round(b, 2)),), accuracy=args.accuracy, generations=60, verify=1))
        verify(r, 1)
        c = r.best[0]
        ratio = c.measured_latency_ms / c.budget_ms
        ver.append({"budget_ms": c.budget_ms, "arch": c.arch, "predicted_ms": c.predicted_latency_ms,
                    "measured_ms": c.measured_latency_ms, "measured_abs_ms": c.measured_latency_abs_ms,
                    "measured_over_budget": ratio, "within_budget": bool(ratio <= 1.0),
                    "within_tolerance": c.within_budget_measured})
        print(f"verify {c.budget_ms:6.2f} ms: predicted {c.predicted_latency_ms:6.2f}, measured "
              f"{c.measured_latency_ms:6.2f} ({100 * (ratio - 1):+.1f}%)", file=sys.stderr)
    ratios = np.array([v["measured_over_budget"] for v in ver])
    n_in = int((ratios <= 1.0).sum())
    ci = sps.binomtest(n_in, len(ver)).proportion_ci(method="wilson")
    res["verification"] = {
        "n": len(ver), "tolerance": VERIFY_TOLERANCE, "budgets": ver,
        "within_budget": n_in, "share_within_budget": n_in / len(ver),
        "share_within_budget_ci95": [float(ci.low), float(ci.high)],
        "within_tolerance": int((ratios <= 1.0 + VERIFY_TOLERANCE).sum()),
        "share_within_tolerance": float(np.mean(ratios <= 1.0 + VERIFY_TOLERANCE)),
        "measured_over_budget": {"median": float(np.median(ratios)), "min": float(ratios.min()),
                                 "max": float(ratios.max())},
        "predicted_over_budget_median": float(np.median([v["predicted_ms"] / v["budget_ms"] for v in ver])),
    }

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"evolution vs random, equal candidates, {len(budgets)} budgets x {args.seeds} seeds: evolution better in "
          f"{res['evolution_wins']}/{res['runs']} runs, tied {res['ties']}")
    print(f"{'budget ms':>10s} {'evolution':>10s} {'random':>10s}")
    for b in budgets:
        e = np.mean([r["evolution"] for r in rows if r["budget_ms"] == b])
        q = np.mean([r["random"] for r in rows if r["budget_ms"] == b])
        print(f"{b:10.2f} {e:10.4f} {q:10.4f}")
    o = res["ofa_scale"]
    print(f"OFA-scale run (100 x 500): {o['evaluated']} distinct candidates in {o['search_s']:.2f} s")
    v = res["verification"]
    print(f"verification of {v['n']} winners (canary-corrected, one measurement each): {v['within_budget']}/{v['n']} "
          f"within the budget (95% CI {100 * v['share_within_budget_ci95'][0]:.0f}-"
          f"{100 * v['share_within_budget_ci95'][1]:.0f}%), {v['within_tolerance']}/{v['n']} within budget x "
          f"{1 + v['tolerance']:.2f}; measured / budget median {v['measured_over_budget']['median']:.3f} "
          f"({v['measured_over_budget']['min']:.3f} to {v['measured_over_budget']['max']:.3f})")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
