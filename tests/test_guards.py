"""Hostile inputs and faults (issue 13, the "Low" list): each gives a one-line error naming the
problem and changes nothing.  Real profiles, predictors, ORT sessions and SQLite files; a failing
disk is simulated by making the JSON writer raise ENOSPC part-way."""

import errno
import hashlib
import json
import math
import os
import re
import shutil
import sqlite3
import sys
import tracemalloc

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hwnas.devices import DeviceSpec, load_device
from hwnas.errors import HwnasError, InputError, ProfileError
from hwnas.paths import profiles_dir
from hwnas.space import Arch

ARCH = "r128_w1.0_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3"


def _run_main(monkeypatch, capsys, *args):
    from hwnas import cli

    monkeypatch.setattr(sys, "argv", ["hwnas", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    c = capsys.readouterr()
    return e.value.code, c.out, c.err


def _one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[-1], lines[-1]


def _digest(d):
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def trained(tmp_path):
    """A copy of the bundled, trained cpu-2t profile (2 threads: lut, learned, macs, macs+)."""
    d = tmp_path / "cpu-2t"
    shutil.copytree(profiles_dir() / "cpu-2t", d)
    return d


def _edit_json(path, fn):
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


# -- 16: architecture strings (and --input-shape) take ASCII digits only -----------------------

@pytest.mark.parametrize("text, bad", [
    ("r224_w1.0_k\uff13e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3", "k\uff13e3"),  # fullwidth 3
    ("r\u0661\u0666\u0660_w1.0_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3", "r\u0661\u0666\u0660"),  # Arabic-Indic
    ("r160_w\u0661.0_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3", "w\u0661.0"),
    ("r160_w1.0\n_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3", "w1.0\n"),
])
def test_arch_string_takes_ascii_digits_only(text, bad):
    with pytest.raises(ValueError, match="bad token") as e:
        Arch.parse(text)
    assert f"bad token {bad!r}" in str(e.value)


def test_input_shape_takes_ascii_digits_only():
    from hwnas.onnx_io import parse_input_shape

    assert parse_input_shape("x=1,3,224,224") == ("x", [1, 3, 224, 224])
    for dims in ("1,3,\uff12\uff12\uff14,224", "1_0,3"):
        with pytest.raises(InputError, match="is not an integer"):
            parse_input_shape(f"x={dims}")
    with pytest.raises(InputError, match="dimension 99999999999999999999 is too large"):
        parse_input_shape("x=99999999999999999999,3,224,224")


# -- 19: device TOML fields are type-checked -------------------------------------------------

@pytest.mark.parametrize("value", ["5", "true", '["a"]', "{ x = 1 }"])
def test_device_description_must_be_a_string(tmp_path, value):
    text = (profiles_dir().parent / "devices" / "cpu-1t.toml").read_text()
    p = tmp_path / "d.toml"
    p.write_text(re.sub(r"(?m)^description = .*$", f"description = {value}", text))
    assert f"description = {value}" in p.read_text()
    with pytest.raises(InputError, match=rf"device file {re.escape(str(p))}: .*key 'description' must be a string"):
        load_device(str(p))
    with pytest.raises(InputError, match="key 'description' must be a string, got 5"):
        DeviceSpec.from_dict({**load_device("cpu-1t").to_dict(), "description": 5})


# -- 17: an unusable HWNAS_LOCK_DIR ------------------------------------------------------------

@pytest.mark.parametrize("where", ["file", "under_file", "proc"])
def test_unusable_lock_dir_is_one_line(tmp_path, monkeypatch, capsys, where):
    from hwnas.measure import machine_lock

    f = tmp_path / "f"
    f.write_text("x")
    d = {"file": f, "under_file": f / "sub", "proc": "/proc/hwnas-no-such-dir"}[where]
    monkeypatch.setenv("HWNAS_LOCK_DIR", str(d))
    with pytest.raises(HwnasError, match="cannot use the measurement lock file .*HWNAS_LOCK_DIR"):
        with machine_lock():
            pass
    code, _, err = _run_main(monkeypatch, capsys, "measure", ARCH, "--device", "cpu-1t")
    _one_line_error(code, err, "HWNAS_LOCK_DIR")


# -- 11: an oversized feed ---------------------------------------------------------------------

def test_oversized_device_batch_is_refused_before_allocating(tmp_path, monkeypatch):
    import fcntl

    from hwnas.measure import Measurer, lock_path

    monkeypatch.setenv("HWNAS_LOCK_DIR", str(tmp_path))  # a lock of this test's own
    big = DeviceSpec.from_dict({**load_device("cpu-1t").to_dict(), "name": "big", "batch_size": 100_000})
    before = os.sched_getaffinity(0)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"model inputs of .* GB are over the 1 GiB .*100000x3x160x160 float32"):
            with Measurer(big):
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6  # the 31 GB feed was never drawn
    assert os.sched_getaffinity(0) == before  # unpinned again
    with open(lock_path(), "a+") as fh:  # and unlocked
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_feed_is_drawn_in_its_own_dtype():
    """A float32 feed is drawn as float32: no float64 array twice its size on the way."""
    from hwnas.measure import make_session, random_feed

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 512, 512])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 512, 512])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    sess = make_session(m, load_device("cpu-1t"))
    tracemalloc.start()
    try:
        feed = random_feed(sess, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    nbytes = feed["x"].nbytes
    assert feed["x"].dtype == np.float32 and nbytes == 3 * 512 * 512 * 4
    assert peak < 1.5 * nbytes, (peak, nbytes)  # float64 first: ~3x
    np.testing.assert_array_equal(random_feed(sess, 0)["x"], feed["x"])  # seeded


def test_oversized_input_shape_and_int8_calibration_are_refused():
    from hwnas.onnx_io import check_feed_size
    from hwnas.quantize import quantize_int8

    with pytest.raises(InputError, match=r"input 'x': 100000x3x224x224 float32.*--input-shape"):
        check_feed_size([("x", (100_000, 3, 224, 224), np.float32)])
    check_feed_size([("x", (1, 3, 224, 224), np.float32)])  # an ordinary feed passes
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [20_000, 3, 224, 224])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [20_000, 3, 224, 224])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 3, 1, 1], np.eye(3, dtype=np.float32).ravel().tolist())
    m = helper.make_model(helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g", [x], [y], [w]),
                          opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InputError, match=r"int8 calibration inputs \(4 batches\)"):
        quantize_int8(m)


# -- 10: search --max-params nan|inf -----------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0"])
def test_search_max_params_non_finite(monkeypatch, capsys, value):
    from hwnas.search import SearchConfig

    with pytest.raises(InputError, match="--max-params must be a positive"):
        SearchConfig(budgets_ms=(8.0,), max_params=float(value))
    code, _, err = _run_main(monkeypatch, capsys, "search", "--budget-ms", "8", "--max-params", value)
    _one_line_error(code, err, "--max-params")


@pytest.mark.parametrize("option, value", [("--max-model-mb", "nan"), ("--max-peak-mem-mb", "inf"),
                                           ("--max-model-mb", "-1")])
def test_search_size_limits_non_finite(monkeypatch, capsys, option, value):
    code, _, err = _run_main(monkeypatch, capsys, "search", "--budget-ms", "8", option, value)
    _one_line_error(code, err, f"{option} must be a positive")


def test_search_max_params_float_becomes_whole():
    from hwnas.search import SearchConfig

    assert SearchConfig(budgets_ms=(8.0,), max_params=5e6).max_params == 5_000_000


# -- 13: format_version of index.json and predictor files -------------------------------------

def test_newer_index_format_says_which_hwnas(trained):
    from hwnas.predictors import load_predictor

    _edit_json(trained / "predictors" / "index.json", lambda d: d.update(format_version=99, hwnas_version="9.1"))
    with pytest.raises(HwnasError, match=r"index.json has format 99, newer than format 1 .*upgrade to hwnas 9.1 or newer"):
        load_predictor(trained)


@pytest.mark.parametrize("file", ["index.json", "lut.json"])
@pytest.mark.parametrize("value", ["two", None, 1.5, -1])
def test_bad_format_version_is_corrupt(trained, file, value):
    from hwnas.predictors import load_predictor

    _edit_json(trained / "predictors" / file, lambda d: d.update(format_version=value))
    with pytest.raises(HwnasError, match="invalid format_version"):
        load_predictor(trained, "lut")


def test_index_default_must_name_a_predictor(trained):
    from hwnas.predictors import load_predictor

    _edit_json(trained / "predictors" / "index.json", lambda d: d["default"].update(arch="../../profile"))
    with pytest.raises(HwnasError, match="'default' must name a known predictor"):
        load_predictor(trained)


# -- 12: tampered predictor values -------------------------------------------------------------

def _leaves(d, value):
    if isinstance(d, dict):
        for k, v in d.items():
            if k == "value" and isinstance(v, list):
                d[k] = [value] * len(v)
            else:
                _leaves(v, value)
    elif isinstance(d, list):
        for v in d:
            _leaves(v, value)


@pytest.mark.parametrize("name, edit, msg", [
    ("lut", lambda d: d.update(canary_reference_ms=-5), "canary_reference_ms must be a positive"),
    ("learned", lambda d: d.update(canary_reference_ms=0), "canary_reference_ms must be a positive"),
    ("macs", lambda d: d.update(canary_reference_ms="inf"), "canary_reference_ms must be a positive"),
    ("lut", lambda d: d["stage"][0][0][0][0][0].__setitem__(0, -100.0), "lookup table 'stage' must be >= 0"),
    ("lut", lambda d: d["fixed"][0].__setitem__(0, -1.0), "lookup table 'fixed' must be >= 0"),
    ("lut", lambda d: d.update(coef=[1.0, None]), "coef holds a non-finite value"),
    ("macs", lambda d: d.update(scale=[0.0]), "scale must be positive"),
])
def test_tampered_predictor_values_are_refused_at_load(trained, name, edit, msg):
    from hwnas.predictors import load_predictor

    _edit_json(trained / "predictors" / f"{name}.json", edit)
    with pytest.raises(HwnasError, match=msg):
        load_predictor(trained, name)


def test_overflowing_residual_is_an_error_not_inf(trained, monkeypatch, capsys):
    from hwnas.predictors import load_predictor
    from hwnas.search import SearchConfig, run_search

    p = trained / "predictors" / "learned.json"
    d = json.loads(p.read_text())
    n_leaves = json.dumps(d["residual"]).count('"value"')
    _leaves(d["residual"], 1e6)
    assert n_leaves and json.dumps(d["residual"]).count("1000000.0") >= n_leaves
    p.write_text(json.dumps(d))
    pred = load_predictor(trained, "learned")
    with pytest.raises(HwnasError, match=r"predictor 'learned' \(read from .*learned.json\) gives a non-finite latency"):
        pred.predict([ARCH])
    with pytest.raises(HwnasError, match="non-finite latency"):  # the search's vectorized path too
        run_search(SearchConfig(budgets_ms=(8.0,), profiles=(str(trained),), latency_predictor="learned",
                                accuracy="params", population=10, generations=2))
    code, _, err = _run_main(monkeypatch, capsys, "predict", ARCH, "--profile", trained, "--predictor", "learned")
    _one_line_error(code, err, "non-finite latency")
    assert "warning" not in err  # no RuntimeWarning about the overflow either


def test_untampered_predictors_still_load_and_predict(trained):
    from hwnas.predictors import load_predictor

    for name in ("lut", "learned", "macs", "macs+"):
        ms = load_predictor(trained, name).predict([ARCH])
        assert np.isfinite(ms).all() and (ms > 0).all()


# -- 9: train where the predictors cannot be written -------------------------------------------

def test_train_write_failure_leaves_saved_predictors_unchanged(trained, monkeypatch, capsys):
    from hwnas.predictors import serialize

    before = _digest(trained / "predictors")
    real, calls = serialize.save_json, []

    def full_disk(obj, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(obj, path)

    monkeypatch.setattr(serialize, "save_json", full_disk)
    code, _, err = _run_main(monkeypatch, capsys, "train", "--profile", trained, "--predictor", "macs",
                             "--predictor", "lut")
    _one_line_error(code, err, "cannot write trained predictors", "No space left on device",
                    "saved files are unchanged")
    assert len(calls) == 2
    assert _digest(trained / "predictors") == before  # nothing replaced, no staged file left


def test_train_into_a_non_directory_is_one_line(trained, monkeypatch, capsys):
    shutil.rmtree(trained / "predictors")
    (trained / "predictors").write_text("not a directory")
    code, _, err = _run_main(monkeypatch, capsys, "train", "--profile", trained, "--predictor", "macs")
    _one_line_error(code, err, "cannot write trained predictors")
    assert (trained / "predictors").read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_train_on_read_only_profile(trained, monkeypatch, capsys):
    before = _digest(trained)
    os.chmod(trained / "predictors", 0o555)
    try:
        code, _, err = _run_main(monkeypatch, capsys, "train", "--profile", trained)
    finally:
        os.chmod(trained / "predictors", 0o755)
    _one_line_error(code, err, "not writable")
    assert _digest(trained) == before


def test_train_all_writes_every_file_once(trained):
    from hwnas.predictors import load_predictor, read_index, train_all

    index = train_all(trained, ["macs", "lut"])
    assert read_index(trained)["trained_at"] == index["trained_at"]
    assert load_predictor(trained, "lut").predict([ARCH])[0] > 0
    assert not [p for p in (trained / "predictors").iterdir() if p.name.startswith(".")]


# -- 14: --resume of an SQLite file that is not a profile --------------------------------------

def test_resume_refuses_a_foreign_sqlite_file(tmp_path, monkeypatch, capsys):
    from hwnas.profile import ProfilePlan, build_profile

    d = tmp_path / "p"
    d.mkdir()
    conn = sqlite3.connect(d / "profile.sqlite")
    conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    conn.execute("INSERT INTO users VALUES (1, 'ada')")
    conn.commit()
    conn.close()
    before = _digest(d)
    with pytest.raises(ProfileError, match=r"not an hwnas profile \(an SQLite database without a meta table"):
        build_profile(load_device("cpu-1t"), d, ProfilePlan(n_archs=1), resume=True)
    assert _digest(d) == before
    code, _, err = _run_main(monkeypatch, capsys, "profile", "--device", "cpu-1t", "--out", d, "--resume")
    _one_line_error(code, err, "not an hwnas profile")
    assert _digest(d) == before


def test_store_still_reopens_its_own_profiles(tmp_path):
    from hwnas.profile.store import ProfileStore

    ProfileStore(tmp_path, create=True).close()
    s = ProfileStore(tmp_path, create=True)  # a profile made (or killed) earlier is reopened
    assert s.get_meta("schema_version") == 1
    s.close()


# -- 15: an accuracy predictor whose fit statistic is NaN --------------------------------------

def _pairs(n=40, seed=0):
    from hwnas.space import SearchSpace

    return SearchSpace().sample_many(n, seed=seed)


def test_all_equal_accuracies_are_refused(tmp_path, monkeypatch, capsys):
    from hwnas.accuracy.predictor import fit_predictor

    archs = _pairs()
    with pytest.raises(InputError, match="all 40 accuracies are equal"):
        fit_predictor(archs, [97.5] * 40)
    csv = tmp_path / "pairs.csv"
    csv.write_text("arch,accuracy\n" + "".join(f"{a},97.5\n" for a in archs))
    code, _, err = _run_main(monkeypatch, capsys, "supernet", "fit-predictor", "--dir", tmp_path / "acc", "--csv", csv)
    _one_line_error(code, err, "accuracies are equal")
    assert not (tmp_path / "acc").exists()


def test_equal_heldout_accuracies_are_refused():
    from hwnas.accuracy.predictor import fit_predictor, heldout_split

    archs = _pairs(60)
    tr, te = heldout_split([str(a) for a in archs])
    y = np.linspace(90, 99, len(archs))
    y[te] = 95.0
    with pytest.raises(InputError, match=r"held-out Spearman is undefined \(the \d+ held-out accuracies are all equal"):
        fit_predictor(archs, y, model="gbm", features="ordinal")


# -- 18: physically impossible measurements ----------------------------------------------------

@pytest.mark.parametrize("sql, msg", [
    ("UPDATE measurements SET latency_ms = -50, relative_to_canary = -50 / canary_ms WHERE kind = 'block'",
     r"measurements row of block '.*' has latency_ms = -50.0"),
    ("UPDATE measurements SET relative_to_canary = 1e999 WHERE kind = 'arch'",
     r"measurements row of arch '.*' has relative_to_canary = inf"),
    ("UPDATE measurements SET canary_ms = 'fast' WHERE rowid = 7", "has canary_ms = 'fast'"),
    ("UPDATE measurements SET noise_rel = -0.1 WHERE rowid = 3", "noise_rel = -0.1; it must be a non-negative"),
])
def test_impossible_measurements_are_not_trained_on(trained, monkeypatch, capsys, sql, msg):
    conn = sqlite3.connect(trained / "profile.sqlite")
    conn.execute(sql)
    conn.commit()
    conn.close()
    before = _digest(trained / "predictors")
    from hwnas.predictors import train_all

    with pytest.raises(ProfileError, match=msg):
        train_all(trained, ["lut"])
    code, _, err = _run_main(monkeypatch, capsys, "train", "--profile", trained)
    _one_line_error(code, err, "profile.sqlite", "tampered or corrupt profile")
    assert _digest(trained / "predictors") == before


def test_bundled_profiles_pass_the_range_checks():
    from hwnas.profile import Profile

    for name in ("cpu-1t", "cpu-2t", "cpu-1t-int8"):
        p = Profile.load(profiles_dir() / name, check_machine=False)
        assert len(p.measurements) > 0 and math.isfinite(p.canary_reference_ms)
