"""The vit search space: grammar, sampling, variation, analytic costs, ONNX graphs, the registry,
the vit profile campaign and predictors, and the CLI's ``--space`` paths (in-process)."""

import json
import shutil
import sqlite3
import sys

import numpy as np
import onnxruntime as ort
import pytest

from hwnas.onnx_io import onnx_macs, onnx_params
from hwnas.paths import default_profile_dir, profiles_dir
from hwnas.spaces import check_space_name, parse_arch_in
from hwnas.spaces.vit import VitArch, VitLayer, VitSpace, vit_cost
from hwnas.spaces.vit_onnx import build_head, build_layer, build_stem, build_vit_onnx

ARCH = "vit_p16_r160_e192_h3m4-h4m3-h6m3-h3m4-h4m4"
VIT_PROFILE = profiles_dir() / "cpu-1t-vit"


def _run(m, feed_shape):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"input": np.random.default_rng(0).standard_normal(feed_shape).astype(np.float32)})[0]


# -- grammar -----------------------------------------------------------------------------------
def test_round_trip_and_fields():
    a = VitArch.parse(ARCH)
    assert str(a) == ARCH and VitArch.parse(str(a)) == a and hash(a) == hash(VitArch.parse(ARCH))
    assert (a.patch, a.resolution, a.embed, a.depth, a.tokens) == (16, 160, 192, 5, 101)
    assert a.layers[2] == VitLayer(6, 3)
    sp = VitSpace(seed=3)
    for x in sp.sample_many(50):
        assert VitArch.parse(str(x)) == x and sp.contains(x)


@pytest.mark.parametrize("bad, words", [
    ("", "empty"),
    ("r224_w1.0_k3e4", "not a vit architecture"),
    ("vit_p16_r160_e192", "5"),
    ("vit_q16_r160_e192_h3m4", "'q16'"),
    ("vit_p16_r160_e192_h3m4-h3x4", "'h3x4'"),
    ("vit_p16_r160_e192_h3m4-", "layer 2"),
    ("vit_p16_r150_e192_h3m4", "does not divide resolution"),
    ("vit_p16_r160_e192_h5m4", "do not divide embed"),
    ("vit_p16_r160_e192_h３m4", "'h３m4'"),
])
def test_bad_strings_one_line(bad, words):
    with pytest.raises(ValueError) as e:
        VitArch.parse(bad)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_space_membership_and_registry_errors():
    sp = VitSpace()
    with pytest.raises(ValueError, match="embed 256 is not in"):
        sp.parse("vit_p16_r160_e256_h4m4-h4m4-h4m4-h4m4-h4m4")
    with pytest.raises(ValueError, match="depth 2"):
        sp.parse("vit_p16_r160_e192_h3m4-h3m4")
    from hwnas.errors import InputError

    with pytest.raises(InputError, match="unknown search space 'cnn'"):
        check_space_name("cnn")
    with pytest.raises(InputError, match="pass --space vit"):
        parse_arch_in(ARCH, "mbv3")
    with pytest.raises(InputError, match="pass --space mbv3"):
        parse_arch_in("r160_w1.0_k3e3-k5e4_k3e3-k3e3_k7e6-k3e3_k3e3-k3e3_k3e3-k5e6", "vit")


def test_sampling_is_owned_and_seeded():
    a, b = VitSpace(seed=7), VitSpace(seed=7)
    assert [a.sample() for _ in range(5)] == [b.sample() for _ in range(5)]
    assert VitSpace(seed=1).sample_many(5) != VitSpace(seed=2).sample_many(5)
    sp = VitSpace()
    assert sp.to_dict() == VitSpace.from_dict(sp.to_dict()).to_dict()


def test_mutation_and_crossover_stay_in_space():
    sp = VitSpace(seed=0)
    rng = np.random.default_rng(0)
    parents = sp.sample_many(20, seed=5)
    changed = 0
    for p, q in zip(parents, parents[1:]):
        c = sp.mutate(p, rng, prob=0.5)
        x = sp.crossover(p, q, rng)
        assert sp.contains(c) and sp.contains(x)
        changed += c != p
        assert all(layer in p.layers + q.layers for layer in x.layers)
    assert changed >= 15


# -- costs and graphs --------------------------------------------------------------------------
def test_onnx_runs_and_macs_match_onnx_count():
    for a in (VitArch.parse(ARCH), VitSpace().smallest()):
        m = build_vit_onnx(a)
        y = _run(m, (1, 3, a.resolution, a.resolution))
        assert y.shape == (1, 1000) and np.isfinite(y).all()
        c = vit_cost(a)
        assert c.macs == onnx_macs(m)
        assert abs(c.params - onnx_params(m)) < 64  # scalars and shape constants only


def test_parts_shapes_and_macs_add_up():
    a = VitArch.parse(ARCH)
    stem, head = build_stem(16, 160, 192), build_head(a.tokens, 192)
    layers = [build_layer(a.tokens, 192, x.heads, x.mlp) for x in a.layers]
    assert _run(stem, (1, 3, 160, 160)).shape == (1, a.tokens, 192)
    assert _run(layers[0], (1, a.tokens, 192)).shape == (1, a.tokens, 192)
    assert _run(head, (1, a.tokens, 192)).shape == (1, 1000)
    assert sum(onnx_macs(m) for m in [stem, head, *layers]) == vit_cost(a).macs


def test_larger_choices_cost_more():
    small, big = VitArch.parse("vit_p16_r160_e192_h3m3"), VitArch.parse("vit_p16_r224_e240_h3m4")
    assert vit_cost(big).macs > 2 * vit_cost(small).macs and vit_cost(big).params > vit_cost(small).params


# -- profile campaign and predictors --------------------------------------------------------------
TINY = VitSpace(resolutions=(64,), embeds=(48,), heads=(3,), mlp_ratios=(2, 3), depths=(1, 2))


@pytest.fixture(scope="module")
def tiny_vit_profile(tmp_path_factory):
    from hwnas.devices import load_device
    from hwnas.measure import MeasureConfig
    from hwnas.spaces.vit_profile import VitProfilePlan, build_vit_profile

    d = tmp_path_factory.mktemp("vitprof") / "p"
    reports = build_vit_profile(load_device("cpu-1t"), d, VitProfilePlan(n_archs=6, time_budget_min=5), space=TINY,
                                config=MeasureConfig.quick())
    return d, reports


def test_tiny_profile_records_space_and_refuses_mbv3(tiny_vit_profile):
    from hwnas.errors import InputError
    from hwnas.profile import Profile
    from hwnas.spaces import profile_space_name

    d, reports = tiny_vit_profile
    assert [(r.part, r.planned, r.done_now) for r in reports] == [("block", 4, 4), ("arch", 6, 6)]
    assert profile_space_name(d) == "vit"
    p = Profile.load(d)
    assert p.meta["space"] == TINY.to_dict()
    with pytest.raises(InputError, match="pass --space vit"):
        p.space  # noqa: B018  (the mbv3 view of a vit profile)


def test_lut_predictor_sums_table_and_round_trips(tiny_vit_profile):
    from hwnas.profile import Profile
    from hwnas.spaces.vit_predictors import VitLutPredictor

    d, _ = tiny_vit_profile
    p = Profile.load(d)
    lut = VitLutPredictor().fit(p)
    blocks = dict(zip(p.table("block")["key"], p.table("block")["relative_to_canary"]))
    a = VitArch.parse("vit_p16_r64_e48_h3m2-h3m3")
    want = blocks["vit_stem_p16_r64_e48"] + blocks["vit_layer_t17_e48_h3_m2"] + blocks["vit_layer_t17_e48_h3_m3"] \
        + blocks["vit_head_t17_e48"]
    assert lut.lut_sum([a])[0] == pytest.approx(want)
    again = VitLutPredictor.from_dict(json.loads(json.dumps(lut.to_dict())))
    assert again.predict([a])[0] == pytest.approx(lut.predict([a])[0])
    assert lut.predict([a])[0] > 0 and not lut.interpolated_keys_


# -- CLI, in-process ----------------------------------------------------------------------------
def _cli(capsys, monkeypatch, *args):
    from hwnas.cli import main

    monkeypatch.setattr(sys, "argv", ["hwnas", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit) as e:
        main()
    o = capsys.readouterr()
    return (e.value.code or 0), o.out, o.err


def _user_error(res, *words):
    code, _, err = res
    assert code == 2, res
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1, err
    for w in words:
        assert w in err, err


def test_cli_space_sample_info_export(capsys, monkeypatch, tmp_path):
    code, out, _ = _cli(capsys, monkeypatch, "space", "sample", "--space", "vit", "--n", "4", "--seed", "2")
    lines = out.split()
    assert code == 0 and len(lines) == 4 and all(VitSpace().contains(VitArch.parse(s)) for s in lines)
    assert _cli(capsys, monkeypatch, "space", "sample", "--space", "vit", "--n", "4", "--seed", "2")[1] == out
    code, out, _ = _cli(capsys, monkeypatch, "space", "info", "--space", "vit", "--json", ARCH)
    assert code == 0 and json.loads(out)[0]["macs"] == vit_cost(VitArch.parse(ARCH)).macs
    f = tmp_path / "m.onnx"
    code, _, _ = _cli(capsys, monkeypatch, "export", ARCH, "--space", "vit", "--out", f)
    import onnx

    assert code == 0 and onnx_macs(onnx.load(str(f))) == vit_cost(VitArch.parse(ARCH)).macs


def test_cli_wrong_space_errors(capsys, monkeypatch, tmp_path):
    mb = "r160_w1.0_k3e3-k5e4_k3e3-k3e3_k7e6-k3e3_k3e3-k3e3_k3e3-k5e6"
    _user_error(_cli(capsys, monkeypatch, "space", "sample", "--space", "cnn"), "unknown search space 'cnn'")
    _user_error(_cli(capsys, monkeypatch, "space", "info", ARCH), "pass --space vit")
    _user_error(_cli(capsys, monkeypatch, "space", "info", "--space", "vit", mb), "pass --space mbv3")
    _user_error(_cli(capsys, monkeypatch, "export", ARCH, "--out", tmp_path / "x.onnx"), "pass --space vit")
    _user_error(_cli(capsys, monkeypatch, "space", "info", "--space", "vit", "vit_p16_r160_e192_h3m4-h3m4-h3m4-h3m4-h3m9"),
                "outside the vit space", "mlp ratio 9")
    _user_error(_cli(capsys, monkeypatch, "predict", "--space", "vit", "--profile", default_profile_dir(), ARCH),
                "'mbv3' search space", "pass --space mbv3")
    _user_error(_cli(capsys, monkeypatch, "profile", "--space", "vit", "--device", "cpu-1t", "--out", tmp_path / "p",
                     "--n-kernels", "3"), "--space vit does not use --n-kernels")
    assert not (tmp_path / "p").exists()


needs_profile = pytest.mark.skipif(not (VIT_PROFILE / "profile.sqlite").is_file(), reason="no bundled vit profile")


@pytest.fixture(scope="module")
def vit_profile_copy(tmp_path_factory):
    d = tmp_path_factory.mktemp("vitcopy") / "cpu-1t-vit"
    d.mkdir()
    src = sqlite3.connect(f"file:{VIT_PROFILE / 'profile.sqlite'}?mode=ro", uri=True)
    dst = sqlite3.connect(d / "profile.sqlite")
    src.backup(dst)
    src.close()
    dst.close()
    return d


@needs_profile
def test_cli_train_predict_search_compare(capsys, monkeypatch, vit_profile_copy):
    d = vit_profile_copy
    code, _, err = _cli(capsys, monkeypatch, "train", "--space", "vit", "--profile", d)
    assert code == 0 and "held-out check" in err
    assert (d / "predictors" / "vit" / "learned.json").is_file()
    from hwnas.profile import Profile
    from hwnas.spaces.vit_predictors import VitLearnedPredictor, load_vit_predictor

    probe = VitSpace(seed=9).sample_many(5)
    saved = load_vit_predictor(d, "learned")
    assert isinstance(saved, VitLearnedPredictor)
    assert saved.predict(probe) == pytest.approx(VitLearnedPredictor().fit(Profile.load(d)).predict(probe))
    big, small = "vit_p16_r224_e240_h6m4-h6m4-h6m4-h6m4-h6m4-h6m4-h6m4", "vit_p16_r160_e192_h3m3-h3m3-h3m3-h3m3-h3m3"
    code, out, _ = _cli(capsys, monkeypatch, "predict", "--space", "vit", "--profile", d, "--predictor", "lut",
                        "--json", big, small)
    rows = json.loads(out)
    assert code == 0 and rows[0]["latency_ms"] > 2 * rows[1]["latency_ms"] > 0
    code, out, err = _cli(capsys, monkeypatch, "search", "--space", "vit", "--profile", d, "--budget-ms", "20",
                          "--generations", "50", "--population", "20", "--json")
    res = json.loads(out)
    assert code == 0 and "NOT an accuracy signal" in err
    assert res[0]["predicted_latency_ms"] <= 20 and VitSpace().contains(VitArch.parse(res[0]["arch"]))
    code, out, _ = _cli(capsys, monkeypatch, "compare", "--space", "vit", "--profile", d, "--json")
    st = json.loads(out)
    assert code == 0 and st["n"] >= 20 and -1 <= st["macs"]["spearman"] <= 1
    assert set(st["heldout"]["predictors"]) == {"macs", "lut", "learned"}
    # the vit profile with the default space, and the mbv3 profile with --space vit: one-line errors
    _user_error(_cli(capsys, monkeypatch, "train", "--profile", d), "'vit' search space", "pass --space vit")
    _user_error(_cli(capsys, monkeypatch, "search", "--profile", d, "--budget-ms", "20"), "pass --space vit")
    _user_error(_cli(capsys, monkeypatch, "compare", "--profile", d), "pass --space vit")
    _user_error(_cli(capsys, monkeypatch, "evaluate", "--profile", d, "--no-families"), "pass --space vit")
    code, out, _ = _cli(capsys, monkeypatch, "evaluate", "--space", "vit", "--profile", d, "--json")
    assert code == 0 and json.loads(out)["in_space"]["n_test"] > 0
    _user_error(_cli(capsys, monkeypatch, "search", "--space", "vit", "--profile", d, "--budget-ms", "20",
                     "--strategy", "nsga2"), "--strategy evolution | random")
    _user_error(_cli(capsys, monkeypatch, "search", "--space", "vit", "--profile", d, "--budget-ms", "1"),
                "no architecture of the vit space")
