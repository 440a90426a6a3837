"""Regression tests for issue 13's high / medium defects: each case failed before its fix."""

import functools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hwnas.errors import HwnasError, InputError
from hwnas.paths import default_profile_dir
from hwnas.predictors import load_predictor, train_all
from hwnas.space import Arch, SearchSpace

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_2T = default_profile_dir().parent / "cpu-2t"  # made with --n-kernel-profiles 0
OUTSIDE_R = "r224_w1.0_k3e4-k5e6_k7e3-k3e3-k5e4_k3e6-k3e6_k5e4-k5e4-k7e3-k3e3_k3e3-k5e6"
OUTSIDE_W = "r128_w1.2_k3e4-k5e6_k7e3-k3e3-k5e4_k3e6-k3e6_k5e4-k5e4-k7e3-k3e3_k3e3-k5e6"


def _cli(*args, cwd=None, timeout=300):
    """``hwnas ARGS`` in a subprocess importing this checkout's hwnas."""
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "hwnas.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env=env)


def _error_line(r) -> str:
    """The one ``error:`` line of a failed command (exit 2, no traceback)."""
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    return errors[0]


@pytest.fixture(scope="module")
def trained_tiny(tiny_profile, tmp_path_factory):
    """A trained copy of the tiny profile (resolution 128, width 1.0 only)."""
    d = tmp_path_factory.mktemp("rel") / "tiny"
    shutil.copytree(tiny_profile[0], d, ignore=shutil.ignore_patterns("predictors"))
    train_all(d)
    return d


# -- 1. reports of a profile without per-kernel records -------------------------------------------


@pytest.mark.slow  # tens of seconds (CLI subprocesses): run by .ci/run's slow step
def test_compare_out_without_kernel_records(tmp_path):
    r = _cli("compare", "--profile", BUNDLED_2T, "--out", tmp_path / "c")
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "c" / "report.html").read_text()
    assert "No per-kernel breakdown" in html and "no per-kernel records" in html
    assert not (tmp_path / "c" / "kernel_breakdown.png").exists()
    st = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert st["kernel_breakdown"]["arch"] is None and "per-kernel records" in st["kernel_breakdown"]["missing"]
    assert "no per-kernel breakdown" in r.stderr


@pytest.mark.slow
def test_demo_without_kernel_records(tmp_path, monkeypatch):
    from hwnas import demo
    from hwnas.demo import Steps, run_demo

    logs = []

    class _Steps(Steps):
        def log(self, msg):
            logs.append(msg)

        def warn(self, msg):
            logs.append(msg)

    # real steps, made small (one canary round, small searches, nothing verified): the report is what this is about
    monkeypatch.setattr(demo, "check_machine", functools.partial(demo.check_machine, rounds=1))
    monkeypatch.setattr(demo, "run_searches", functools.partial(demo.run_searches, population=10, generations=3,
                                                                verify_top=0))
    res = run_demo(tmp_path / "d", BUNDLED_2T, _Steps())
    html = res.report.read_text()
    assert "No per-kernel breakdown" in html and "Search under 3 budgets" in html
    assert (tmp_path / "d" / "pareto.png").is_file() and (tmp_path / "d" / "compare.json").is_file()
    assert any("no per-kernel breakdown" in m for m in logs)


def test_demo_search_survives_no_measured_winner(monkeypatch):
    """A budget where no candidate *measures* within it (a noisy machine, a budget at the space's floor) is a
    note in the demo, not a crash: the search's predicted winner is shown (it crashed CI once)."""
    from hwnas import demo
    from hwnas.profile import Profile
    from hwnas.search import measured
    from hwnas.search.problem import InfeasibleError

    calls, warned = [], []

    def no_winner(result, **kw):
        calls.append(result.config.budgets_ms)
        raise InfeasibleError("no candidate measured within 7.5 ms (margin 2%) after 40 measurements")

    class _Steps(demo.Steps):
        def task(self, name, total):
            return lambda n=1: None

        def warn(self, msg):
            warned.append(msg)

    monkeypatch.setattr(measured, "measure_in_loop", no_winner)
    space = Profile.load(BUNDLED_2T, check_machine=False).space
    out = demo.run_searches(BUNDLED_2T, space, [7.5, 12.0], _Steps(), population=8, generations=2, verify_top=0)
    assert calls == [(7.5,), (12.0,)]
    assert [b["budget_ms"] for b in out["best"]] == [7.5, 12.0]
    assert all(b["predicted_latency_ms"] <= b["budget_ms"] for b in out["best"])
    assert sum("no candidate measured within the budget" in n for n in out["notes"]) == 2
    assert len(warned) == 2 and "not verified" in warned[0]


# -- 2. an architecture outside a profile's restricted space ---------------------------------------


@pytest.mark.parametrize("arch, what", [(OUTSIDE_R, r"resolution 224 is outside the space \[128\]"),
                                        (OUTSIDE_W, r"width multiplier 1.2 is outside the space \[1.0\]")])
def test_predict_outside_restricted_space(trained_tiny, arch, what):
    for name in ("lut", "learned"):
        with pytest.raises(InputError, match=f"{arch} is outside this profile's search space: {what}"):
            load_predictor(trained_tiny, name).predict([arch])
    line = _error_line(_cli("predict", arch, "--profile", trained_tiny, "--predictor", "lut"))
    assert "outside this profile's search space" in line and arch in line
    # a predictor of any model still prices it
    assert load_predictor(trained_tiny, "macs").predict([Arch.parse(arch)])[0] > 0


def test_fewshot_predict_outside_reference_space(trained_tiny, tmp_path):
    from hwnas.predictors.transfer import TransferPredictor
    from hwnas.profile import Profile

    prof = Profile.load(trained_tiny)
    tp = TransferPredictor().fit(prof, load_predictor(trained_tiny, "lut"))
    with pytest.raises(InputError, match=r"outside this profile's search space: resolution 224"):
        tp.predict([OUTSIDE_R])


# -- 3. search --out -----------------------------------------------------------------------------


@pytest.mark.slow  # 4-7 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_search_out_checked_before_search(tmp_path):
    (tmp_path / "f").write_text("x")
    r = _cli("search", "--budget-ms", "6", "--profile", BUNDLED_2T, "--accuracy", "params", "--generations", "2",
             "--out", tmp_path / "f" / "sub")
    line = _error_line(r)
    assert "cannot create output directory" in line
    assert "candidates evaluated" not in r.stderr  # failed before searching


@pytest.mark.slow  # 4-7 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_search_result_survives_output_error(tmp_path):
    out = tmp_path / "o"
    (out / "candidates.csv").mkdir(parents=True)  # the write fails after the search, even as root
    r = _cli("search", "--budget-ms", "6", "--profile", BUNDLED_2T, "--accuracy", "params", "--population", "10",
             "--generations", "2", "--json", "--out", out)
    line = _error_line(r)
    assert "could not write the search's files" in line and "candidates.csv" in line
    rows = json.loads(r.stdout)  # the result was printed first
    assert len(rows) == 1 and rows[0]["predicted_latency_ms"] <= 6


# -- 4. non-finite numbers -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 0, -1, "nan", "fast", None, True])
def test_positive_number_rejects_non_finite(value):
    from hwnas.validate import positive_number

    with pytest.raises(InputError, match=r"^budget must be a positive, finite number of ms, got "):
        positive_number(value, "budget", "ms")


def test_positive_number_accepts():
    from hwnas.validate import positive_number

    assert positive_number(2, "x") == 2.0 and positive_number("0.5", "x") == 0.5
    assert positive_number(0, "x", allow_zero=True) == 0.0
    for bad in (-1, float("nan")):
        with pytest.raises(InputError, match="non-negative, finite"):
            positive_number(bad, "x", allow_zero=True)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_library_configs_reject_non_finite(value, tmp_path):
    from hwnas.accuracy.supernet import train_supernet
    from hwnas.profile import ProfilePlan
    from hwnas.search.problem import Constraints

    with pytest.raises(InputError, match="time budget"):
        ProfilePlan(time_budget_min=value)
    with pytest.raises(InputError, match="max-model-mb"):
        Constraints((5.0,), max_model_mb=value)
    with pytest.raises(InputError, match="time budget"):
        train_supernet("builtin:digits", tmp_path / "s", time_budget_s=value)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("args", [
    ["profile", "--device", "cpu-1t", "--time-budget-min", "nan"],
    ["profile", "--device", "cpu-1t", "--time-budget-min", "inf"],
    ["supernet", "train", "--data", "builtin:digits", "--time-budget-min", "nan"],
])
def test_cli_rejects_non_finite_time_budget(args, tmp_path):
    out = tmp_path / "out"
    line = _error_line(_cli(*args, "--out", out))
    assert "--time-budget-min" in line and "finite" in line
    assert not out.exists()  # nothing written


def test_device_file_rejects_non_finite(tmp_path):
    from hwnas.devices import load_device

    text = (ROOT / "devices" / "cpu-1t.toml").read_text()
    for bad in ("batch_size = nan", "batch_size = inf", "intra_op_threads = nan"):
        key = bad.split(" = ")[0]
        p = tmp_path / "d.toml"
        p.write_text("\n".join(bad if ln.startswith(key + " ") else ln for ln in text.splitlines()) + "\n")
        with pytest.raises(InputError, match=f"key '{key}' must be an integer >= 1, got nan|key '{key}' must be an "
                                             f"integer >= 1, got inf"):
            load_device(str(p))


# -- 5. resuming a profile made before a device key was added ------------------------------------


@pytest.fixture
def old_profile(tmp_path):
    """A writable copy of the bundled cpu-1t profile (its device meta lacks ``allow_spinning``)."""
    d = tmp_path / "cpu-1t"
    d.mkdir()
    src = sqlite3.connect(f"file:{default_profile_dir() / 'profile.sqlite'}?mode=ro", uri=True)
    dst = sqlite3.connect(d / "profile.sqlite")
    src.backup(dst)
    src.close()
    dst.close()
    return d


def _resume_check(d, device, **meta):
    from hwnas.devices import load_device
    from hwnas.profile import ProfilePlan
    from hwnas.profile.campaign import check_resume
    from hwnas.profile.store import ProfileStore

    with ProfileStore(d) as store:
        for k, v in meta.items():
            store.set_meta(k, v)
        check_resume(store, load_device(device), SearchSpace.from_dict(store.get_meta("space")),
                     ProfilePlan(seed=store.get_meta("plan")["seed"]))


def test_resume_old_profile_with_same_device(old_profile):
    from hwnas.profile.store import ProfileStore

    with ProfileStore(old_profile, readonly=True) as s:
        assert "allow_spinning" not in s.get_meta("device")  # the case of the issue
    _resume_check(old_profile, "cpu-1t")  # no error: a missing key means its default


def test_resume_names_the_setting_or_the_machine(old_profile):
    from hwnas.errors import DeviceMismatchError
    from hwnas.profile.store import ProfileStore

    with pytest.raises(DeviceMismatchError, match=r"made with device 'cpu-1t' \(intra_op_threads = 1\); cannot resume "
                                                  r"it with device 'cpu-2t' \(intra_op_threads = 2\)"):
        _resume_check(old_profile, "cpu-2t")
    with ProfileStore(old_profile, readonly=True) as s:
        fp = s.get_meta("fingerprint")
    with pytest.raises(DeviceMismatchError, match="made on another machine .*cpu_model"):
        _resume_check(old_profile, "cpu-1t", fingerprint=dict(fp, cpu_model="Some Other CPU"))


# -- 8. bad width multipliers; a failed start leaves no stub --------------------------------------


@pytest.mark.parametrize("w", ["nan", "-1", "0", "inf", "1.0,nan"])
def test_cli_rejects_bad_width_mults(w, tmp_path):
    out = tmp_path / "p"
    line = _error_line(_cli("profile", "--device", "cpu-1t", "--out", out, f"--width-mults={w}"))
    assert "width multipliers must be positive, finite numbers" in line
    assert not out.exists()
    with pytest.raises(ValueError, match="width multipliers"):
        SearchSpace(width_mults=tuple(float(x) for x in w.split(",")))


def test_failed_start_leaves_no_stub(tmp_path, monkeypatch):
    from hwnas.devices import load_device
    from hwnas.profile import ProfilePlan, build_profile
    from hwnas.profile import campaign

    def broken(*a, **k):  # as the NaN width did: the space's first architectures cannot be built
        raise ValueError("cannot convert float NaN to integer")

    monkeypatch.setattr(campaign, "profile_archs", broken)
    out = tmp_path / "p"
    for _ in range(2):  # the retry is not blocked by a stub ("already holds a profile")
        with pytest.raises(ValueError, match="NaN"):
            build_profile(load_device("cpu-1t"), out, ProfilePlan(time_budget_min=1))
        assert not out.exists()
    (tmp_path / "q").mkdir()  # a directory that existed before is kept, empty
    with pytest.raises(ValueError, match="NaN"):
        build_profile(load_device("cpu-1t"), tmp_path / "q", ProfilePlan(time_budget_min=1))
    assert list((tmp_path / "q").iterdir()) == []


# -- 6. a profile from another machine: predict and search warn ------------------------------------


@pytest.fixture
def other_machine_2t(tmp_path):
    """A copy of the bundled cpu-2t profile whose fingerprint names another CPU."""
    from hwnas.profile.store import ProfileStore

    d = tmp_path / "cpu-2t"
    shutil.copytree(BUNDLED_2T, d)
    with ProfileStore(d) as s:
        s.set_meta("fingerprint", dict(s.get_meta("fingerprint"), cpu_model="Some Other CPU"))
    return d


def _warnings(r) -> list[str]:
    assert r.returncode == 0, r.stderr
    return [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]


@pytest.mark.slow
@pytest.mark.parametrize("cmd", [["predict", OUTSIDE_R.replace("r224", "r160")],
                                 ["search", "--budget-ms", "6", "--accuracy", "params", "--population", "10",
                                  "--generations", "2"]])
def test_predict_and_search_warn_of_another_machine(cmd, other_machine_2t):
    # --no-calibrate: the profile as it is (by default it would be calibrated to this machine instead)
    w = _warnings(_cli(*cmd, "--profile", other_machine_2t, "--no-calibrate"))
    assert len(w) == 1 and "measured on another machine" in w[0] and "Some Other CPU" in w[0], w
    assert _warnings(_cli(*cmd, "--profile", BUNDLED_2T)) == []  # made here: no warning


# -- 7. a slow (per-architecture) latency predictor: the probe is sized to the search ---------------


def test_search_probe_sized_for_slow_predictor(monkeypatch):
    from hwnas.predictors.macs import MacsPredictor
    from hwnas.search import PROBE_SAMPLES, SearchConfig, run_search

    batches = []
    real = MacsPredictor.predict_relative

    def counting(self, targets):
        batches.append(len(targets))
        return real(self, targets)

    monkeypatch.setattr(MacsPredictor, "predict_relative", counting)
    cfg = SearchConfig(budgets_ms=(6.0,), profiles=(str(BUNDLED_2T),), accuracy="params", latency_predictor="macs",
                       population=10, generations=2)
    run_search(cfg)
    assert max(batches) >= PROBE_SAMPLES  # a quick predictor: the full probe
    batches.clear()
    monkeypatch.setattr(MacsPredictor, "prices_quickly", False)  # as the kernel predictor
    res = run_search(cfg)
    n_extremes = 2 + 4 * 2  # smallest, largest, and the smallest at each resolution x width
    assert batches[0] <= 10 + n_extremes and max(batches) < PROBE_SAMPLES
    assert any("prices one architecture at a time" in n for n in res.notes)
    assert res.best[0].predicted_latency_ms <= 6.0


def test_ctrl_c_at_start_keeps_a_resumable_profile(tmp_path, monkeypatch):
    from hwnas.devices import load_device
    from hwnas.profile import ProfilePlan, build_profile
    from hwnas.profile import campaign
    from hwnas.profile.store import ProfileStore

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(campaign, "profile_archs", interrupted)
    out = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        build_profile(load_device("cpu-1t"), out, ProfilePlan(time_budget_min=1))
    # kept, closed and compacted into one file: --resume continues it
    assert sorted(p.name for p in out.iterdir()) == ["profile.sqlite"]
    with ProfileStore(out, readonly=True) as s:
        assert s.get_meta("status") == "in-progress"
