"""Measurement in the loop: the walk's logic (with a stand-in device), then a real run on a tiny profile."""

import math
import shutil

import numpy as np
import pytest

from hwnas.search.measured import PRIOR_WEIGHT, walk


def _device(true_ms, log):
    def measure(rows):
        log.append(list(rows))
        return [true_ms[i] for i in rows]
    return measure


def test_walk_returns_the_most_accurate_candidate_that_measures_within():
    pred = np.array([9.5, 9.8, 9.0, 7.0, 6.0])
    true = np.array([10.4, 9.9, 8.0, 7.1, 6.1])  # row 0 and 1 really exceed 10 ms (with a 2% margin)
    calls = []
    win, measured, _ = walk([0, 1, 2, 3, 4], pred, (math.log(0.9), math.log(1.1), 0.9), 10.0, _device(true, calls), batch=2, margin=0.02)
    assert win == 2
    assert calls == [[0, 1], [2, 3]]  # in order, in batches; nothing after the winner's batch
    assert set(measured) == {0, 1, 2, 3} and measured[2] == 8.0


def test_walk_skips_candidates_whose_interval_cannot_fit_and_learns_the_bias():
    pred = np.array([12.0, 9.9, 9.7, 9.6, 8.0])
    true = pred * 1.15  # the predictor is 15% optimistic here
    calls = []
    win, measured, bias = walk([0, 1, 2, 3, 4], pred, (math.log(0.95), math.log(1.05), 0.9), 10.0, _device(true, calls), batch=1, margin=0.0)
    assert 0 not in measured  # 12 ms: no chance to fit 10 ms, never measured
    assert win == 4 and measured[4] == pytest.approx(9.2)
    # four measurements 15% over (the winner's too): the correction is exp(4 log 1.15 / (4 + prior))
    assert set(measured) == {1, 2, 3, 4}
    assert bias == pytest.approx(math.exp(4 * math.log(1.15) / (4 + PRIOR_WEIGHT)))


def test_walk_measures_a_more_accurate_candidate_the_bias_makes_plausible():
    # the predictor is pessimistic here: once a measurement shows it, a more accurate candidate
    # it first ruled out (row 0) gets measured, and wins
    pred = np.array([10.4, 9.0, 8.5])
    true = pred * 0.85
    calls = []
    win, measured, bias = walk([0, 1, 2], pred, (math.log(0.97), math.log(1.03), 0.9), 10.0, _device(true, calls),
                               batch=1, margin=0.0)
    assert calls[0] == [1] and win == 0 and bias < 1


def test_walk_gives_up_after_the_cap_or_when_nothing_can_fit():
    pred = np.full(10, 9.0)
    win, measured, _ = walk(range(10), pred, (math.log(0.9), math.log(1.1), 0.9), 10.0, _device(pred * 1.15, []), batch=3, max_measurements=5)
    assert win is None and len(measured) == 5  # the cap, not the bias, stopped it
    win, measured, bias = walk(range(10), pred, (math.log(0.9), math.log(1.1), 0.9), 10.0, _device(pred * 2, []), batch=3)
    assert win is None and len(measured) == 3 and bias > 1.3  # 2x slow: the bias rules out the rest
    win, measured, _ = walk(range(3), np.full(3, 20.0), (math.log(0.9), math.log(1.1), 0.9), 10.0, _device(np.full(3, 20.0), []))
    assert win is None and measured == {}
    with pytest.raises(ValueError):
        walk([0], pred, (0.0, 0.1, 0.9), 10.0, _device(pred, []), batch=0)


def test_measured_search_on_a_real_profile(tiny_profile, tmp_path):
    from hwnas.measure import MeasureConfig
    from hwnas.predictors import train_all
    from hwnas.search import SearchConfig, run_search
    from hwnas.search.measured import measure_in_loop

    d = tmp_path / "p"
    shutil.copytree(tiny_profile[0], d, ignore=shutil.ignore_patterns("predictors"))
    train_all(d, ["lut"])
    lat = sorted(__import__("hwnas.profile", fromlist=["Profile"]).Profile.load(d).table("arch")["corrected_ms"])
    budget = float(np.quantile(lat, 0.75))
    cfg = SearchConfig(budgets_ms=(budget,), profiles=(str(d),), accuracy="macs", latency_predictor="lut",
                       population=10, generations=3)
    result = run_search(cfg)
    quick = MeasureConfig(warmup_runs=1, warmup_s=0.0, rounds=3, max_rounds=4, round_min_runs=3, round_min_s=0.01,
                          canary_min_runs=3, canary_min_s=0.005)
    [rep] = measure_in_loop(result, config=quick, margin=0.02)
    best = result.best[0]
    assert best.arch == rep.winner and best.within_budget_measured
    assert best.measured_latency_ms == rep.winner_measured_ms <= budget * 0.98
    assert 1 <= rep.n_measured <= rep.n_plausible <= rep.n_evaluated
    # every measured candidate ranked before the winner (more accurate) measured over the limit; ones
    # ranked after it may share its batch and fit too
    [w] = [m for m in rep.measured if m["arch"] == rep.winner]
    same = [m for m in rep.measured if m["round"] == w["round"]]  # ranks are per round's search order
    assert all(not m["within"] for m in same if m["rank"] < w["rank"])
    assert all(m["rank"] > w["rank"] for m in same if m["within"] and m is not w)
    # a second round ran exactly when the measurements put the predictor >= 3% off, with budget / bias
    from hwnas.search.measured import CONTINUE_LOG_BIAS

    if abs(math.log(rep.bias_correction)) < CONTINUE_LOG_BIAS:
        assert rep.rounds == 1 and rep.continued_budget_ms is None
    if rep.rounds == 2:
        assert abs(math.log(rep.bias_correction)) >= CONTINUE_LOG_BIAS
        assert rep.continued_budget_ms == pytest.approx(budget / rep.bias_correction)
    assert len({m["arch"] for m in rep.measured}) == len(rep.measured) == rep.n_measured  # nothing measured twice


@pytest.mark.slow  # 7-12 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_the_search_continues_with_the_measured_bias(tiny_profile, tmp_path, monkeypatch):
    """With the threshold at 0 a second search round always runs: its constraint is budget / bias,
    it walks only candidates more accurate than the first winner, nothing is measured twice, and
    the winner is the more accurate measured one of the two rounds."""
    from hwnas.measure import MeasureConfig
    from hwnas.predictors import train_all
    from hwnas.profile import Profile
    from hwnas.search import SearchConfig, run_search
    from hwnas.search import measured as loop

    d = tmp_path / "p"
    shutil.copytree(tiny_profile[0], d, ignore=shutil.ignore_patterns("predictors"))
    train_all(d, ["lut"])
    lat = sorted(Profile.load(d).table("arch")["corrected_ms"])
    budget = float(np.quantile(lat, 0.75))
    cfg = SearchConfig(budgets_ms=(budget,), profiles=(str(d),), accuracy="macs", latency_predictor="lut",
                       population=10, generations=3)
    quick = MeasureConfig(warmup_runs=1, warmup_s=0.0, rounds=3, max_rounds=4, round_min_runs=3, round_min_s=0.01,
                          canary_min_runs=3, canary_min_s=0.005)
    monkeypatch.setattr(loop, "CONTINUE_LOG_BIAS", 0.0)
    result = run_search(cfg)
    [rep] = loop.measure_in_loop(result, config=quick)
    assert rep.rounds == 2 and rep.continued_budget_ms == pytest.approx(budget / rep.bias_correction)
    assert len({m["arch"] for m in rep.measured}) == len(rep.measured) == rep.n_measured
    w = next(m for m in rep.measured if m["arch"] == rep.winner)
    assert w["within"] and rep.winner_measured_ms <= 0.98 * budget
    assert result.best[0].arch == rep.winner and result.best[0].within_budget_measured
    # a second-round winner is more accurate (here: more MACs) than every first-round candidate that fit
    fit1 = [m for m in rep.measured if m["round"] == 1 and m["within"]]
    if w["round"] == 2:
        from hwnas.cost import arch_cost
        from hwnas.space import Arch

        assert all(arch_cost(Arch.parse(rep.winner)).macs > arch_cost(Arch.parse(m["arch"])).macs for m in fit1)
