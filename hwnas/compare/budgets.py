"""MACs-optimal vs latency-optimal under one latency budget T, on one or more devices.

The **MACs-optimal** architecture is what a MACs-constrained choice makes (T turned into a MACs
budget with the device's own linear fit latency ~ a*MACs + b, then the architecture with the
most MACs under it), the **latency-optimal** one is the architecture with the most MACs whose
*measured* latency is within T.  Both are taken from architectures measured on every device
given, and "most MACs" stands in for capacity; ``hwnas search`` optimizes an accuracy estimate
instead.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError

#: quantiles of the first profile's measured latencies used as default budgets
BUDGET_QUANTILES = (0.25, 0.5, 0.75)


def default_budgets(latency_ms: Sequence[float]) -> list[float]:
    """The default budgets: the ``BUDGET_QUANTILES`` of the given latencies, rounded to 0.1 ms."""
    return [round(float(np.quantile(latency_ms, q)), 1) for q in BUDGET_QUANTILES]


def budget_picks(keys: Sequence[str], macs: Sequence[float], latency_ms: Sequence[float], budget_ms: float,
                 fit: tuple[float, float] | None = None) -> dict:
    """The MACs-optimal and the latency-optimal architecture under ``budget_ms`` on one device.

    ``fit`` = (a, b) of latency ~ a*MACs + b on this device (default: least squares on the
    given points).  MACs budget = (budget - b) / a; MACs pick = most MACs within it;
    latency pick = most MACs with measured latency <= budget.
    """
    k = np.asarray(keys, dtype=object)
    m = np.asarray(macs, dtype=float)
    y = np.asarray(latency_ms, dtype=float)
    a, b = fit if fit is not None else np.polyfit(m, y, 1)
    macs_budget = (budget_ms - b) / a if a > 0 else float("inf")

    def pick(mask: np.ndarray) -> dict | None:
        if not mask.any():
            return None
        idx = np.flatnonzero(mask)
        i = int(idx[np.argmax(m[idx])])
        return {"key": str(k[i]), "macs": float(m[i]), "latency_ms": float(y[i]), "fits": bool(y[i] <= budget_ms)}

    mp = pick(m <= macs_budget)
    lp = pick(y <= budget_ms)
    out = {"budget_ms": float(budget_ms), "macs_budget": float(macs_budget), "fit": [float(a), float(b)],
           "macs_pick": mp, "latency_pick": lp, "same": bool(mp and lp and mp["key"] == lp["key"])}
    if mp and lp:
        out["latency_diff"] = mp["latency_ms"] / lp["latency_ms"] - 1.0  # MACs pick vs latency pick
        out["macs_diff"] = mp["macs"] / lp["macs"] - 1.0
        out["budget_overshoot"] = mp["latency_ms"] / budget_ms - 1.0  # > 0: the MACs pick misses the budget
    return out


def check_budgets(budgets_ms: Sequence[float] | None) -> None:
    from ..validate import positive_number

    for b in budgets_ms or ():
        positive_number(b, "budget", "ms")


def compare_devices(profiles: Sequence, budgets_ms: Sequence[float] | None = None) -> dict:
    """MACs-optimal vs latency-optimal per budget and per device (profile).

    Only architectures measured on every device are used, so the picks are comparable; each
    device's MACs fit uses all of its own measured architectures.  Default budgets: the 25th,
    50th and 75th percentile of the first profile's latencies over those architectures.
    """
    tables = [p.table("arch").set_index("key") for p in profiles]
    predicted = [False] * len(profiles)
    for i, p in enumerate(profiles[1:], start=1):
        if getattr(p, "meta", {}).get("few_shot"):
            # a few-shot device measured only a handful: price the first profile's architectures
            # with its (transfer) predictor instead
            from ..predictors import load_predictor

            t = tables[0][["macs"]].copy()
            t["corrected_ms"] = load_predictor(p.dir).predict(list(t.index))
            tables[i], predicted[i] = t, True
    common = set(tables[0].index)
    for t in tables[1:]:
        common &= set(t.index)
    keys = sorted(common)
    if len(keys) < 3:
        raise InputError(f"the profiles share only {len(keys)} measured architectures; comparing devices needs "
                         f"at least 3 (profile them with the same --seed and space)")
    if budgets_ms is None:
        budgets_ms = default_budgets(tables[0].loc[keys, "corrected_ms"].to_numpy(float))
    check_budgets(budgets_ms)
    names = [p.device.name for p in profiles]
    labels = [n if names.count(n) == 1 else f"{n} ({p.dir})" for n, p in zip(names, profiles)]
    # each device's linear MACs -> latency fit, on all of its own architectures
    fits = [tuple(np.polyfit(t["macs"].to_numpy(float), t["corrected_ms"].to_numpy(float), 1)) for t in tables]
    # the common architectures' MACs and latency on each device
    common_pts = [(sub["macs"].to_numpy(float), sub["corrected_ms"].to_numpy(float))
                  for sub in (t.loc[keys] for t in tables)]
    rows = []
    for budget in budgets_ms:
        for p, t, label, fit, pred, (m, ms) in zip(profiles, tables, labels, fits, predicted, common_pts):
            r = budget_picks(keys, m, ms, budget, fit)
            r["device"] = label
            r["profile"] = str(p.dir)
            r["predicted"] = pred
            # what each pick costs on the other devices
            for side in ("macs_pick", "latency_pick"):
                if r[side]:
                    r[side]["on_devices"] = {lab: float(u.loc[r[side]["key"], "corrected_ms"])
                                             for lab, u in zip(labels, tables)}
            rows.append(r)
    return {"n_common_archs": len(keys), "devices": labels,
            "predicted_devices": [lab for lab, f in zip(labels, predicted) if f],
            "budgets_ms": [float(b) for b in budgets_ms], "rows": rows,
            "objective": "most MACs (a capacity proxy); MACs budget from each device's linear MACs->latency fit"}
