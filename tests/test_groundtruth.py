"""The stand-alone ground-truth helpers (hwnas.accuracy.groundtruth): quantile picks, seed-major
training order and its resume, rank correlations and their bootstrap intervals.  No training."""

import numpy as np
import pytest
from scipy import stats

from hwnas.accuracy.groundtruth import ground_truth_report, quantile_picks, rank_rows, spread_order, train_seed_major


def test_quantile_picks_span_the_values_in_order():
    rng = np.random.default_rng(0)
    v = rng.permutation(30).astype(float)
    p = quantile_picks(v, 5)
    assert [v[i] for i in p] == [0.0, 7.0, 14.0, 22.0, 29.0]  # round(q * 29) for q = 0, .25, .5, .75, 1
    assert quantile_picks(v, 1) == [int(np.flatnonzero(v == 14.0)[0])]
    assert sorted(quantile_picks(v, 40)) == list(range(30))  # more than there are: each once
    assert quantile_picks(v, 0) == [] and quantile_picks([], 3) == []


def test_spread_order_prefixes_span_the_range():
    assert spread_order(5) == [0, 4, 2, 1, 3]
    assert spread_order(0) == [] and spread_order(1) == [0] and spread_order(2) == [0, 1]
    for n in (3, 7, 20, 33):
        o = spread_order(n)
        assert sorted(o) == list(range(n))                 # a permutation
        assert o[:2] == [0, n - 1] and o[2] == (n - 1) // 2  # ends, then the middle
        for k in range(2, n + 1):  # a prefix of 2^j + 1 or more leaves no gap wider than (n - 1) / 2^j
            j = int(np.floor(np.log2(k - 1)))
            assert np.diff(sorted(o[:k])).max() <= -(-(n - 1) // 2 ** j)


def _fake_train(calls):
    def train(arch, seed):
        calls.append((arch, seed))
        return 90.0 + seed + int(arch[1:]), 1.5
    return train


def test_train_seed_major_order_saves_and_resumes():
    calls, saves = [], []
    rows = [{"arch": f"a{i}"} for i in range(3)]
    n = train_seed_major(rows, 2, _fake_train(calls), save=lambda: saves.append(len(calls)))
    assert n == 6 and saves == [1, 2, 3, 4, 5, 6]
    assert calls == [("a0", 0), ("a1", 0), ("a2", 0), ("a0", 1), ("a1", 1), ("a2", 1)]
    assert rows[2]["alone"] == [92.0, 93.0] and rows[2]["seconds"] == [1.5, 1.5]
    # an interrupted run: seed 0 of all, seed 1 of the first only -> only the two missing ones
    part = [{"arch": "a0", "alone": [90.0, 91.0]}, {"arch": "a1", "alone": [91.0]}, {"arch": "a2", "alone": [92.0]}]
    calls.clear()
    assert train_seed_major(part, 2, _fake_train(calls)) == 2
    assert calls == [("a1", 1), ("a2", 1)]
    assert train_seed_major(part, 2, _fake_train(calls)) == 0
    # a row that appears after the seed-0 pass has gone by would get seed 1 as its first: refused
    rows = [{"arch": "a0"}, {"arch": "a1"}]

    def grow(arch, seed):
        if (arch, seed) == ("a0", 1):
            rows.append({"arch": "late"})
        return 90.0, 1.0
    with pytest.raises(ValueError, match="late: holds 0 seeds, next is seed 1"):
        train_seed_major(rows, 2, grow)


def test_rank_rows_equal_scipy_with_ties_and_nan_when_constant():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, (20, 9)).astype(float)
    b = rng.integers(0, 4, (20, 9)).astype(float)
    rho, tau = rank_rows(a, b)
    for i in range(20):
        assert rho[i] == pytest.approx(stats.spearmanr(a[i], b[i]).statistic, abs=1e-12)
        assert tau[i] == pytest.approx(stats.kendalltau(a[i], b[i]).statistic, abs=1e-12)
    rho, tau = rank_rows(np.ones(5), np.arange(5.0))
    assert np.isnan(rho[0]) and np.isnan(tau[0])


def _rows(truth, noise):
    return [{"arch": f"a{i}", "alone": [t - d, t + d]} for i, (t, d) in enumerate(zip(truth, noise))]


def test_report_perfect_reversed_and_the_paired_gap():
    truth = np.linspace(80, 95, 12)
    rows = _rows(truth, np.full(12, 0.5))
    r = ground_truth_report(rows, {"good": truth * 2, "bad": -truth}, n_boot=200, seed=3, gap=("good", "bad"))
    assert r["n_archs"] == 12 and r["trainings_done"] == 24 and r["seeds_in_truth"] == 2
    assert r["vs_truth"]["good"]["spearman"] == pytest.approx(1.0)
    assert r["vs_truth"]["bad"]["kendall"] == pytest.approx(-1.0)
    assert r["vs_truth"]["good"]["spearman_bootstrap"]["ci95_low"] == pytest.approx(1.0)
    assert r["gap"]["spearman_gap"] == pytest.approx(2.0)
    assert r["gap"]["paired_bootstrap"]["ci95_low"] == pytest.approx(2.0)
    s = r["seed_to_seed"]
    assert s["mean_abs_diff_pp"] == pytest.approx(1.0) and s["spearman"] == pytest.approx(1.0)


def test_report_noisy_estimator_interval_contains_it_and_is_seeded():
    rng = np.random.default_rng(2)
    truth = rng.normal(90, 3, 20)
    rows = _rows(truth, rng.normal(0, 1, 20))
    est = {"noisy": truth + rng.normal(0, 2, 20)}
    r1 = ground_truth_report(rows, est, n_boot=300, seed=0)
    r2 = ground_truth_report(rows, est, n_boot=300, seed=0)
    v, b = r1["vs_truth"]["noisy"], r1["vs_truth"]["noisy"]["spearman_bootstrap"]
    assert b["ci95_low"] < v["spearman"] < b["ci95_high"] < 1.0
    assert b == r2["vs_truth"]["noisy"]["spearman_bootstrap"]
    assert "gap" not in r1


def test_report_partial_runs():
    rows = _rows(np.arange(5.0), np.zeros(5))
    rows[3]["alone"] = rows[3]["alone"][:1]  # seed 1 of this one not trained yet -> truth = seed 0 for all
    rows[4]["alone"] = []                    # not trained at all -> left out
    r = ground_truth_report(rows, {"x": np.arange(5.0)}, n_boot=50)
    assert r["n_archs"] == 4 and r["seeds_in_truth"] == 1 and r["trainings_done"] == 7
    assert r["seed_to_seed"]["n_archs"] == 3
    few = ground_truth_report(rows[:2], {"x": np.arange(2.0)})
    assert "vs_truth" not in few and "too few" in few["note"]
