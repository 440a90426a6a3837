"""Few-shot profiles: real measurements (quick timings) on a real device, adapted from a real
reference profile (the session's tiny cpu-1t profile, trained here)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hwnas.devices import load_device
from hwnas.errors import InputError, ProfileError
from hwnas.measure import MeasureConfig
from hwnas.predictors import load_predictor, read_index, train_all
from hwnas.predictors.transfer import TransferPredictor, ridge_loo
from hwnas.profile import Profile
from hwnas.profile.fewshot import build_fewshot_profile, fewshot_archs, load_reference
from hwnas.profile.store import ProfileStore
from hwnas.paths import profiles_dir
from hwnas.space import SearchSpace

PROFILES_DIR = profiles_dir()

QUICK = MeasureConfig(warmup_runs=1, warmup_s=0.0, rounds=2, max_rounds=3, round_min_runs=3, round_min_s=0.01,
                      canary_min_runs=3, canary_min_s=0.005)


@pytest.fixture(scope="module")
def reference(tiny_profile, tmp_path_factory):
    d = tmp_path_factory.mktemp("ref") / "cpu-1t"
    shutil.copytree(tiny_profile[0], d)
    shutil.rmtree(d / "predictors", ignore_errors=True)
    train_all(d, ["macs", "lut", "learned", "kernel"])
    return d


@pytest.fixture(scope="module")
def fewshot(reference, tmp_path_factory):
    out = tmp_path_factory.mktemp("few") / "cpu-1t-int8"
    rep = build_fewshot_profile(load_device("cpu-1t-int8"), out, reference, 6, config=QUICK, zoo_shots=3)
    return out, rep


def test_ridge_loo_recovers_a_linear_law():
    rng = np.random.default_rng(0)
    F = rng.standard_normal((40, 3))
    y = 0.5 + F @ np.array([1.0, -2.0, 0.0]) + 0.01 * rng.standard_normal(40)
    coef, intercept, alpha, loo, _ = ridge_loo(F, y)
    assert np.allclose(coef, [1.0, -2.0, 0.0], atol=0.05)
    assert abs(intercept - 0.5) < 0.05
    assert loo < 0.05 and alpha <= 1.0
    # pure noise: the penalty grows and the fit shrinks to the mean
    coef0, _, alpha0, _, _ = ridge_loo(F, rng.standard_normal(40))
    assert alpha0 >= 100 and np.abs(coef0).max() < 0.2


def test_fewshot_archs_span_the_latency_range(reference):
    arch_pred, _, prof = load_reference(reference)
    a = fewshot_archs(prof.space, arch_pred, 8, seed=0)
    assert a == fewshot_archs(prof.space, arch_pred, 8, seed=0)  # deterministic
    assert len(set(a)) == 8 and prof.space.smallest() in a
    lat = arch_pred.predict_encoded(prof.space.encode(a))
    assert np.all(np.diff(lat) > 0)  # one per latency quantile, in order
    every = arch_pred.predict_encoded(prof.space.encode(prof.space.sample_many(200, seed=1)))
    assert lat[0] <= np.quantile(every, 0.05) and lat[-1] >= np.quantile(every, 0.9)


def test_fewshot_archs_share_n_over_resolution_and_width():
    """On the bundled profile's space (4 resolutions x 2 widths) N = 30 puts 3-4 in every cell and
    keeps the range's ends; N below the number of cells walks the whole latency range."""
    import collections

    from hwnas.paths import default_profile_dir

    arch_pred, _, prof = load_reference(default_profile_dir())
    sp = prof.space
    n_cells = len(sp.resolutions) * len(sp.width_mults)
    a = fewshot_archs(sp, arch_pred, 30, seed=11)
    cells = collections.Counter((x.resolution, x.width_mult) for x in a)
    assert len(cells) == n_cells == 8 and set(cells.values()) <= {3, 4} and len(set(a)) == 30
    assert sp.smallest() in a and sp.largest() in a
    lat = arch_pred.predict_encoded(sp.encode(a))
    assert np.all(np.diff(lat) >= 0)  # returned in latency order
    few = fewshot_archs(sp, arch_pred, 5, seed=11)
    assert len(few) == 5 and sp.smallest() in few and sp.largest() in few


@pytest.mark.slow  # the few-shot profile they share takes ~40 s to make: in CI's slow step
def test_fewshot_profile_is_a_normal_profile(fewshot, reference):
    out, rep = fewshot
    assert rep.done_now == 6 + 3
    prof = Profile.load(out)
    assert prof.meta["few_shot"]["n"] == 6 and prof.meta["few_shot"]["reference_device"] == "cpu-1t"
    assert prof.meta["few_shot"]["zoo_shots"] == 3
    assert prof.device.precision == "int8" and len(prof.table("arch")) == 6
    # the zoo shots: three tuning families' models, no sealed one
    from hwnas.zoo_sealed import SEALED_FAMILIES

    fams = [t["family"] for t in prof.table("zoo")["target"]]
    assert len(set(fams)) == 3 and not set(fams) & set(SEALED_FAMILIES)
    index = read_index(out)
    assert index["default"] == {"arch": "transfer", "onnx": "transfer"}
    pred = load_predictor(out)
    assert isinstance(pred, TransferPredictor) and pred.n_archs_ == 6
    # the per-class ONNX transfer is kept only when it carries to the other families better than the power law
    ch = pred.onnx_choice_
    assert ch["n_zoo_models"] == 3
    assert (ch["chosen"] == "per kernel class") == (ch["zoo_loo_log_rmse_per_class"] < ch["zoo_log_rmse_power_law"])
    assert (pred.onnx_classes_ is not None) == (ch["chosen"] == "per kernel class")
    # the fitted law reproduces the measurements it was fitted on within the noise of quick timings
    t = prof.table("arch")
    rel = pred.predict_relative(list(t["key"]))
    assert np.median(np.abs(rel / t["relative_to_canary"].to_numpy() - 1)) < 0.25
    # ms on the new device = canary units x the new profile's canary reference
    assert np.allclose(pred.predict(list(t["key"])), rel * prof.canary_reference_ms)
    # save/load: identical predictions in a fresh process
    keys = list(t["key"])[:3]
    code = ("import json,sys; from hwnas.predictors import load_predictor; "
            f"print(json.dumps(load_predictor(sys.argv[1]).predict_relative({keys!r}).tolist()))")
    fresh = json.loads(subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True,
                                      check=True).stdout)
    assert np.array_equal(np.asarray(fresh), pred.predict_relative(keys))


@pytest.mark.slow  # the few-shot profile they share takes ~40 s to make: in CI's slow step
def test_fewshot_predicts_onnx_models(fewshot, tmp_path):
    import onnx

    from hwnas.zoo import zoo_models

    out, _ = fewshot
    m = zoo_models(1)[0]
    path = tmp_path / "zoo.onnx"
    onnx.save(m.build(), path)
    r = subprocess.run([sys.executable, "-m", "hwnas", "predict", str(path), "--profile", str(out), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)[0]
    assert res["predictor"] == "transfer" and res["latency_ms"] > 0


@pytest.mark.slow  # the few-shot profile they share takes ~40 s to make: in CI's slow step
def test_retrain_refits_transfer(fewshot):
    out, _ = fewshot
    before = load_predictor(out).predict_relative([Profile.load(out).table("arch")["key"][0]])
    index = train_all(out)
    assert index["default"]["arch"] == "transfer"
    assert np.allclose(load_predictor(out).predict_relative([Profile.load(out).table("arch")["key"][0]]), before)
    with pytest.raises(InputError, match="few-shot"):
        train_all(out, ["learned"])
    with pytest.raises(InputError, match="few-shot profile"):
        load_predictor(out, "learned")


def test_fewshot_bad_input(reference, tiny_profile, tmp_path):
    dev = load_device("cpu-1t")
    with pytest.raises(InputError, match="at least 5"):
        build_fewshot_profile(dev, tmp_path / "a", reference, 4)
    with pytest.raises(InputError, match="no device profile"):
        build_fewshot_profile(dev, tmp_path / "b", tmp_path / "nowhere", 10)
    untrained = tmp_path / "untrained"
    shutil.copytree(tiny_profile[0], untrained)
    shutil.rmtree(untrained / "predictors", ignore_errors=True)
    with pytest.raises(InputError, match="not trained"):
        build_fewshot_profile(dev, tmp_path / "c", untrained, 10)
    with pytest.raises(InputError, match="another search space"):
        build_fewshot_profile(dev, tmp_path / "d", reference, 10, space=SearchSpace())
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "profile.sqlite").write_text("")
    with pytest.raises(ProfileError, match="already holds"):
        build_fewshot_profile(dev, tmp_path / "e", reference, 10)


@pytest.mark.parametrize("args, message", [
    (["--quick", "10"], "needs --from-profile"),
    (["--from-profile", "{ref}", "--quick", "3"], "at least 5"),
    (["--from-profile", "{missing}"], "no device profile"),
    (["--zoo-shots", "3"], "needs --from-profile"),
    (["--from-profile", "{ref}", "--zoo-shots", "-1"], "--zoo-shots"),
])
def test_fewshot_cli_errors(reference, tmp_path, args, message):
    args = [a.format(ref=reference, missing=tmp_path / "missing") for a in args]
    r = subprocess.run([sys.executable, "-m", "hwnas", "profile", "--device", "cpu-1t", "--out", str(tmp_path / "o"),
                        *args], capture_output=True, text=True)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # the few-shot profile they share takes ~40 s to make: in CI's slow step
def test_compare_prices_a_fewshot_device_with_its_predictor(fewshot, tiny_profile, tmp_path):
    from hwnas.compare import compare
    from hwnas.report import write_report

    out, _ = fewshot
    comp = compare([tiny_profile[0], out], budgets_ms=[5.0])
    dv = comp.stats["devices"]
    assert dv["predicted_devices"] == ["cpu-1t-int8"]
    assert dv["n_common_archs"] == len(Profile.load(tiny_profile[0]).table("arch"))
    rows = [r for r in dv["rows"] if r["device"] == "cpu-1t-int8"]
    assert rows and rows[0]["predicted"]
    lp = rows[0]["latency_pick"]
    if lp:
        assert lp["latency_ms"] == pytest.approx(float(load_predictor(out).predict([lp["key"]])[0]))
    html = write_report(comp, tmp_path / "rep").read_text()
    assert "predicted by the profile's transfer predictor" in html


@pytest.mark.slow  # the few-shot profile they share takes ~40 s to make: in CI's slow step
def test_search_accepts_a_fewshot_profile(fewshot):
    from hwnas.search import SearchConfig, run_search

    out, _ = fewshot
    pred = load_predictor(out)
    lat = pred.predict([Profile.load(out).table("arch")["key"].iloc[-1]])[0]
    r = run_search(SearchConfig(budgets_ms=(float(lat),), profiles=(str(out),), accuracy="params",
                                population=12, generations=4, seed=1))
    best = r.best[0]
    assert best.predicted_latency_ms <= lat * (1 + 1e-9)
    assert best.predicted_latency_ms == pytest.approx(pred.predict([str(best.arch)])[0])


@pytest.mark.slow  # 7-12 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_fewshot_interrupted_then_resumed(reference, tmp_path):
    """Ctrl-C after two measurements keeps them; --resume measures only the rest, then adapts."""
    from hwnas.profile.store import ProfileStore

    class Stop:
        def __init__(self, part, total, done):
            self.n = 0

        def advance(self, n=1):
            self.n += n
            if self.n == 2:
                raise KeyboardInterrupt

        def close(self):
            pass

    out = tmp_path / "few"
    dev = load_device("cpu-1t")
    with pytest.raises(KeyboardInterrupt):
        build_fewshot_profile(dev, out, reference, 5, config=QUICK, progress=Stop, zoo_shots=1)
    assert ProfileStore(out, readonly=True).row_counts()["measurements"] == 2
    assert not (out / "predictors" / "index.json").exists()
    with pytest.raises(ProfileError, match="same N"):
        build_fewshot_profile(dev, out, reference, 6, config=QUICK, resume=True, zoo_shots=1)
    with pytest.raises(ProfileError, match="--zoo-shots 1"):
        build_fewshot_profile(dev, out, reference, 5, config=QUICK, resume=True, zoo_shots=0)
    rep = build_fewshot_profile(dev, out, reference, 5, config=QUICK, resume=True, zoo_shots=1)
    assert (rep.done_before, rep.done_now) == (2, 4)
    assert read_index(out)["few_shot"]["n"] == 5


@pytest.mark.slow  # tens of seconds (CLI subprocesses): run by .ci/run's slow step
def test_evaluate_fewshot_against_full_profile(reference, tmp_path):
    """`hwnas evaluate` on a few-shot profile: judged on a full profile of the same device."""
    few = tmp_path / "few-cpu-1t"
    build_fewshot_profile(load_device("cpu-1t"), few, reference, 5, config=QUICK)
    cmd = [sys.executable, "-m", "hwnas", "evaluate", "--profile", str(few)]
    r = subprocess.run(cmd + ["--full-profile", str(reference), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    full = Profile.load(reference)
    seen = set(Profile.load(few).table("arch")["key"])
    assert res["n_test"] == len(set(full.table("arch")["key"]) - seen)
    for k in ("transfer", "reference_as_is"):
        assert res[k]["n"] == res["n_test"]
        hits = res[k]["within_10pct"] * res["n_test"]  # a share of the n_test judged architectures
        assert hits == pytest.approx(round(hits), abs=1e-9)
    assert res["full_profile_default"]["predictor"] == read_index(reference)["default"]["arch"]
    # no full profile beside it: says so, exit 0
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and "no full profile of this device found" in r.stderr
    # a full profile of another device is refused
    r = subprocess.run(cmd + ["--full-profile", str(PROFILES_DIR / "cpu-2t")], capture_output=True, text=True)
    assert r.returncode == 2 and "cpu-2t" in r.stderr and "Traceback" not in r.stderr
    # a full profile measured on another machine: judged all the same, with a one-line warning (issue 13)
    other = tmp_path / "other-machine"
    shutil.copytree(reference, other)
    with ProfileStore(other) as s:
        s.set_meta("fingerprint", dict(s.get_meta("fingerprint"), cpu_model="Some Other CPU"))
    r = subprocess.run(cmd + ["--full-profile", str(other), "--json"], capture_output=True, text=True,
                       env=dict(os.environ, COLUMNS="200"))
    assert r.returncode == 0 and json.loads(r.stdout)["n_test"] == res["n_test"]
    warned = [ln for ln in r.stderr.splitlines() if "another machine" in ln]
    assert len(warned) == 1 and "Some Other CPU" in warned[0] and str(few) in warned[0], r.stderr


def test_kernel_class_transfer_recovers_per_class_scales():
    """Dense convolutions 2x faster, depthwise 1.2x slower, the rest unchanged: the per-class
    scales come back from 40 models; a class no model holds (grouped) stays at the classes'
    mean; one measurement 60% off moves nothing much (Huber); the fit round-trips."""
    from hwnas.predictors.transfer_onnx import CLASSES, KernelClassTransfer

    rng = np.random.default_rng(0)
    T = rng.uniform(0.0, 1.0, (40, len(CLASSES)))
    T[:, CLASSES.index("gconv")] = 0.0
    true = np.log(np.array([0.5, 1.0, 1.2, 1.0, 0.8, 1.0]))
    calib = (0.05, 1.0)
    y = np.exp(calib[0]) * (T @ np.exp(true)) * np.exp(0.005 * rng.standard_normal(40))
    t = KernelClassTransfer().fit(T, y, calib)
    for c in ("conv", "pwconv", "dwconv", "gemm"):
        i = CLASSES.index(c)
        assert abs(t.log_scale_[i] - true[i]) < 0.05, c
    g = CLASSES.index("gconv")
    others = np.delete(t.log_scale_, g)
    assert abs(t.log_scale_[g] - others.mean()) < 0.05
    assert np.median(np.abs(t.predict(T, calib) / y - 1)) < 0.01
    # one noisy run 60% slow: the Huber weights keep the scales
    y2 = y.copy()
    y2[3] *= 1.6
    t2 = KernelClassTransfer().fit(T, y2, calib)
    assert np.max(np.abs(np.delete(t2.log_scale_, g) - np.delete(t.log_scale_, g))) < 0.03
    assert t2.weights_[3] < 0.5
    back = KernelClassTransfer.from_dict(json.loads(json.dumps(t.to_dict())))
    assert np.array_equal(back.predict(T, calib), t.predict(T, calib))
    with pytest.raises(ValueError, match="classes"):
        KernelClassTransfer.from_dict(dict(t.to_dict(), classes=["conv"]))


@pytest.mark.slow  # the few-shot profile they share takes ~40 s to make: in CI's slow step
def test_old_fewshot_predictor_files_keep_the_power_law(fewshot):
    """A transfer saved before the per-class ONNX transfer (no ``onnx_classes``) loads and maps
    ONNX models with its power law, as it did."""
    out, _ = fewshot
    pred = load_predictor(out)
    d = pred.to_dict()
    d.pop("onnx_classes")
    d.pop("n_onnx_models")
    old = TransferPredictor.from_dict(d)
    assert old.onnx_classes_ is None
    from hwnas.zoo import zoo_models

    m = zoo_models(1)[0].build()
    a, b = old.onnx_coef_
    base = old.reference_onnx_.predict_relative([m])
    assert np.allclose(old.predict_relative([m]), np.exp(a) * base**b)
    if pred.onnx_classes_ is not None:
        assert not np.allclose(pred.predict_relative([m]), old.predict_relative([m]), rtol=1e-6)
