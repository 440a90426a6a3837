"""Prediction intervals: conformal bounds from held-out residuals, saved with every trained predictor."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hwnas.errors import HwnasError
from hwnas.predictors import load_predictor, train_all
from hwnas.predictors.interval import MIN_RESIDUALS, PredictionInterval
from hwnas.predictors.transfer import TransferPredictor, ridge_loo


def test_conformal_ranks_and_coverage_on_fresh_draws():
    rng = np.random.default_rng(0)
    calib = rng.normal(0.02, 0.05, 400)
    iv = PredictionInterval.from_log_residuals(calib, 0.9)
    # the conformal rank: the ceil(401 * 0.95) = 381st order statistic and its mirror
    s = np.sort(calib)
    assert iv.log_hi == s[380] and iv.log_lo == s[400 - 381]
    fresh = rng.normal(0.02, 0.05, 20000)
    inside = np.mean((fresh >= iv.log_lo) & (fresh <= iv.log_hi))
    assert 0.87 <= inside <= 0.94
    # bounds act multiplicatively on ms; an asymmetric error law gives asymmetric bounds
    lo, hi = iv.bounds(10.0)
    assert lo == pytest.approx(10 * math.exp(iv.log_lo)) and hi == pytest.approx(10 * math.exp(iv.log_hi))
    skew = PredictionInterval.from_log_residuals(np.abs(rng.normal(0, 0.1, 200)))
    assert skew.log_lo >= 0 and skew.log_hi > 0.1


def test_from_residuals_is_log_measured_over_predicted():
    pred = np.full(50, 2.0)
    r = np.linspace(-0.1, 0.2, 50)
    iv = PredictionInterval.from_residuals(pred, pred * np.exp(r))
    # rank ceil(51 * 0.95) = 49: the second smallest and second largest of 50
    assert iv.log_lo == pytest.approx(r[1]) and iv.log_hi == pytest.approx(r[48])
    assert iv.contains(pred, pred * np.exp(r)).sum() == 48
    assert not iv.contains(np.array([2.0]), np.array([3.0]))[0]


def test_too_few_or_bad_intervals_are_refused():
    with pytest.raises(ValueError, match=f"at least {MIN_RESIDUALS}"):
        PredictionInterval.from_log_residuals([0.0] * (MIN_RESIDUALS - 1))
    for bad in ({"coverage": 1.5, "log_lo": -0.1, "log_hi": 0.1, "n_residuals": 10},
                {"coverage": 0.9, "log_lo": 0.1, "log_hi": -0.1, "n_residuals": 10},
                {"coverage": 0.9, "log_lo": float("nan"), "log_hi": 0.1, "n_residuals": 10},
                {"coverage": 0.9, "log_lo": -50, "log_hi": 0.1, "n_residuals": 10},
                {"coverage": 0.9, "log_hi": 0.1, "n_residuals": 10}):
        with pytest.raises(ValueError):
            PredictionInterval.from_dict(bad)
    iv = PredictionInterval(0.9, -0.1, 0.05, 30, "x")
    assert PredictionInterval.from_dict(json.loads(json.dumps(iv.to_dict()))) == iv


def test_ridge_loo_residuals_are_leave_one_out():
    rng = np.random.default_rng(1)
    F = rng.normal(size=(20, 3))
    y = F @ np.array([0.3, -0.2, 0.1]) + rng.normal(0, 0.05, 20)
    coef, b, alpha, loo, r = ridge_loo(F, y, alphas=(1.0,))
    assert loo == pytest.approx(np.sqrt(np.mean(r**2)))
    # refit without item 0 by brute force: the closed-form residual is the held-out error
    mu, sd = F[1:].mean(0), F[1:].std(0)
    from hwnas.predictors.transfer import ridge_loo as fit
    c0, b0, *_ = fit(F[1:], y[1:], alphas=(1.0 * 1.0,))
    # the closed form uses the full-data standardization: compare with a loose tolerance
    assert r[0] == pytest.approx(y[0] - (F[0] @ c0 + b0), abs=0.02)


@pytest.mark.slow
def test_train_saves_intervals_that_load_and_cover(tiny_profile, tmp_path):
    d = tmp_path / "p"
    shutil.copytree(tiny_profile[0], d, ignore=shutil.ignore_patterns("predictors"))
    index = train_all(d, ["lut", "kernel"], kernel_intervals=True)
    iv = index["intervals"]
    assert set(iv["lut"]) == {"arch"} and set(iv["kernel"]) == {"arch", "onnx"}
    assert iv["kernel"]["onnx"]["source"] == "zoo families held out"
    lut = load_predictor(d, "lut")
    a = lut.interval("arch")
    assert a is not None and a.n_residuals == index["heldout"]["n_test"] and a.log_lo < 0 < a.log_hi
    assert lut.interval("onnx") is None
    # the interval covers the held-out measurements it came from at (at least) its nominal level
    from hwnas.predictors.data import arch_data, holdout_split
    from hwnas.predictors import make_predictor
    from hwnas.profile import Profile

    prof = Profile.load(d)
    train, test = holdout_split(list(prof.table("arch")["key"]), 0.5)
    half = make_predictor("lut").fit(prof, train)
    data = arch_data(prof, test)
    assert np.mean(a.contains(half.predict_relative(data.archs), data.relative)) >= 0.9
    # a tampered interval is a one-line error naming the file
    idx = json.loads((d / "predictors" / "index.json").read_text())
    idx["intervals"]["lut"]["arch"]["log_hi"] = -1.0
    (d / "predictors" / "index.json").write_text(json.dumps(idx))
    with pytest.raises(HwnasError, match="prediction interval of lut .* is corrupt"):
        load_predictor(d, "lut")


def test_cli_predict_reports_the_interval(tiny_profile, tmp_path):
    d = tmp_path / "p"
    shutil.copytree(tiny_profile[0], d, ignore=shutil.ignore_patterns("predictors"))
    train_all(d, ["lut"])
    from hwnas.space import SearchSpace

    arch = str(SearchSpace(resolutions=(128,), width_mults=(1.0,)).smallest())
    r = subprocess.run([sys.executable, "-m", "hwnas", "predict", arch, "--profile", str(d), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)[0]
    assert o["latency_ms_lo"] < o["latency_ms"] < o["latency_ms_hi"] and o["interval_coverage"] == 0.9


def test_transfer_intervals_from_leave_one_out():
    t = TransferPredictor()
    t.loo_residuals_ = np.linspace(-0.05, 0.08, 30)  # 30 residuals: rank ceil(31 * 0.95) = 30, the extremes
    iv = t.loo_intervals()
    assert iv["arch"].log_lo == pytest.approx(-0.05) and iv["arch"].log_hi == pytest.approx(0.08)
    ref = PredictionInterval(0.9, -0.2, 0.1, 40, "zoo families held out")
    both = t.loo_intervals(ref)["onnx"]
    assert both.log_lo == pytest.approx(-0.25) and both.log_hi == pytest.approx(0.18)
    t.loo_residuals_ = np.zeros(MIN_RESIDUALS - 1)
    assert t.loo_intervals(ref) == {}


def test_transfer_interval_is_never_narrower_than_the_references():
    """One calibration's leave-one-out bounds cannot see a later measurement's shift: each side is
    combined in quadrature with the reference's own held-out interval (and keeps its sign)."""
    t = TransferPredictor()
    t.loo_residuals_ = np.linspace(-0.03, 0.04, 30)  # rank 30 of 30: the extremes
    ref = PredictionInterval(0.9, -0.04, 0.03, 150, "in-space test half")
    iv = t.loo_intervals(None, ref)["arch"]
    assert iv.log_lo == pytest.approx(-0.05) and iv.log_hi == pytest.approx(0.05)
    assert "quadrature" in iv.source and iv.n_residuals == 30
    assert iv.log_lo < ref.log_lo and iv.log_hi > ref.log_hi
    # a one-sided leave-one-out (every residual positive): the lower bound moves down by the increment only
    t.loo_residuals_ = np.linspace(0.01, 0.05, 30)
    iv = t.loo_intervals(None, ref)["arch"]
    assert iv.log_lo == pytest.approx(0.01 - 0.04) and iv.log_hi == pytest.approx(0.05 + (np.hypot(0.05, 0.03) - 0.05))
    assert t.loo_intervals()["arch"].log_lo == pytest.approx(0.01)  # without a reference: as before


def test_weighted_ridge_with_unit_weights_is_plain_ridge():
    rng = np.random.default_rng(3)
    F = rng.normal(size=(25, 4))
    y = F @ np.array([0.2, -0.1, 0.05, 0.0]) + rng.normal(0, 0.02, 25)
    plain = ridge_loo(F, y)
    unit = ridge_loo(F, y, weights=np.ones(25))
    np.testing.assert_allclose(plain[0], unit[0], atol=1e-12)
    assert plain[1] == pytest.approx(unit[1], abs=1e-12) and plain[2] == unit[2]
    np.testing.assert_allclose(plain[4], unit[4], atol=1e-12)


def test_robust_transfer_fit_resists_a_few_bad_measurements():
    from hwnas.predictors.transfer import robust_ridge_loo

    rng = np.random.default_rng(4)
    F = rng.normal(size=(30, 3))
    law = np.array([0.15, -0.08, 0.05])
    y = F @ law + 0.3 + rng.normal(0, 0.01, 30)
    bad = y.copy()
    bad[[3, 17]] += np.log(1.6)  # two runs disturbed by a busy machine: 60% slow
    plain = ridge_loo(F, bad)
    robust = robust_ridge_loo(F, bad)
    clean = ridge_loo(F, y)
    X = rng.normal(size=(200, 3))
    err = lambda fit: np.max(np.abs((X @ fit[0] + fit[1]) - (X @ clean[0] + clean[1])))
    assert err(robust) < 0.01 < err(plain)  # the robust law stays within 1% of the clean one; plain does not
    assert robust[5][[3, 17]].max() < 0.2 and np.median(robust[5]) == 1.0
