"""Accuracy estimation: supernet weight sharing, training and resume, datasets, predictor, proxy,
estimators, CLI.  Real torch on tiny data (a 16x16 subset of the offline digits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwnas.accuracy import ESTIMATORS, NotTrainedError, make_estimator
from hwnas.accuracy.data import ImageDataset, input_size, load_dataset, load_digits_dataset
from hwnas.accuracy.estimators import MacsEstimator, NaswotEstimator, ParamsEstimator, SupernetEstimator
from hwnas.accuracy.predictor import supernet_pairs
from hwnas.accuracy.proxy import naswot_score
from hwnas.accuracy.supernet import (CHECKPOINT, META, DynamicBlock, Supernet, TrainConfig, evaluate_archs,
                                     extract_subnet, load_supernet, recalibrate_bn, train_supernet)
from hwnas.builders.torch_model import build_torch
from hwnas.cost import arch_cost
from hwnas.errors import InputError
from hwnas.space import DEFAULT_SPACE, SearchSpace

# elastic in everything the space has (resolution, width, depth, kernel, expand), just fewer choices
TINY = SearchSpace(resolutions=(128, 224), width_mults=(1.0, 1.2), depths=(1, 2), kernels=(3, 5), expands=(3, 4))
TINY_CFG = dict(batch_size=16, calib_batches=1, calib_batch_size=16, n_random=1, warmup_epochs=0.0, val_fraction=0.2)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


@pytest.fixture(scope="module")
def tiny_data(digits):
    """60 digits (6 per class), downsized to 16x16."""
    idx = np.concatenate([np.flatnonzero(digits.labels == c)[:6] for c in range(10)])
    x = torch.from_numpy(digits.images[idx]).float()
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return ImageDataset(x.numpy(), digits.labels[idx], digits.classes, "tiny-digits")


def _npz(path, data: ImageDataset):
    np.savez(path, images=data.images.transpose(0, 2, 3, 1), labels=data.labels)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data):
    """A tiny supernet trained 2 epochs (from an .npz, so estimators can find the data again).
    On one torch thread: a module fixture is set up before the function-scoped ``_one_thread``,
    and two threads stall whenever another process holds a core (7 s a step instead of 0.3 s)."""
    d = tmp_path_factory.mktemp("acc")
    npz = _npz(d / "tiny.npz", tiny_data)
    out = d / "sn"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = train_supernet(str(npz), out, TrainConfig(epochs=2, **TINY_CFG), space=TINY)
    finally:
        torch.set_num_threads(n)
    return out, npz, r


def _randomize_bn(net: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


# --------------------------------------------------------------------------------------------
# weight sharing


def test_subnet_weights_reproduce_supernet_in_standalone_model():
    torch.manual_seed(0)
    net = Supernet(DEFAULT_SPACE, n_classes=10)
    _randomize_bn(net)
    with torch.no_grad():  # non-identity kernel transformation matrices
        for stage in net.stages:
            for b in stage:
                for p in b.ktrans.values():
                    p.add_(0.05 * torch.randn_like(p))
    net.eval()
    rng = np.random.default_rng(0)
    archs = [DEFAULT_SPACE.largest(), DEFAULT_SPACE.smallest()] + [DEFAULT_SPACE.sample(rng) for _ in range(3)]
    outs = []
    for a, side in zip(archs, (32, 20, 24, 28, 32)):
        x = torch.randn(2, 3, side, side)
        sd = net.subnet_state_dict(a)
        model = build_torch(a, 10)
        assert list(sd) == list(model.state_dict())  # exactly the standalone layout
        model.load_state_dict(sd, strict=True)
        with torch.no_grad():
            y_net, y_alone = net(x, a), model.eval()(x)
        assert torch.allclose(y_net, y_alone, rtol=1e-4, atol=1e-5), (str(a), (y_net - y_alone).abs().max())
        outs.append(y_alone)
    assert not torch.allclose(outs[0], outs[2][:, :], atol=1e-3)  # different subnets, different functions


def test_batch_statistics_forward_matches_standalone_train_mode():
    torch.manual_seed(1)
    net = Supernet(TINY, n_classes=10).train()
    a = TINY.sample(np.random.default_rng(3))
    x = torch.randn(8, 3, 16, 16)
    model = extract_subnet(net, a).train()
    with torch.no_grad():
        assert torch.allclose(net(x, a), model(x), rtol=1e-4, atol=1e-5)


def test_elastic_kernel_is_centre_crop_then_transformation_matrices():
    torch.manual_seed(0)
    b = DynamicBlock(8, 8, 16, 8, (3, 5, 7), 1, has_expand=True, se=False)
    W = b.dw.conv.weight.detach()
    # identity matrices (the initial state): plain centre crops of the 7x7 kernel
    assert torch.equal(b.dw_weight(7, 16, "transform"), W)
    assert torch.equal(b.dw_weight(5, 16, "transform"), W[:, :, 1:6, 1:6])
    assert torch.equal(b.dw_weight(3, 12, "transform"), W[:12, :, 2:5, 2:5])
    with torch.no_grad():
        b.ktrans["7to5"].copy_(torch.randn(25, 25))
        b.ktrans["5to3"].copy_(torch.randn(9, 9))
    w5 = (W[:, :, 1:6, 1:6].reshape(-1, 25) @ b.ktrans["7to5"].detach().T).reshape(16, 1, 5, 5)
    w3 = (w5[:, :, 1:4, 1:4].reshape(-1, 9) @ b.ktrans["5to3"].detach().T).reshape(16, 1, 3, 3)
    assert torch.allclose(b.dw_weight(5, 16, "transform"), w5, atol=1e-5)
    assert torch.allclose(b.dw_weight(3, 16, "transform"), w3, atol=1e-5)
    # crop mode ignores the matrices
    assert torch.equal(b.dw_weight(3, 16, "crop"), W[:, :, 2:5, 2:5])
    with pytest.raises(ValueError):
        b.dw_weight(9, 16, "crop")


@pytest.mark.parametrize("side,stride", [(1, 1), (2, 1), (2, 2), (3, 2), (5, 1)])
def test_small_feature_map_kernel_cropping_is_exact(side, stride):
    torch.manual_seed(side)
    b = DynamicBlock(8, 8, 16, 8, (3, 5, 7), stride, has_expand=True, se=True)
    _randomize_bn(b)
    b.eval()
    from hwnas.layers import BlockSpec

    from hwnas.builders.torch_model import MBConvBlock

    spec = BlockSpec(side, 8, 8, 7, 2, stride, "hswish", True)
    x = torch.randn(2, 8, side, side)

    ref = MBConvBlock(spec)
    sd = {}
    b.state_for(spec, "", "transform", sd)
    ref.load_state_dict(sd)
    with torch.no_grad():
        assert torch.allclose(b(x, spec, "transform", False), ref.eval()(x), atol=1e-5)


def test_sort_channels_keeps_largest_and_orders_by_importance():
    torch.manual_seed(0)
    net = Supernet(TINY, n_classes=10)
    _randomize_bn(net)
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    big, small = TINY.largest(), TINY.smallest()
    with torch.no_grad():
        before_big, before_small = net(x, big), net(x, small)
        net.sort_channels()
        after_big, after_small = net(x, big), net(x, small)
    assert torch.allclose(before_big, after_big, atol=1e-5)
    assert not torch.allclose(before_small, after_small, atol=1e-4)
    for stage in net.stages:
        for b in stage:
            imp = b.project.conv.weight.abs().sum(dim=(0, 2, 3))
            assert torch.all(imp[:-1] >= imp[1:])


def test_bn_recalibration_sets_running_stats_from_batches():
    torch.manual_seed(0)
    model = build_torch(TINY.smallest(), 10)
    xs = [torch.randn(16, 3, 16, 16) * 3 + 1 for _ in range(2)]
    recalibrate_bn(model, xs)
    assert not model.training
    bn = model.stem.bn
    with torch.no_grad():
        h = torch.cat([model.stem.conv(x) for x in xs])
    assert torch.allclose(bn.running_mean, h.mean((0, 2, 3)), atol=1e-4)
    assert bn.momentum == 0.1  # restored


# --------------------------------------------------------------------------------------------
# training, checkpoints, resume


@pytest.mark.slow  # 4-7 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_sandwich_training_changes_shared_weights(tmp_path, tiny_data):
    torch.manual_seed(0)
    init = Supernet(TINY, n_classes=10).state_dict()
    train_supernet(tiny_data, tmp_path / "sn", TrainConfig(epochs=1, **TINY_CFG), space=TINY)
    blob = torch.load(tmp_path / "sn" / CHECKPOINT, weights_only=True)
    sd = blob["model"]
    for k in ("stem.conv.weight", "stages.0.0.expand.conv.weight", "stages.4.1.dw.conv.weight",
              "stages.0.0.ktrans.5to3", "head.classifier.weight"):
        assert not torch.equal(sd[k], init[k]), k
    meta = json.loads((tmp_path / "sn" / META).read_text())
    assert meta["epochs_done"] == 1 and meta["space"] == TINY.to_dict() and meta["n_classes"] == 10
    assert meta["input_sizes"] == {"128": [8, 8], "224": [16, 16]}


def _state(d):
    return torch.load(Path(d) / CHECKPOINT, weights_only=True)


@pytest.mark.slow  # 7-12 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_resume_continues_to_identical_state(tmp_path, tiny_data):
    cfg2 = TrainConfig(epochs=2, **TINY_CFG)
    train_supernet(tiny_data, tmp_path / "straight", cfg2, space=TINY)
    # a time budget of 0 stops after one step: stop mid-epoch, resume, stop at the epoch boundary, resume
    r = train_supernet(tiny_data, tmp_path / "cut", cfg2, space=TINY, time_budget_s=0.0)
    assert r.stopped_by_budget and (r.epochs_done, r.step_in_epoch) == (0, 1)
    assert _state(tmp_path / "cut")["step_in_epoch"] == 1
    r = train_supernet(tiny_data, tmp_path / "cut", cfg2, space=TINY, resume=True, time_budget_s=0.0)
    assert (r.epochs_done, r.step_in_epoch) == (0, 2)
    r = train_supernet(tiny_data, tmp_path / "cut", cfg2, space=TINY, resume=True, time_budget_s=0.0)
    assert (r.epochs_done, r.step_in_epoch, r.stopped_by_budget) == (1, 0, True)
    r = train_supernet(tiny_data, tmp_path / "cut", cfg2, space=TINY, resume=True)
    assert (r.epochs_done, r.stopped_by_budget) == (2, False)
    assert [h["epoch"] for h in json.loads((tmp_path / "cut" / META).read_text())["history"]] == [1, 2]
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "cut")
    assert b["epoch"] == 2 and json.loads((tmp_path / "cut" / META).read_text())["epochs_done"] == 2
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # nothing left to do: a further resume is a no-op
    assert train_supernet(tiny_data, tmp_path / "cut", cfg2, space=TINY, resume=True).epochs_done == 2


def test_training_refuses_to_overwrite_and_resume_checks(tmp_path, tiny_data, trained):
    out, npz, _ = trained
    with pytest.raises(InputError, match="already holds a supernet.*--resume"):
        train_supernet(str(npz), out, TrainConfig(epochs=3, **TINY_CFG), space=TINY)
    with pytest.raises(InputError, match="another width"):
        train_supernet(str(npz), out, TrainConfig(epochs=3, **TINY_CFG),
                       space=SearchSpace(**{**TINY.to_dict(), "width_mults": (1.0,)}), resume=True)
    with pytest.raises(InputError, match="another search space"):
        train_supernet(str(npz), out, TrainConfig(epochs=3, **TINY_CFG), space=DEFAULT_SPACE, resume=True)
    with pytest.raises(InputError, match="another dataset"):
        train_supernet(load_digits_dataset(), out, TrainConfig(epochs=3, **TINY_CFG), space=TINY, resume=True)
    with pytest.raises(InputError, match="batch_size"):
        train_supernet(str(npz), out, TrainConfig(epochs=3, **{**TINY_CFG, "batch_size": 8}), space=TINY, resume=True)
    with pytest.raises(InputError, match="no supernet"):
        train_supernet(str(npz), tmp_path / "empty", TrainConfig(epochs=1, **TINY_CFG), space=TINY, resume=True)


def test_load_checks_space_width_and_corruption(tmp_path, trained):
    out, npz, _ = trained
    narrow = SearchSpace(**{**TINY.to_dict(), "width_mults": (1.0,)})
    assert load_supernet(out, narrow).net.space == TINY  # a sub-space of the checkpoint's is fine
    with pytest.raises(InputError, match="another search space"):
        load_supernet(out, DEFAULT_SPACE)
    bad = tmp_path / "bad"
    bad.mkdir()
    meta = json.loads((out / META).read_text())
    (bad / META).write_text(json.dumps({**meta, "space": narrow.to_dict()}))
    with pytest.raises(InputError, match="another width multipliers"):
        load_supernet(bad, TINY)
    (bad / META).write_text((out / META).read_text())
    (bad / CHECKPOINT).write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="corrupt"):
        load_supernet(bad, TINY)
    # a checkpoint of another width under this directory's metadata
    torch.save({"format": "hwnas-supernet", "version": 1, "epoch": 2, "step_in_epoch": 0,
                "model": Supernet(narrow, 10).state_dict(), "optimizer": {},
                "meta": json.dumps({"epochs_done": 2})}, bad / CHECKPOINT)
    with pytest.raises(InputError, match="shape .* another space or width"):
        load_supernet(bad, TINY)


def test_inherited_accuracy_and_pairs_cache(trained, monkeypatch):
    out, npz, _ = trained
    ls = load_supernet(out, TINY)
    archs = TINY.sample_many(3, seed=0)
    acc = evaluate_archs(ls, archs)
    again, items = evaluate_archs(ls, archs, return_items=True)
    assert np.array_equal(again, acc)  # deterministic recalibration and evaluation
    # top-1 % over the validation split: the share of its images each subnet gets right
    assert items.shape == (3, len(ls.val_idx)) and len(ls.val_idx) > 0
    assert np.array_equal(acc, 100.0 * items.sum(axis=1) / len(ls.val_idx))
    est = SupernetEstimator(TINY, accuracy_dir=out)
    assert "top-1" in est.meaning and "tiny.npz" in est.meaning
    assert np.array_equal(est.estimate([str(a) for a in archs]), acc)
    assert est.cache_size == 3
    a1, y1 = supernet_pairs(out, 4, seed=0, space=TINY, loaded=ls)
    assert [str(a) for a in a1[:3]] == [str(a) for a in archs] and np.allclose(y1[:3], acc, atol=1e-3)
    calls = []
    import hwnas.accuracy.supernet as sn

    monkeypatch.setattr(sn, "evaluate_archs", lambda *a, **k: calls.append(1) or np.zeros(1))
    a2, y2 = supernet_pairs(out, 4, seed=0, space=TINY, loaded=ls)  # all cached in pairs.csv
    assert not calls and np.array_equal(y1, y2)


# --------------------------------------------------------------------------------------------
# data


def test_offline_digits_dataset(digits):
    assert digits.images.shape == (1797, 3, 32, 32) and digits.n_classes == 10
    assert digits.source == "builtin:digits" and len(digits.fingerprint) == 16
    tr, va = digits.split(0.2, 0)
    assert len(va) == pytest.approx(360, abs=5) and not set(tr) & set(va) and len(tr) + len(va) == 1797
    assert np.array_equal(digits.split(0.2, 0)[1], va)
    assert [input_size(r, (32, 32), 224) for r in (128, 160, 192, 224)] == [(20, 20), (24, 24), (28, 28), (32, 32)]


def test_npz_and_folder_roundtrip(tmp_path, tiny_data):
    from PIL import Image

    d = load_dataset(_npz(tmp_path / "d.npz", tiny_data))
    assert np.array_equal(d.images, tiny_data.images) and np.array_equal(d.labels, tiny_data.labels)
    root = tmp_path / "folder"
    for i in range(12):
        c = root / f"class{i % 3}"
        c.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tiny_data.images[i, 0]).save(c / f"{i}.png")
    (root / "class0" / "notes.txt").write_text("ignored")
    f = load_dataset(root)
    assert f.images.shape == (12, 3, 16, 16) and f.classes == ["class0", "class1", "class2"]


def _png(path, size=(8, 8), mode="L"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)


@pytest.mark.parametrize("case,msg", [
    ("missing", "dataset not found"),
    ("corrupt_npz", "corrupt"),
    ("npz_keys", "must hold arrays 'images' and 'labels'"),
    ("npz_mixed_sizes", "mixed sizes"),
    ("npz_single_class", "single class"),
    ("npz_label_count", "one per image"),
    ("folder_mixed_sizes", "mixed sizes"),
    ("folder_mixed_channels", "mixed channels"),
    ("folder_empty_class", "has no images"),
    ("folder_single_class", "single class"),
    ("folder_corrupt_image", "corrupt or not an image"),
    ("folder_no_classes", "no class folders"),
    ("unknown_builtin", "unknown built-in dataset"),
])
def test_bad_datasets_give_one_line_input_errors(tmp_path, case, msg):
    p = tmp_path / "data"
    if case == "missing":
        p = tmp_path / "nope"
    elif case == "corrupt_npz":
        p = tmp_path / "d.npz"
        p.write_bytes(b"PK\x03\x04 garbage that is not a zip archive")
    elif case == "npz_keys":
        p = tmp_path / "d.npz"
        np.savez(p, x=np.zeros((4, 8, 8)), y=np.zeros(4))
    elif case == "npz_mixed_sizes":
        p = tmp_path / "d.npz"
        imgs = np.empty(2, dtype=object)
        imgs[0], imgs[1] = np.zeros((8, 8)), np.zeros((9, 9))
        np.savez(p, images=imgs, labels=np.array([0, 1]))
    elif case == "npz_single_class":
        p = tmp_path / "d.npz"
        np.savez(p, images=np.zeros((4, 8, 8), np.uint8), labels=np.zeros(4, int))
    elif case == "npz_label_count":
        p = tmp_path / "d.npz"
        np.savez(p, images=np.zeros((4, 8, 8), np.uint8), labels=np.zeros(3, int))
    elif case == "folder_mixed_sizes":
        _png(p / "a" / "1.png")
        _png(p / "b" / "2.png", size=(9, 8))
    elif case == "folder_mixed_channels":
        _png(p / "a" / "1.png")
        _png(p / "b" / "2.png", mode="RGB")
    elif case == "folder_empty_class":
        _png(p / "a" / "1.png")
        (p / "b").mkdir(parents=True)
    elif case == "folder_single_class":
        _png(p / "a" / "1.png")
    elif case == "folder_corrupt_image":
        _png(p / "a" / "1.png")
        (p / "b").mkdir(parents=True)
        (p / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    elif case == "folder_no_classes":
        _png(p / "1.png")
    elif case == "unknown_builtin":
        p = "builtin:cifar"
    with pytest.raises(InputError, match=msg) as ei:
        load_dataset(p)
    assert "\n" not in str(ei.value)


# --------------------------------------------------------------------------------------------
# predictor, proxy, estimators


def test_naswot_is_deterministic_and_cached(tiny_data):
    est = NaswotEstimator(TINY, data=tiny_data, n_images=16)
    archs = TINY.sample_many(3, seed=2)
    state = torch.random.get_rng_state()
    s1 = est.estimate(archs)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert est.cache_size == 3 and np.all(np.isfinite(s1)) and len(set(s1.tolist())) == 3
    s2 = NaswotEstimator(TINY, data=tiny_data, n_images=16).estimate(archs[::-1])
    assert np.array_equal(s1, s2[::-1])
    x = torch.randn(8, 3, 16, 16)
    assert naswot_score(archs[0], x) == naswot_score(archs[0], x)
    # cached: the same architecture is not scored again
    import hwnas.accuracy.proxy as proxy

    orig = proxy.naswot_score
    proxy.naswot_score = lambda *a, **k: pytest.fail("scored again")
    try:
        assert np.array_equal(est.estimate([str(archs[1])]), s1[1:2])
    finally:
        proxy.naswot_score = orig


def test_baseline_estimators_and_registry(tmp_path):
    a = DEFAULT_SPACE.sample_many(2, seed=0)
    assert list(ParamsEstimator().estimate(a)) == [arch_cost(x).params for x in a]
    assert list(MacsEstimator().estimate(a)) == [arch_cost(x).macs for x in a]
    assert set(ESTIMATORS) == {"predictor", "supernet", "hypernet", "naswot", "params", "macs"}
    for name in ESTIMATORS:
        assert name in str(pytest.raises(InputError, make_estimator, "nope").value)
    with pytest.raises(NotTrainedError, match="hwnas supernet fit-predictor"):
        make_estimator("predictor", tmp_path)
    with pytest.raises(NotTrainedError, match="hwnas supernet train --data builtin:digits"):
        make_estimator("supernet", tmp_path)
    with pytest.raises(InputError, match="bad token 'k3x3'"):
        ParamsEstimator().estimate(["r224_w1.0_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3x3"])
    with pytest.raises(InputError, match="outside the space"):
        ParamsEstimator().estimate(["r100_w1.0_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3_k3e3-k3e3"])


# --------------------------------------------------------------------------------------------
# CLI


ARCH = "r160_w1.0_k3e3-k5e4_k3e3-k3e3_k7e6-k3e3_k3e3-k3e3_k3e3-k5e6"


def _cli(*args):
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "hwnas.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)


def _run_main(monkeypatch, capsys, *args):
    from hwnas import cli

    monkeypatch.setattr(sys, "argv", ["hwnas", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    c = capsys.readouterr()
    return e.value.code, c.out, c.err


@pytest.mark.slow  # 4-7 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_cli_errors_exit_2_without_traceback(tmp_path):
    r = _cli("accuracy", ARCH, "--estimator", "supernet", "--accuracy-dir", tmp_path)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
    assert "hwnas supernet train" in r.stderr
    r = _cli("supernet", "train", "--data", tmp_path / "missing", "--out", tmp_path / "o")
    assert r.returncode == 2 and "dataset not found" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args,msg", [
    (["accuracy", ARCH, "--estimator", "nope"], "unknown accuracy estimator"),
    (["accuracy", ARCH, "--estimator", "predictor", "--accuracy-dir", "{tmp}"], "hwnas supernet fit-predictor"),
    (["accuracy", "r224_bad"], "expected 7"),
    (["supernet", "train", "--data", "{tmp}/d.npz", "--out", "{tmp}/o"], "corrupt"),
    (["supernet", "fit-predictor", "--dir", "{tmp}"], "no supernet"),
    (["supernet", "fit-predictor", "--dir", "{tmp}", "--csv", "{tmp}/none.csv"], "pairs file not found"),
])
def test_cli_bad_input(monkeypatch, capsys, tmp_path, args, msg):
    (tmp_path / "d.npz").write_bytes(b"garbage")
    code, _, err = _run_main(monkeypatch, capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and "error:" in err and msg in err


def test_cli_accuracy_json_and_table(monkeypatch, capsys):
    code, out, err = _run_main(monkeypatch, capsys, "accuracy", ARCH, DEFAULT_SPACE.smallest(), "--estimator",
                               "params", "--json")
    assert code in (0, None)
    rows = json.loads(out)
    assert [r["arch"] for r in rows] == [ARCH, str(DEFAULT_SPACE.smallest())]
    assert rows[0]["value"] == arch_cost(DEFAULT_SPACE.parse(ARCH)).params and rows[0]["estimator"] == "params"


@pytest.mark.slow  # CLI subprocesses, ~9 s: run by .ci/run's slow step
def test_cli_train_fit_predictor_and_estimate(monkeypatch, capsys, tmp_path, tiny_data):
    """The whole CLI path on a tiny dataset with the default space (2 steps of training)."""
    npz = _npz(tmp_path / "tiny.npz", tiny_data)
    out = tmp_path / "acc"
    code, _, err = _run_main(monkeypatch, capsys, "supernet", "train", "--data", npz, "--out", out, "--epochs", "1",
                             "--batch-size", "24", "--threads", "1")
    assert code in (0, None), err
    assert "1/1 epochs" in err and (out / CHECKPOINT).is_file()
    # --resume without --epochs continues to the checkpoint's own total: nothing left to do
    code, _, err = _run_main(monkeypatch, capsys, "supernet", "train", "--data", npz, "--out", out, "--resume",
                             "--batch-size", "24", "--threads", "1")
    assert code in (0, None) and "1/1 epochs" in err, err
    # pairs from a CSV (measuring hundreds of subnets is the benchmark's job)
    archs = DEFAULT_SPACE.sample_many(40, seed=0)
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("arch,accuracy\n" + "".join(f"{a},{np.log10(arch_cost(a).macs):.4f}\n" for a in archs))
    code, _, err = _run_main(monkeypatch, capsys, "supernet", "fit-predictor", "--dir", out, "--csv", csv_path)
    assert code in (0, None), err
    assert "Spearman" in err and (out / "predictor.json").is_file()
    code, o, err = _run_main(monkeypatch, capsys, "accuracy", ARCH, "--accuracy-dir", out, "--json")
    assert code in (0, None) and json.loads(o)[0]["estimator"] == "predictor"
    code, o, err = _run_main(monkeypatch, capsys, "accuracy", ARCH, "--estimator", "supernet", "--accuracy-dir", out,
                             "--json")
    assert code in (0, None), err
    v = json.loads(o)[0]
    assert "inherited" in v["meaning"]
    assert v["value"] == SupernetEstimator(DEFAULT_SPACE, accuracy_dir=out).estimate([ARCH])[0]


# --------------------------------------------------------------------------------------------
# the winner as a model (supernet extract)


def test_extract_saves_weights_metadata_and_matching_onnx(trained, tmp_path):
    import onnxruntime as ort

    from hwnas.accuracy.supernet.extract import MODEL_JSON, MODEL_ONNX, MODEL_PT, extract_model, load_extracted

    out, npz, _ = trained
    arch = TINY.sample(np.random.default_rng(5))
    r = extract_model(out, arch, tmp_path / "m")
    ls = load_supernet(out, TINY)
    assert r.inherited_accuracy_pct == evaluate_archs(ls, [arch])[0] and r.finetuned_accuracy_pct is None
    assert r.onnx_max_abs_diff <= 1e-4 and r.val_images == len(ls.val_idx)
    blob = torch.load(tmp_path / "m" / MODEL_PT, weights_only=True)  # weights-only: no pickle of objects
    meta = json.loads((tmp_path / "m" / MODEL_JSON).read_text())
    assert blob["arch"] == str(arch) == meta["arch"] and meta["accuracy"]["inherited_top1_pct"] == r.accuracy_pct
    model, meta2 = load_extracted(tmp_path / "m")
    assert meta2 == meta and meta["dataset"]["fingerprint"] == ls.meta["dataset"]["fingerprint"]
    # the ONNX graph agrees with the saved torch model on other images (training ones), another batch size
    x = ls.batches.resize(ls.batches.tensor(ls.train_idx[:3]), (meta["input"]["height"], meta["input"]["width"]))
    x = x.contiguous()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    got = ort.InferenceSession(str(tmp_path / "m" / MODEL_ONNX), so).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(got - ref).max() <= 1e-4 and np.abs(ref).max() > 1e-2


@pytest.mark.parametrize("case,msg", [
    ("outside", "outside the supernet's space"),
    ("missing", "no supernet in"),
    ("corrupt", "corrupt or not a weights-only checkpoint"),
    ("other_width", "another space or width"),
    ("bad_arch", "bad architecture"),
    ("search_without_supernet", "no supernet in"),
])
def test_extract_bad_input_is_a_one_line_error(monkeypatch, capsys, tmp_path, trained, case, msg):
    import shutil

    out, _, _ = trained
    d = tmp_path / "sn"
    shutil.copytree(out, d)
    arch = str(TINY.smallest())
    if case == "outside":
        arch = ARCH  # depth 2 and kernel 7 are not in TINY
    elif case == "missing":
        d = tmp_path / "nothing"
    elif case == "corrupt":
        (d / CHECKPOINT).write_bytes(b"not a checkpoint")
    elif case == "other_width":  # metadata says one width, the tensors were made for two
        meta = json.loads((d / META).read_text())
        meta["space"]["width_mults"] = [1.0]
        (d / META).write_text(json.dumps(meta))
    elif case == "bad_arch":
        arch = "r128_w1.0_k3x3"
    args = ["supernet", "extract", arch, "--dir", d, "--out", tmp_path / "m"]
    if case == "search_without_supernet":
        args = ["search", "--budget-ms", "5", "--no-calibrate", "--accuracy-dir", tmp_path / "none",
                "--extract", tmp_path / "m"]
    code, _, err = _run_main(monkeypatch, capsys, *args)
    assert code == 2 and err.startswith("error:") and msg in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m" / "model.pt").exists()


@pytest.mark.slow
def test_cli_extract_finetune_measure_and_search_extract(monkeypatch, capsys, tmp_path, tiny_data):
    """Default space: a 1-epoch supernet, `supernet extract --finetune-epochs 1 --measure`, and
    `search --accuracy supernet --extract` (the winner extracted)."""
    from hwnas.accuracy.supernet.extract import load_extracted

    npz = _npz(tmp_path / "tiny.npz", tiny_data)
    sn = tmp_path / "sn"
    code, _, err = _run_main(monkeypatch, capsys, "supernet", "train", "--data", npz, "--out", sn, "--epochs", "1",
                             "--batch-size", "24", "--threads", "1")
    assert code in (0, None), err
    code, o, err = _run_main(monkeypatch, capsys, "supernet", "extract", ARCH, "--dir", sn, "--out", tmp_path / "m",
                             "--finetune-epochs", "1", "--measure", "--device", "cpu-1t", "--json")
    assert code in (0, None), err
    res = json.loads(o)
    assert res["finetuned_accuracy_pct"] is not None and "after 1 fine-tuning epoch" in err
    assert res["measured"]["latency_ms"] > 0 and res["measured"]["input_shape"][2:] == [160, 160]
    model, meta = load_extracted(tmp_path / "m")
    inherited = extract_subnet(load_supernet(sn).net, DEFAULT_SPACE.parse(ARCH))
    assert not torch.equal(model.state_dict()["head.weight" if "head.weight" in model.state_dict() else
                                              list(model.state_dict())[-1]],
                           inherited.state_dict()[list(inherited.state_dict())[-1]])  # fine-tuning moved the weights
    assert meta["finetune"]["epochs"] == 1
    code, o, err = _run_main(monkeypatch, capsys, "search", "--budget-ms", "1000", "--no-calibrate", "--strategy",
                             "random", "--n-samples", "4", "--accuracy", "supernet", "--accuracy-dir", sn,
                             "--extract", tmp_path / "w", "--json")
    assert code in (0, None), err
    winner = json.loads(o)[0]["arch"]
    assert load_extracted(tmp_path / "w")[1]["arch"] == winner


def test_standalone_init_seed_leaves_torch_global_generator_alone(tiny_data):
    from hwnas.accuracy.supernet import train_standalone

    cfg = TrainConfig(epochs=1, **TINY_CFG)
    before = torch.random.get_rng_state()
    a = train_standalone(TINY.smallest(), tiny_data, cfg, TINY, init_seed=7)[0]
    assert torch.equal(torch.random.get_rng_state(), before)
    assert train_standalone(TINY.smallest(), tiny_data, cfg, TINY, init_seed=7)[0] == a  # seeded


def test_standalone_per_image_correctness_matches_its_accuracy(tiny_data):
    """The paired-comparison path returns the same training as :func:`train_standalone` (same
    seed: same accuracy) and per-image correctness over the validation split that adds up to it."""
    from hwnas.accuracy.supernet import train_standalone
    from hwnas.accuracy.supernet.standalone import train_standalone_correct

    cfg = TrainConfig(epochs=1, **TINY_CFG)
    acc, correct, _ = train_standalone_correct(TINY.largest(), tiny_data, cfg, TINY, init_seed=3)
    _, val_idx = tiny_data.split(cfg.val_fraction, cfg.seed)
    assert correct.dtype == bool and correct.shape == (len(val_idx),)
    assert acc == 100.0 * correct.sum() / len(correct)
    assert train_standalone(TINY.largest(), tiny_data, cfg, TINY, init_seed=3)[0] == acc
