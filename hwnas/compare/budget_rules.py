"""A fair test of the budget lesson: does a MACs rule or the latency predictor pick architectures
that fit a latency budget T, and which gets more MACs?

Two rules, each fitted on one half of the profile's measured architectures and choosing among
the *other* half without seeing those architectures' measurements:

* **MACs rule**: latency ~ a*MACs + b fitted on the fitting half (the ``macs`` predictor); the
  pick is the architecture with the most MACs whose fitted latency is within T (the same as
  turning T into the MACs budget (T - b) / a);
* **predictor rule**: the latency predictor (the profile's default) fitted on the same half;
  the pick is the architecture with the most MACs whose predicted latency is within T.

Both halves take each role once (fit on A and choose from B, then fit on B and choose from A),
for every budget.  The picks are judged on

* the profile's own measurement of them (one each, never seen by the rule), and
* with ``repeats`` > 0, fresh measurements: every distinct pick measured ``repeats`` times,
  interleaved (each round visits all picks in a new random order, in one canary-bracketed
  session), in canary-corrected ms on the profile's scale; a pick's latency is the median of
  its repeats.

Reported per rule: misses (latency > T) with a 95% Wilson interval, the share within T x 1.05,
the median latency / T; for the pair of picks at each budget: MACs gained by the predictor
rule's pick over the MACs rule's (ratio - 1) and the difference in misses, with 95% bootstrap
intervals over the (budget, half) rows.  Neighbouring budgets can share a pick, so the rows
are not independent and the intervals are approximate.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import HwnasError
from .heldout import heldout_predictions

#: default number of budgets, evenly spaced between these quantiles of the measured latencies
N_BUDGETS = 15
BUDGET_RANGE_QUANTILES = (0.1, 0.9)
#: bootstrap resamples for the intervals
N_BOOTSTRAP = 2000
RULES = ("macs_rule", "predictor_rule")


def rule_pick(macs: Sequence[float], predicted_ms: Sequence[float], budget_ms: float) -> int | None:
    """Index of the architecture with the most MACs whose predicted latency is within the budget."""
    m = np.asarray(macs, dtype=float)
    ok = np.flatnonzero(np.asarray(predicted_ms, dtype=float) <= budget_ms)
    if len(ok) == 0:
        return None
    return int(ok[np.argmax(m[ok])])


def experiment_budgets(latency_ms: Sequence[float], n: int = N_BUDGETS) -> list[float]:
    """``n`` budgets evenly spaced over the given latencies' 10th to 90th percentile, to 0.01 ms."""
    lo, hi = np.quantile(np.asarray(latency_ms, dtype=float), BUDGET_RANGE_QUANTILES)
    return [round(float(b), 2) for b in np.linspace(lo, hi, n)]


def _bootstrap_mean_ci(values: np.ndarray, rng: np.random.Generator) -> list[float] | None:
    if len(values) < 2:
        return None
    idx = rng.integers(0, len(values), size=(N_BOOTSTRAP, len(values)))
    means = values[idx].mean(axis=1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def summarize(rows: Sequence[dict], judged_on: str, seed: int = 0) -> dict:
    """Misses per rule and MACs gained by the predictor rule, judged on ``judged_on``
    ("profile_ms" or "remeasured_ms" of each pick); rows where a rule found no pick are left out."""
    both = [r for r in rows if r["macs_rule"] and r["predictor_rule"]
            and r["macs_rule"].get(judged_on) is not None and r["predictor_rule"].get(judged_on) is not None]
    n = len(both)
    out: dict = {"judged_on": judged_on, "n": n}
    if n == 0:
        return out
    rng = np.random.default_rng(seed)
    miss = {}
    for rule in RULES:
        ratio = np.array([r[rule][judged_on] / r["budget_ms"] for r in both])
        k = int((ratio > 1.0).sum())
        ci = sps.binomtest(k, n).proportion_ci(method="wilson")
        out[rule] = {"misses": k, "miss_share": k / n, "miss_ci95": [float(ci.low), float(ci.high)],
                     "within_tolerance_share": float(np.mean(ratio <= 1.05)),
                     "latency_over_budget_median": float(np.median(ratio)),
                     "latency_over_budget_max": float(ratio.max())}
        miss[rule] = (ratio > 1.0).astype(float)
    gain = np.array([r["predictor_rule"]["macs"] / r["macs_rule"]["macs"] - 1.0 for r in both])
    diff = miss["macs_rule"] - miss["predictor_rule"]
    out["same_pick"] = int(sum(r["same"] for r in both))
    out["macs_gain"] = {"mean": float(gain.mean()), "median": float(np.median(gain)),
                        "min": float(gain.min()), "max": float(gain.max()), "mean_ci95": _bootstrap_mean_ci(gain, rng)}
    out["miss_share_difference"] = {"mean": float(diff.mean()), "ci95": _bootstrap_mean_ci(diff, rng),
                                    "meaning": "MACs rule's miss share minus the predictor rule's"}
    return out


def budget_rules(profile, predictor: str, budgets_ms: Sequence[float] | None = None, repeats: int = 0,
                 measure_config=None, progress: Callable[[str], None] | None = None, seed: int = 0,
                 first_half: pd.DataFrame | None = None) -> dict:
    """The MACs rule against the predictor rule under each budget, fitted and judged on different
    halves of ``profile``'s measured architectures (see the module docstring).

    ``first_half``: ``heldout_predictions(profile, predictor)`` when already made (the fit on
    ``holdout_split``'s first half, predicting the second); default: made here."""
    from ..predictors.data import holdout_split

    if repeats < 0:
        raise HwnasError(f"repeats must be >= 0, got {repeats}")
    arch = profile.table("arch")
    half_a, half_b = holdout_split(list(arch["key"]))
    if budgets_ms is None:
        budgets_ms = experiment_budgets(arch["corrected_ms"].to_numpy(float))
    rows = []
    for fit_half, split in (("A", (half_a, half_b)), ("B", (half_b, half_a))):
        ho = first_half if fit_half == "A" and first_half is not None else heldout_predictions(profile, predictor, split)
        keys, macs = list(ho["key"]), ho["macs"].to_numpy(float)
        for budget in budgets_ms:
            row: dict = {"budget_ms": float(budget), "fit_half": fit_half, "n_fit": len(split[0]),
                         "n_choice": len(split[1])}
            for rule, col in (("macs_rule", "macs_linear_ms"), ("predictor_rule", "predicted_ms")):
                i = rule_pick(macs, ho[col].to_numpy(float), budget)
                row[rule] = None if i is None else {
                    "key": keys[i], "macs": float(macs[i]), "predicted_ms": float(ho[col].iloc[i]),
                    "profile_ms": float(ho["measured_ms"].iloc[i])}
            row["same"] = bool(row["macs_rule"] and row["predictor_rule"]
                               and row["macs_rule"]["key"] == row["predictor_rule"]["key"])
            rows.append(row)
        if progress:
            progress(f"budget rules fitted on half {fit_half}")
    out: dict = {"predictor": predictor, "budgets_ms": [float(b) for b in budgets_ms], "halves": [len(half_a), len(half_b)],
                 "repeats": repeats, "rows": rows, "profile": summarize(rows, "profile_ms", seed)}
    if repeats > 0:
        out["remeasure"] = remeasure_picks(profile, rows, repeats, measure_config, seed, progress)
        out["remeasured"] = summarize(rows, "remeasured_ms", seed)
    return out


def remeasure_picks(profile, rows: Sequence[dict], repeats: int, measure_config=None, seed: int = 0,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Measure every distinct pick ``repeats`` times, interleaved; writes ``remeasured_ms`` (median
    of the repeats, canary-corrected ms on the profile's scale) and ``remeasured_spread`` ((max -
    min) / median) into each pick of ``rows``; returns how the measurements went."""
    from ..builders.onnx_graph import build_onnx
    from ..measure import Measurer
    from ..space import Arch

    picks = sorted({r[rule]["key"] for r in rows for rule in RULES if r[rule]})
    models = {k: build_onnx(Arch.parse(k), batch=profile.device.batch_size) for k in picks}
    rng = np.random.default_rng(seed)
    ref = profile.canary_reference_ms
    ms: dict[str, list[float]] = {k: [] for k in picks}
    noise: list[float] = []
    with Measurer(profile.device, measure_config) as m:
        canary_start = m.measure_canary().median_ms
        for rnd in range(repeats):
            for j in rng.permutation(len(picks)):
                k = picks[int(j)]
                meas = m.measure(models[k], k)
                ms[k].append(meas.relative_to_canary * ref)
                noise.append(meas.noise_rel)
            if progress:
                progress(f"re-measured round {rnd + 1}/{repeats}")
        canary_end = m.measure_canary().median_ms
    med = {k: float(np.median(v)) for k, v in ms.items()}
    for r in rows:
        for rule in RULES:
            if r[rule]:
                v = ms[r[rule]["key"]]
                r[rule]["remeasured_ms"] = med[r[rule]["key"]]
                r[rule]["remeasured_spread"] = float((max(v) - min(v)) / med[r[rule]["key"]])
    vs_profile = np.array([med[r[rule]["key"]] / r[rule]["profile_ms"] for r in rows for rule in RULES if r[rule]])
    spread = np.array([(max(v) - min(v)) / med[k] for k, v in ms.items()])
    return {"n_archs": len(picks), "measurements": len(picks) * repeats,
            "canary_ms_start": canary_start, "canary_ms_end": canary_end, "canary_reference_ms": ref,
            "round_noise_median": float(np.median(noise)),
            "repeat_spread_median": float(np.median(spread)), "repeat_spread_max": float(spread.max()),
            "remeasured_over_profile_median": float(np.median(vs_profile)),
            "remeasured_over_profile_p10_p90": [float(np.quantile(vs_profile, 0.1)),
                                                float(np.quantile(vs_profile, 0.9))]}
