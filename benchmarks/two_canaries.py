"""Would a second, large canary carry large models through a shared machine's slow states?

The canary (a ~5 ms model) assumes a slow-down moves every model by the same factor; on this VM
large models slow down much less than it does (README, "Where the canary falls short").  This
measures zoo models of 0.5-40 ms in several passes spread over time (each model's runs bracketed
by the small canary S and a large one L, ResNet-50 at 224 px), and compares, per model, how much
its latency ratio moves across passes (the spread of log ratio, as a percentage):

* ``small``: ratio to S, as hwnas measures today;
* ``matched``: ratio to a canary matched to the model's duration, S^(1-w) L^w with
  w = log(t / S) / log(L / S) clipped to [0, 1], t, S and L from the first pass (nothing fitted);
* ``fitted``: log t regressed on log S and log L across the passes, per model: the most any blend
  of the two canaries could remove (fitted on the passes it is judged on: a bound, not a method).

Only zoo models of the tuning families are measured; nothing is fitted for hwnas.  Prints and
saves ``benchmarks/results/two_canaries.json``.  Measure with nothing else running::

    python benchmarks/two_canaries.py [--passes 10] [--runs 10]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

MODELS = ("resnet10_w0.25_r112", "bert_128x2_h2_t64", "vgg11_w0.25_r112", "bert_256x4_h4_t32", "resnet18_w0.5_r160",
          "convnext_femto_r112", "efficientnet_w1.0_d1.0_r160", "resnet34_w0.5_r160", "mobilenetv2_w1.4_r224",
          "repvgg_a1_w0.75_r192", "mobilenetv2_w1.4_d1.5_r224", "bert_256x6_h4_t256", "densenet121_k16_r224",
          "vgg16_w0.5_r128")
LARGE = "resnet50_w1.0_r224"


def spread_pct(log_values: np.ndarray) -> float:
    """Spread of a series of logs as a percentage: 100 * (exp(max - min) - 1)."""
    return float(100 * (math.exp(float(np.max(log_values) - np.min(log_values))) - 1))


def matched_weight(t_ms: float, small_ms: float, large_ms: float) -> float:
    """Where a model of ``t_ms`` sits between the two canaries, on a log scale, in [0, 1]."""
    return float(np.clip(math.log(t_ms / small_ms) / math.log(large_ms / small_ms), 0.0, 1.0))


def fitted_residual_spread(log_t: np.ndarray, log_s: np.ndarray, log_l: np.ndarray) -> float:
    """Spread of the residuals of log t ~ a + b log S + c log L (least squares over the passes)."""
    X = np.column_stack([np.ones_like(log_s), log_s, log_l])
    coef, *_ = np.linalg.lstsq(X, log_t, rcond=None)
    return spread_pct(log_t - X @ coef)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=10)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per model or canary round (median kept)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "two_canaries.json")
    args = ap.parse_args(argv)
    if args.passes < 3:
        ap.error(f"--passes must be at least 3, got {args.passes}")
    from hwnas.devices import load_device
    from hwnas.measure import Measurer, _time_runs, canary_model
    from hwnas.zoo_sealed import model_by_name
    from results_io import save_results

    dev = load_device("cpu-1t")
    t0 = time.time()
    with Measurer(dev) as m:
        small = m._prepare(canary_model(1), "canary")
        large = m._prepare(model_by_name(LARGE).build(), LARGE)
        targets = [m._prepare(model_by_name(n).build(), n) for n in MODELS]
        for p in [small, large, *targets]:
            m._warm(p)

        def median_ms(p) -> float:
            return float(np.median(_time_runs(p.session, p.feed, args.runs, 0.0, args.runs)))

        rows = {n: {"t": [], "s": [], "l": []} for n in MODELS}
        for k in range(args.passes):
            for p in targets:
                s1, l1 = median_ms(small), median_ms(large)
                t = median_ms(p)
                s2, l2 = median_ms(small), median_ms(large)
                r = rows[p.name]
                r["t"].append(t)
                r["s"].append(math.sqrt(s1 * s2))
                r["l"].append(math.sqrt(l1 * l2))
            s_now = float(np.median([rows[n]["s"][-1] for n in MODELS]))
            print(f"pass {k + 1}/{args.passes}: small canary {s_now:.2f} ms", flush=True)
    out = {"passes": args.passes, "runs": args.runs, "large_canary": LARGE, "seconds": round(time.time() - t0, 1),
           "models": {}}
    for n in MODELS:
        t, s, lg = (np.log(np.array(rows[n][k])) for k in ("t", "s", "l"))
        w = matched_weight(math.exp(t[0]), math.exp(s[0]), math.exp(lg[0]))
        out["models"][n] = {
            "ms_first_pass": float(math.exp(t[0])), "w": w,
            "spread_small_pct": spread_pct(t - s), "spread_matched_pct": spread_pct(t - ((1 - w) * s + w * lg)),
            "spread_fitted_pct": fitted_residual_spread(t, s, lg),
            "beta_small": float(np.polyfit(s, t, 1)[0]),
            "ms": rows[n]["t"], "small_ms": rows[n]["s"], "large_ms": rows[n]["l"]}
        r = out["models"][n]
        print(f"{n:30s} {r['ms_first_pass']:7.2f} ms  w {w:.2f}  beta {r['beta_small']:.2f}  spread across passes: "
              f"small {r['spread_small_pct']:5.1f}%  matched {r['spread_matched_pct']:5.1f}%  "
              f"fitted {r['spread_fitted_pct']:5.1f}%")
    for k in ("small", "matched", "fitted"):
        out[f"median_spread_{k}_pct"] = float(np.median([r[f"spread_{k}_pct"] for r in out["models"].values()]))
    allsmall = [x for n in MODELS for x in rows[n]["s"]]
    out["small_canary_ms_range"] = [float(min(allsmall)), float(max(allsmall))]
    print(f"median spread across {args.passes} passes: small canary {out['median_spread_small_pct']:.1f}%, "
          f"matched {out['median_spread_matched_pct']:.1f}%, fitted bound {out['median_spread_fitted_pct']:.1f}% "
          f"(small canary {out['small_canary_ms_range'][0]:.2f}-{out['small_canary_ms_range'][1]:.2f} ms)")
    save_results(out, args.out)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
