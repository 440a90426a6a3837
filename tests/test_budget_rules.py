"""The fair budget-rule experiment (issue 12 item 3): picks by hand, its summary, and that a rule
never sees the measurements its picks are judged on."""

import numpy as np
import pytest
from scipy import stats as sps

from hwnas.compare.budget_rules import budget_rules, experiment_budgets, rule_pick, summarize
from hwnas.measure import MeasureConfig
from hwnas.paths import default_profile_dir
from hwnas.predictors.data import holdout_split
from hwnas.profile import Profile


@pytest.fixture(scope="module")
def profile():
    return Profile.load(default_profile_dir())


def test_rule_pick_by_hand():
    macs = [100, 300, 200, 400]
    est = [1.0, 2.9, 2.0, 4.0]
    assert rule_pick(macs, est, 3.0) == 1  # most MACs among estimates within 3 ms
    assert rule_pick(macs, est, 2.5) == 2
    assert rule_pick(macs, est, 0.5) is None


def test_experiment_budgets_span_the_middle_of_the_latencies():
    lat = np.arange(1.0, 101.0)
    b = experiment_budgets(lat, n=5)
    assert b[0] == pytest.approx(np.quantile(lat, 0.1), abs=0.005)
    assert b[-1] == pytest.approx(np.quantile(lat, 0.9), abs=0.005)
    assert len(b) == 5 and b == sorted(b)


def _row(budget, m_macs, m_ms, p_macs, p_ms):
    return {"budget_ms": budget, "same": False,
            "macs_rule": {"key": f"m{budget}", "macs": m_macs, "profile_ms": m_ms},
            "predictor_rule": {"key": f"p{budget}", "macs": p_macs, "profile_ms": p_ms}}


def test_summary_by_hand():
    rows = [_row(5.0, 100, 5.2, 110, 4.9),   # MACs rule misses, predictor fits with 10% more MACs
            _row(6.0, 200, 5.9, 180, 6.1),   # the other way round, 10% fewer MACs
            _row(7.0, 300, 7.4, 300, 6.9),   # MACs rule misses (by 5.7%: outside the 5% tolerance)
            {"budget_ms": 8.0, "same": False, "macs_rule": None, "predictor_rule": None}]  # no pick: left out
    s = summarize(rows, "profile_ms")
    assert s["n"] == 3
    assert s["macs_rule"]["misses"] == 2 and s["predictor_rule"]["misses"] == 1
    ci = sps.binomtest(2, 3).proportion_ci(method="wilson")
    assert s["macs_rule"]["miss_ci95"] == pytest.approx([ci.low, ci.high])
    assert s["macs_rule"]["within_tolerance_share"] == pytest.approx(2 / 3)
    assert s["macs_gain"]["mean"] == pytest.approx((0.1 - 0.1 + 0.0) / 3)
    assert s["miss_share_difference"]["mean"] == pytest.approx(1 / 3)
    lo, hi = s["macs_gain"]["mean_ci95"]
    assert -0.1 - 1e-9 <= lo <= s["macs_gain"]["mean"] <= hi <= 0.1 + 1e-9
    assert summarize(rows, "remeasured_ms") == {"judged_on": "remeasured_ms", "n": 0}


class _Perturbed:
    """A profile whose measurements of some architectures are scaled; everything else is the real one."""

    def __init__(self, real, keys, factor):
        self._real, self._keys, self._factor = real, set(keys), factor

    def __getattr__(self, name):
        return getattr(self._real, name)

    def table(self, kind):
        t = self._real.table(kind)
        if kind == "arch":
            hit = t["key"].isin(self._keys)
            for col in ("relative_to_canary", "corrected_ms"):
                t.loc[hit, col] = t.loc[hit, col] * self._factor
        return t


def test_rules_never_see_the_measurements_they_are_judged_on(profile):
    """Scaling the measured latencies of the half a rule picks from changes how its picks are
    judged, never which architectures it picks."""
    half_a, half_b = holdout_split(list(profile.table("arch")["key"]))
    budgets = [5.0, 8.0]
    base = budget_rules(profile, "lut", budgets)
    moved = budget_rules(_Perturbed(profile, half_b, 1.3), "lut", budgets)
    n_checked = 0
    for r0, r1 in zip(base["rows"], moved["rows"]):
        assert (r0["fit_half"], r0["budget_ms"]) == (r1["fit_half"], r1["budget_ms"])
        choice = set(half_b if r0["fit_half"] == "A" else half_a)
        for rule in ("macs_rule", "predictor_rule"):
            assert r0[rule]["key"] in choice  # picked from the half the rule was not fitted on
            if r0["fit_half"] == "A":  # fitted on A, picking from the perturbed B
                assert r1[rule]["key"] == r0[rule]["key"]
                assert r1[rule]["profile_ms"] == pytest.approx(1.3 * r0[rule]["profile_ms"])
                n_checked += 1
    assert n_checked == 2 * len(budgets)
    # fitted on the perturbed half, the rules estimate longer latencies and pick smaller models
    fit_b = [(r0, r1) for r0, r1 in zip(base["rows"], moved["rows"]) if r0["fit_half"] == "B"]
    assert all(r1["macs_rule"]["macs"] < r0["macs_rule"]["macs"] for r0, r1 in fit_b)


def test_picks_remeasured_interleaved(profile):
    r = budget_rules(profile, "lut", [6.0], repeats=2, measure_config=MeasureConfig.quick())
    picks = {row[rule]["key"] for row in r["rows"] for rule in ("macs_rule", "predictor_rule")}
    assert r["remeasure"]["n_archs"] == len(picks) and r["remeasure"]["measurements"] == 2 * len(picks)
    for row in r["rows"]:
        for rule in ("macs_rule", "predictor_rule"):
            p = row[rule]
            assert p["remeasured_ms"] > 0 and p["remeasured_spread"] >= 0
    s = r["remeasured"]
    assert s["judged_on"] == "remeasured_ms" and s["n"] == 2
    assert s["macs_rule"]["misses"] == sum(row["macs_rule"]["remeasured_ms"] > 6.0 for row in r["rows"])
