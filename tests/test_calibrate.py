"""Calibrate on first use: a profile of another machine is turned into this machine's, once, cached."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from hwnas.predictors import train_all
from hwnas.profile.calibrate import calibrated_profile, calibration_key
from hwnas.profile.store import ProfileStore


@pytest.fixture(scope="module")
def foreign(tiny_profile, tmp_path_factory):
    """The tiny profile, trained, as if measured on another CPU."""
    d = tmp_path_factory.mktemp("foreign") / "cpu-1t"
    shutil.copytree(tiny_profile[0], d, ignore=shutil.ignore_patterns("predictors"))
    train_all(d, ["lut"])
    store = ProfileStore(d)
    try:
        fp = store.get_meta("fingerprint")
        store.set_meta("fingerprint", dict(fp, cpu_model="Some Other CPU 9000"))
    finally:
        store.close()
    return d


def _run(*args, cache):
    env = dict(os.environ, HWNAS_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "hwnas", *args], capture_output=True, text=True, timeout=600, env=env)


def test_same_machine_profile_is_used_as_is(tiny_profile, tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE_DIR", str(tmp_path))
    cal = calibrated_profile(tiny_profile[0])
    assert cal.reason == "same machine" and cal.profile_dir == tiny_profile[0]
    assert not (tmp_path / "calibrated").exists()


@pytest.mark.slow
def test_cli_calibrates_on_first_use_then_reuses_the_cache(foreign, tmp_path):
    from hwnas.space import SearchSpace

    arch = str(SearchSpace(resolutions=(128,), width_mults=(1.0,)).smallest())
    cache = tmp_path / "cache"
    r = _run("predict", arch, "--profile", str(foreign), "--calibration-shots", "5", "--json", cache=cache)
    assert r.returncode == 0, r.stderr
    assert "made on another machine (cpu_model" in r.stderr and "using new calibration" in r.stderr
    [cal_dir] = list((cache / "calibrated").iterdir())
    out = json.loads(r.stdout)[0]
    assert out["profile"] == str(cal_dir) and out["predictor"] == "transfer"
    store = ProfileStore(cal_dir, readonly=True)
    try:
        meta = store.meta()
        n = store.row_counts()
    finally:
        store.close()
    assert meta["few_shot"]["n"] == 5 and meta["few_shot"]["reference"] == str(foreign)
    # the second use measures nothing and says where the calibration came from
    r2 = _run("predict", arch, "--profile", str(foreign), "--calibration-shots", "5", "--json", cache=cache)
    assert r2.returncode == 0, r2.stderr
    assert "using cached calibration" in r2.stderr and json.loads(r2.stdout)[0]["latency_ms"] == out["latency_ms"]
    store = ProfileStore(cal_dir, readonly=True)
    try:
        assert store.row_counts() == n
    finally:
        store.close()
    # --no-calibrate: the profile as it is, in the other machine's milliseconds
    r3 = _run("predict", arch, "--profile", str(foreign), "--no-calibrate", "--json", cache=cache)
    assert r3.returncode == 0 and json.loads(r3.stdout)[0]["profile"] == str(foreign)


@pytest.mark.slow  # 7-9 s (measures / CLI subprocesses): run by .ci/run's slow step
def test_cli_calibration_bad_input(foreign, tmp_path):
    ro = tmp_path / "file"
    ro.write_text("not a folder")
    r = _run("predict", "r128_w1.0_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3", "--profile", str(foreign),
             "--calibration-shots", "5", cache=ro)
    assert r.returncode != 0 and "calibration cache" in r.stderr and "Traceback" not in r.stderr
    r = _run("search", "--budget-ms", "5", "--profile", str(foreign), "--calibration-shots", "2", cache=tmp_path)
    assert r.returncode == 2 and "--calibration-shots must be at least 5" in r.stderr


def test_calibration_key_depends_on_machine_device_and_version():
    meta = {"device": {"name": "cpu-1t"}, "space": {"r": [128]}, "fingerprint": {"cpu_model": "A"}, "created_at": 1}
    here = {"cpu_model": "B", "logical_cores": 2}
    k = calibration_key(meta, here, "0.1.0")
    assert k == calibration_key(dict(meta), dict(here), "0.1.0")
    assert k != calibration_key(meta, dict(here, cpu_model="C"), "0.1.0")
    assert k != calibration_key(dict(meta, device={"name": "cpu-2t"}), here, "0.1.0")
    assert k != calibration_key(meta, here, "0.2.0")
