"""benchmarks/two_canaries.py: the arithmetic behind its spreads."""

import math

import numpy as np
import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def two():
    return load_benchmark("two_canaries")


def test_matched_weight_places_a_model_between_the_canaries(two):
    assert two.matched_weight(5.0, 5.0, 40.0) == 0.0 and two.matched_weight(40.0, 5.0, 40.0) == 1.0
    assert two.matched_weight(1.0, 5.0, 40.0) == 0.0 and two.matched_weight(400.0, 5.0, 40.0) == 1.0
    assert two.matched_weight(math.sqrt(5.0 * 40.0), 5.0, 40.0) == pytest.approx(0.5)


def test_spreads(two):
    assert two.spread_pct(np.log([2.0, 2.2, 1.9])) == pytest.approx(100 * (2.2 / 1.9 - 1))
    rng = np.random.default_rng(0)
    s, lg = rng.normal(0, 0.2, 12), rng.normal(0, 0.2, 12)
    exact = 1.0 + 0.3 * s + 0.6 * lg  # a model that follows a blend of both canaries exactly
    assert two.fitted_residual_spread(exact, s, lg) == pytest.approx(0.0, abs=1e-9)
    noisy = exact + rng.normal(0, 0.05, 12)
    assert 0.0 < two.fitted_residual_spread(noisy, s, lg) < two.spread_pct(noisy - s)
