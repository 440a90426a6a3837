"""Search on the bundled reference profile (its trained latency predictor), real estimators."""

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

from hwnas.errors import InputError
from hwnas.paths import default_profile_dir
from hwnas.search import InfeasibleError, SearchConfig, run_search, verify
from hwnas.space import Arch

PROFILE = str(default_profile_dir())
SMALL = dict(population=30, generations=20, accuracy="params")


def _cfg(**kw):
    d = dict(budgets_ms=(8.0,), **SMALL)
    d.update(kw)
    return SearchConfig(**d)


@pytest.mark.parametrize("strategy", ["evolution", "random", "grid", "nsga2"])
def test_strategies_respect_budget_and_reproduce(strategy):
    r1 = run_search(_cfg(strategy=strategy, seed=3, n_samples=600))
    r2 = run_search(_cfg(strategy=strategy, seed=3, n_samples=600))
    b = r1.best[0]
    assert b.predicted_latency_ms <= 8.0
    assert b.arch == r2.best[0].arch and b.accuracy_estimate == r2.best[0].accuracy_estimate
    assert r1.n_queries == r2.n_queries > 0
    Arch.parse(b.arch)
    # the winner is the most accurate feasible candidate the search evaluated
    h = r1.history()
    feas = h[h["feasible_0"]]
    assert b.accuracy_estimate == feas["accuracy_estimate"].max()
    assert h["arch"].is_unique


def test_different_seeds_explore_differently():
    a = run_search(_cfg(seed=1)).history()["arch"]
    b = run_search(_cfg(seed=2)).history()["arch"]
    assert set(a) != set(b)


def test_evolution_population_does_not_collapse():
    r = run_search(_cfg(generations=60))
    h = r.history()
    # the last generation's 30 members are distinct: more distinct archs than generations x parents
    assert h["arch"].nunique() == len(h) > 60 * 7


def test_infeasible_budget_fails_fast_naming_minimum():
    t0 = time.perf_counter()
    with pytest.raises(InfeasibleError, match=r"below the smallest latency reachable .*: [0-9]+[.][0-9]+ ms"):
        run_search(_cfg(budgets_ms=(0.01,)))
    assert time.perf_counter() - t0 < 5.0  # well under a second once imports are warm


def test_budget_that_does_not_bind():
    r = run_search(_cfg(budgets_ms=(1e6,)))
    assert any("does not bind" in n for n in r.notes)


@pytest.mark.parametrize("kw, msg", [
    (dict(budgets_ms=(0.0,)), "positive"),
    (dict(budgets_ms=(-3.0,)), "positive"),
    (dict(budgets_ms=(math.nan,)), "positive"),
    (dict(strategy="annealing"), "unknown strategy"),
    (dict(accuracy="oracle"), "unknown accuracy estimator"),
    (dict(max_params=1000), "below the smallest architecture"),
    (dict(max_peak_mem_mb=0.01), "below the smallest architecture"),
    (dict(budgets_ms=(8.0, 9.0)), "one --budget-ms per --profile"),
])
def test_bad_configs(kw, msg):
    with pytest.raises(InputError, match=msg):
        run_search(_cfg(**kw))


def test_static_limits_hold():
    r = run_search(_cfg(budgets_ms=(20.0,), max_params=5_000_000, max_peak_mem_mb=3.0))
    for c in r.top[0]:
        assert c.params <= 5_000_000 and c.peak_mem_mb <= 3.0


def test_several_devices_in_one_run():
    r = run_search(_cfg(profiles=(PROFILE, PROFILE), budgets_ms=(6.0, 12.0)))
    assert len(r.best) == 2
    assert r.best[0].predicted_latency_ms <= 6.0 < r.best[1].predicted_latency_ms <= 12.0
    assert r.best[1].accuracy_estimate >= r.best[0].accuracy_estimate


def test_verify_measures_on_device():
    r = run_search(_cfg(budgets_ms=(6.0,), verify=1))
    verify(r, 1)
    c = r.best[0]
    assert c.measured_latency_ms > 0 and c.measured_latency_abs_ms > 0
    assert isinstance(c.within_budget_measured, bool)


def test_verify_corrects_by_the_profiles_canary_and_applies_the_tolerance(monkeypatch):
    """verify() turns a measurement into the profile's milliseconds (canary-relative latency x the
    profile's canary reference, whatever today's absolute figure) and judges it against the budget
    with VERIFY_TOLERANCE.  The measurements are stand-ins with known values; today's machine is
    made twice as slow as the profile's, so an uncorrected figure would be twice too large."""
    import hwnas.measure
    from hwnas.profile import Profile
    from hwnas.search import VERIFY_TOLERANCE

    r = run_search(_cfg(budgets_ms=(6.0,), verify=3))
    top = r.top[0][:3]
    assert len({c.arch for c in top}) == 3
    ref = Profile.load(PROFILE, check_machine=False).canary_reference_ms
    limit = 6.0 * (1 + VERIFY_TOLERANCE)
    want_ms = {top[0].arch: 0.999 * limit, top[1].arch: 1.001 * limit, top[2].arch: 3.0}
    seen = []

    class Measurement:
        def __init__(self, arch):
            self.relative_to_canary = want_ms[arch] / ref
            self.latency_ms = 2.0 * want_ms[arch]  # today's machine: twice the profile's canary

    class StandInMeasurer:
        def __init__(self, device, config=None):
            seen.append(device.name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def measure(self, model, name):
            assert model.graph.input[0].type.tensor_type.shape.dim[2].dim_value == Arch.parse(name).resolution
            seen.append(name)
            return Measurement(name)

    monkeypatch.setattr(hwnas.measure, "Measurer", StandInMeasurer)
    verify(r, 3)
    assert seen == ["cpu-1t", *(c.arch for c in top)]  # one session on the profile's device, each winner once
    for c in top:
        assert c.measured_latency_ms == pytest.approx(want_ms[c.arch], rel=1e-12)
        assert c.measured_latency_abs_ms == pytest.approx(2.0 * want_ms[c.arch], rel=1e-12)
    assert [c.within_budget_measured for c in top] == [True, False, True]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hwnas.cli", "search", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow  # tens of seconds (CLI subprocesses): run by .ci/run's slow step
@pytest.mark.parametrize("budget, msg", [("0", "positive"), ("nan", "positive"), ("fast", "number"),
                                         ("0.001", "smallest latency reachable")])
def test_cli_bad_budget(budget, msg):
    r = _cli("--budget-ms", budget, "--accuracy", "params", "--generations", "5")
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # tens of seconds (CLI subprocesses): run by .ci/run's slow step
def test_cli_json_and_out(tmp_path):
    out = tmp_path / "s"
    r = _cli("--budget-ms", "7", "--accuracy", "params", "--population", "20", "--generations", "10", "--json",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for k in ("arch", "predicted_latency_ms", "accuracy_estimate", "macs", "params"):
        assert k in res[0]
    assert res[0]["predicted_latency_ms"] <= 7
    assert (out / "candidates.csv").stat().st_size > 0
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG" and (out / "progress.png").exists()
    f = tmp_path / "file"
    f.write_text("x")
    r = _cli("--budget-ms", "7", "--accuracy", "params", "--out", str(f))
    assert r.returncode == 2 and "is a file" in r.stderr
