"""``hwnas demo``: the main job in one command, on the bundled profile and this machine.

1. check this machine against the profile (a quick canary measurement; machine fingerprint);
2. predict the latency of a few architectures with the profile's default predictor;
3. search under three latency budgets and verify each winner by measuring it;
4. compare MACs with measured latency (:mod:`hwnas.compare`);
5. write the HTML report (:mod:`hwnas.report`).

Each step is one function taking a ``Steps`` object for progress; the CLI draws rich bars.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .errors import HwnasError, InputError

#: warn when today's canary differs from the profile's reference by more than this
CANARY_TOLERANCE = 0.15
N_PREDICT = 5
#: search settings sized so three searches fit the demo's 10 minutes on a 2-core machine
SEARCH_POPULATION = 100
SEARCH_GENERATIONS = 500
VERIFY_TOP = 1


class Steps:
    """Progress callbacks: ``task(name, total)`` returns an ``advance(n=1)`` function."""

    def task(self, name: str, total: int) -> Callable[..., None]:  # pragma: no cover - trivial
        return lambda n=1: None

    def log(self, msg: str) -> None:  # pragma: no cover - trivial
        pass

    def warn(self, msg: str) -> None:  # pragma: no cover - trivial
        warnings.warn(msg, stacklevel=2)


@dataclass
class DemoResult:
    report: Path
    seconds: float
    machine: dict
    predictions: pd.DataFrame
    search: dict
    stats: dict
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# 1. machine check


def check_machine(profile, fingerprint_notes: Sequence[str], steps: Steps, rounds: int = 5) -> dict:
    """Time the canary now and compare with the profile's reference; collect warnings."""
    from .measure import Measurer

    adv = steps.task("check machine (canary)", rounds)
    samples = []
    with Measurer(profile.device) as m:
        for _ in range(rounds):
            samples.append(m.measure_canary(rounds=1).median_ms)
            adv()
    now = float(np.median(samples))
    ref = profile.canary_reference_ms
    diff = now / ref - 1.0
    out = {"canary_now_ms": now, "canary_reference_ms": ref, "difference": diff, "rounds": rounds,
           "fingerprint": list(fingerprint_notes), "warnings": list(fingerprint_notes)}
    if abs(diff) > CANARY_TOLERANCE:
        out["warnings"].append(
            f"this machine runs the canary in {now:.3f} ms, {100 * diff:+.0f}% from the profile's {ref:.3f} ms "
            f"(more than ±{100 * CANARY_TOLERANCE:.0f}%): absolute ms predictions will be off by about as much; "
            f"canary-relative figures still hold (multiply by today's canary), or re-profile this machine")
    for w in out["warnings"]:
        steps.warn(w)
    return out


# --------------------------------------------------------------------------------------------
# 2. predictions


def predict_some(profile, canary_now_ms: float, steps: Steps, n: int = N_PREDICT, seed: int = 0) -> pd.DataFrame:
    """Predicted latency of ``n`` sampled architectures: on the profile's scale and rescaled to
    today's canary; MACs beside them."""
    from .cost import arch_cost
    from .predictors import load_predictor

    adv = steps.task("predict", n)
    pred = load_predictor(profile.dir)
    archs = profile.space.sample_many(n, seed=seed)
    rel = pred.predict_relative(archs)
    adv(n)
    return pd.DataFrame({"arch": [str(a) for a in archs], "macs": [arch_cost(a).macs for a in archs],
                         "predicted_ms": rel * pred.canary_reference_ms_, "relative_to_canary": rel,
                         "predicted_ms_now": rel * canary_now_ms, "predictor": pred.label})


# --------------------------------------------------------------------------------------------
# 3. search


def search_budgets(profile) -> list[float]:
    """Three budgets: the 25th, 50th and 75th percentile of the profile's measured architectures."""
    from .compare import default_budgets

    return default_budgets(profile.table("arch")["corrected_ms"].to_numpy(float))


def _accuracy_choice(space) -> tuple[str, str | None]:
    """The search's accuracy estimator: the trained predictor when there is one, else MACs."""
    from .accuracy import make_estimator

    try:
        make_estimator("predictor", None, space)
        return "predictor", None
    except HwnasError as e:
        return "macs", (f"no trained accuracy predictor ({e}); the demo's search maximizes MACs under each budget "
                        f"instead (a capacity proxy)")


def run_searches(profile_dir: Path, space, budgets: Sequence[float], steps: Steps,
                 population: int = SEARCH_POPULATION, generations: int = SEARCH_GENERATIONS,
                 verify_top: int = VERIFY_TOP) -> dict:
    """One latency-constrained search per budget, each winner verified by measuring it.

    ``space``: the search space of the profile at ``profile_dir`` (``Profile.space``).

    Returns ``{"candidates": DataFrame (every evaluated architecture, predicted_latency_ms,
    accuracy_estimate, measured_latency_ms for verified ones), "best": [dict per budget],
    "notes": [...], "accuracy": meaning}``.
    """
    from .profile import DeviceMismatchWarning
    from .search import SearchConfig, run_search, verify
    from .search.measured import measure_in_loop
    from .search.problem import InfeasibleError

    accuracy, note = _accuracy_choice(space)
    notes = [note] if note else []
    histories, best = [], []
    meaning, unit = accuracy, ""
    for b in budgets:
        cfg = SearchConfig(budgets_ms=(float(b),), profiles=(str(profile_dir),), accuracy=accuracy,
                           population=population, generations=generations, verify=verify_top)
        adv_state = {"done": 0}
        adv = steps.task(f"search ≤ {b:g} ms", generations)

        def progress(done: int, total: int, _adv=adv, _s=adv_state) -> None:
            # searchers report (done, total) in their own units; map onto the bar
            step = int(round(generations * done / max(total, 1))) - _s["done"]
            if step > 0:
                _adv(step)
                _s["done"] += step

        with warnings.catch_warnings():  # a profile from another machine: step 1 said so already
            warnings.simplefilter("ignore", DeviceMismatchWarning)
            res = run_search(cfg, progress)
        adv(generations - adv_state["done"])
        # measurement in the loop: the winner is an architecture measured within the budget
        ladv = steps.task(f"measure near {b:g} ms", None)
        try:
            [loop] = measure_in_loop(res, progress=lambda done, total, _l=ladv: _l())
        except InfeasibleError as e:  # a noisy machine or a budget at the space's floor: keep the predicted winner
            steps.warn(f"budget {b:g} ms: {e}; the predicted winner is shown, not verified within the budget")
            notes.append(f"budget {b:g} ms: no candidate measured within the budget ({e}); the winner shown is the "
                         f"search's predicted one")
        else:
            notes.append(f"budget {b:g} ms: {loop.n_measured} of {loop.n_plausible} candidates whose interval "
                         f"crossed the budget measured; winner measured {loop.winner_measured_ms:.3f} ms"
                         + (f" (the predictor measured {100 * (loop.bias_correction - 1):+.1f}% off: a second "
                            f"search round)" if loop.rounds == 2 else ""))
        vadv = steps.task(f"verify ≤ {b:g} ms (measure)", verify_top)
        verify(res, verify_top, lambda done, total, _v=vadv: _v())
        meaning = res.accuracy_meaning
        unit = res.accuracy_unit or unit
        notes += res.notes
        h = res.history()
        h["budget_ms"] = float(b)
        h["measured_latency_ms"] = np.nan
        for c in res.top[0][:verify_top]:
            h.loc[h["arch"] == c.arch, "measured_latency_ms"] = c.measured_latency_ms
        histories.append(h)
        c = res.best[0]
        best.append({"budget_ms": float(b), "arch": c.arch, "predicted_latency_ms": c.predicted_latency_ms,
                     "measured_latency_ms": c.measured_latency_ms, "accuracy_estimate": c.accuracy_estimate,
                     "macs": c.macs, "within_budget_measured": c.within_budget_measured,
                     "n_queries": res.n_queries, "seconds": res.seconds})
    cand = pd.concat(histories, ignore_index=True)
    # one row per architecture; keep a measured figure if any search verified it
    cand = (cand.sort_values("measured_latency_ms", na_position="last")
            .drop_duplicates("arch", keep="first").reset_index(drop=True))
    return {"candidates": cand, "best": best, "notes": notes, "accuracy": meaning, "accuracy_unit": unit}


# --------------------------------------------------------------------------------------------
# report sections


def machine_section(m: dict) -> str:
    from .report import _esc

    rows = (f"<p>Canary now: <b>{m['canary_now_ms']:.3f} ms</b> (median of {m['rounds']} rounds); the profile's "
            f"reference: {m['canary_reference_ms']:.3f} ms; difference {100 * m['difference']:+.1f}% "
            f"(warning above ±{100 * CANARY_TOLERANCE:.0f}%).</p>")
    for w in m["warnings"]:
        rows += f"<p class='warn'>warning: {_esc(w)}</p>"
    if not m["warnings"]:
        rows += "<p>Machine fingerprint matches the profile's.</p>"
    return rows


def predictions_section(df: pd.DataFrame) -> str:
    from .report import _esc, _table

    rows = [[f"<code>{_esc(r.arch)}</code>", f"{r.macs / 1e6:.0f}", f"{r.predicted_ms:.3f}",
             f"{r.relative_to_canary:.3f}", f"{r.predicted_ms_now:.3f}"] for r in df.itertuples()]
    return (f"<p>Predictor: {_esc(df['predictor'].iloc[0])} (the profile's default for architectures).</p>"
            + _table(["architecture", "MMACs", "predicted ms (profile)", "rel. to canary", "predicted ms (today's canary)"],
                     rows))


def search_section(s: dict) -> str:
    from .report import _esc, _table

    rows = []
    for b in s["best"]:
        meas = b["measured_latency_ms"]
        rows.append([f"{b['budget_ms']:g}", f"<code>{_esc(b['arch'])}</code>", f"{b['predicted_latency_ms']:.3f}",
                     "" if meas is None else f"{meas:.3f}",
                     "" if meas is None else f"{100 * (b['predicted_latency_ms'] / meas - 1):+.1f}%",
                     "" if b["within_budget_measured"] is None else ("yes" if b["within_budget_measured"] else "no"),
                     f"{b['accuracy_estimate']:.4g}", f"{b['macs'] / 1e6:.0f}", f"{b['seconds']:.1f}"])
    out = (f"<p>Accuracy estimate: {_esc(s['accuracy'])}.</p>"
           + _table(["budget ms", "best architecture", "predicted ms", "measured ms", "prediction error",
                     "fits (±5%)", "accuracy estimate", "MMACs", "search s"], rows, left=(1,)))
    for n in s["notes"]:
        out += f"<p class='note'>{_esc(n)}</p>"
    return out


# --------------------------------------------------------------------------------------------


def run_demo(out_dir: str | Path, profile_dir: str | Path | None, steps: Steps,
             budgets_ms: Sequence[float] | None = None, population: int = SEARCH_POPULATION,
             generations: int = SEARCH_GENERATIONS) -> DemoResult:
    """The whole demo.  ``budgets_ms``: the search budgets (default :func:`search_budgets`);
    ``population``, ``generations``: each search's size (smaller is faster)."""
    from .compare import compare, load_profile, report_breakdown, require_enough_archs
    from .paths import default_profile_dir
    from .report import prepare_out_dir, write_report

    t0 = time.perf_counter()
    out = prepare_out_dir(out_dir)  # a bad --out fails before anything is measured
    d = Path(profile_dir) if profile_dir else default_profile_dir()
    if not (d / "profile.sqlite").is_file():
        raise InputError(f"no device profile at {d}")
    profile, fp_notes = load_profile(d)
    require_enough_archs(profile)
    overall = steps.task("demo", 5)

    machine = check_machine(profile, fp_notes, steps)
    overall()
    preds = predict_some(profile, machine["canary_now_ms"], steps)
    overall()
    budgets = [float(b) for b in budgets_ms] if budgets_ms else search_budgets(profile)
    search = run_searches(d, profile.space, budgets, steps, population=population, generations=generations)
    overall()
    adv = steps.task("compare MACs vs latency", 5)
    # the profile loaded above, with its machine-mismatch notes, as `hwnas compare` passes it
    comparison = compare([profile], budgets_ms=budgets, progress=lambda msg: adv(), notes_in=fp_notes)
    overall()
    adv = steps.task("report", 2)
    bd = report_breakdown(profile)
    if "missing" in bd:
        steps.log(f"no per-kernel breakdown in the report: {bd['missing']}")
    adv()
    sections = [("This machine against the profile", machine_section(machine)),
                ("Predicted latency of a few architectures", predictions_section(preds))]
    sections.append((f"Search under {len(budgets)} budget{'s' if len(budgets) > 1 else ''}, verified by measurement",
                     search_section(search)))
    unit = search.get("accuracy_unit") or ""
    report = write_report(comparison, out, candidates=search["candidates"], breakdown=bd, sections=sections,
                          budgets_ms=budgets, title="hwnas demo: latency on this machine",
                          accuracy_label=f"accuracy estimate ({unit})" if unit else "accuracy estimate",
                          command=f"hwnas demo --profile {d} --out {out}")
    adv()
    overall()
    return DemoResult(report, time.perf_counter() - t0, machine, preds, search, comparison.stats, machine["warnings"])
