"""The graph hypernetwork (hwnas.accuracy.hypernet): generated shapes, gradients, learning,
checkpoints, resume and bad input.  Tiny synthetic data; one torch thread."""

import sys

import numpy as np
import pytest
import torch

from hwnas.accuracy.data import ImageDataset
from hwnas.accuracy.hypernet import (GENERATED, HyperNet, HyperTrainConfig, evaluate_generated, hyper_step,
                                     load_hypernet, train_hypernet)
from hwnas.accuracy.hypernet.checkpoint import checkpoint_paths
from hwnas.accuracy.hypernet.training import make_optimizer
from hwnas.accuracy.supernet import Batches
from hwnas.builders.torch_model import build_torch
from hwnas.errors import InputError
from hwnas.space import DEFAULT_SPACE, SearchSpace

N_CLASSES = 3
# training and checkpoint tests run on a narrow space: a third of the default space's weights
SMALL = SearchSpace(resolutions=(128, 160), width_mults=(1.0,), depths=(2, 3), kernels=(3, 5), expands=(3, 4))


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return HyperNet(DEFAULT_SPACE, N_CLASSES, hidden=8).train()


def _data(n: int = 48, seed: int = 0, hw: int = 16) -> ImageDataset:
    """Three classes told apart by which colour channel is bright (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % N_CLASSES
    images = rng.integers(0, 60, (n, 3, hw, hw), dtype=np.uint8)
    for i, c in enumerate(labels):
        images[i, c] += 150
    return ImageDataset(images, labels.astype(np.int64), [str(c) for c in range(N_CLASSES)], f"synthetic-{seed}")


def _cfg(**kw) -> HyperTrainConfig:
    base = dict(steps=4, batch_size=8, archs_per_step=1, hidden=8, warmup_steps=1, calib_batches=1,
                calib_batch_size=8, checkpoint_every_s=1e9)
    return HyperTrainConfig(**{**base, **kw})


def test_generated_weights_have_the_sliced_subnets_shapes(net):
    archs = DEFAULT_SPACE.sample_many(12, seed=3) + [DEFAULT_SPACE.smallest(), DEFAULT_SPACE.largest()]
    for a in archs:
        gen = net.generated_weights(a)
        want = {f"stages.{s}.{j}.{n}" for s, st in enumerate(a.stages) for j in range(len(st)) for n in GENERATED
                if "se." not in n or net.template.stages[s][j].se is not None}
        assert set(gen) == want
        for k, w in gen.items():  # at the position's largest shape
            assert w.shape == net.template.get_parameter(k).shape, k
        sd = net.subnet_state_dict(a)
        ref = build_torch(a, N_CLASSES).state_dict()
        assert list(sd) == list(ref)
        assert all(sd[k].shape == ref[k].shape for k in ref), str(a)


def test_generated_subnet_equals_the_hypernet_forward(net):
    a = DEFAULT_SPACE.sample_many(1, seed=7)[0]
    x = torch.randn(6, 3, 16, 16)
    from hwnas.accuracy.hypernet import extract_generated

    with torch.no_grad():
        assert torch.allclose(extract_generated(net, a).train()(x), net(x, a), atol=1e-5)
    # the weights depend on the architecture: the same position gets other weights in another chain
    b = DEFAULT_SPACE.sample_many(2, seed=8)[1]
    k = "stages.0.0.project.conv.weight"
    assert not torch.equal(net.generated_weights(a)[k], net.generated_weights(b)[k])


def test_gradients_reach_every_part_of_the_hypernetwork(net):
    net.zero_grad(set_to_none=True)
    a = DEFAULT_SPACE.sample_many(1, seed=1)[0]
    loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 3, 16, 16), a), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for name in ("embed.0.weight", "gru.weight_ih_l0", "gru.weight_hh_l0_reverse", "decoders.s0b0.out.weight",
                 "template.stages.0.0.project.conv.weight", "template.stem.conv.weight"):
        g = net.get_parameter(name).grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name
    net.zero_grad(set_to_none=True)


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    net = HyperNet(SMALL, N_CLASSES, hidden=8).train()
    opt = make_optimizer(net, _cfg(lr=3e-3))
    data = _data(16)
    b = Batches(data, np.arange(16), SMALL)
    x, y = b.tensor(np.arange(16)), torch.from_numpy(data.labels)
    archs = SMALL.sample_many(2, seed=5)
    losses = [hyper_step(net, opt, b, x, y, archs) for _ in range(6)]
    assert losses[-1] < 0.7 * losses[0], losses


def _gen(net, arch):
    with torch.no_grad():
        return net.generated_weights(arch)


@pytest.mark.slow  # 4-7 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_checkpoint_round_trip_and_resume(tmp_path):
    data = _data()
    a = SMALL.sample_many(1, seed=11)[0]
    # interrupted after 2 of 4 steps, then resumed ...
    r1 = train_hypernet(data, tmp_path / "h", _cfg(), max_steps=2, space=SMALL)
    assert (r1.steps_done, r1.stopped_early) == (2, True)
    assert load_hypernet(tmp_path / "h", SMALL, data).meta["steps_done"] == 2
    r2 = train_hypernet(data, tmp_path / "h", _cfg(), resume=True, space=SMALL)
    assert (r2.steps_done, r2.stopped_early) == (4, False)
    # ... ends where an uninterrupted run ends
    train_hypernet(data, tmp_path / "ref", _cfg(), space=SMALL)
    h, ref = load_hypernet(tmp_path / "h", SMALL, data), load_hypernet(tmp_path / "ref", SMALL, data)
    gh, gr = _gen(h.net, a), _gen(ref.net, a)
    assert all(torch.allclose(gh[k], gr[k], atol=1e-6) for k in gr)
    # loading twice gives identical generated weights; evaluation is deterministic and in [0, 100]
    again = load_hypernet(tmp_path / "h", SMALL, data)
    assert all(torch.equal(gh[k], v) for k, v in _gen(again.net, a).items())
    acc1, items = evaluate_generated(h, [a], return_items=True)
    assert 0 <= acc1[0] <= 100 and items.shape == (1, len(h.val_idx))
    assert evaluate_generated(again, [a])[0] == acc1[0]
    # a finished run resumed is a no-op; more steps extend it
    assert train_hypernet(data, tmp_path / "h", _cfg(), resume=True, space=SMALL).steps_done == 4
    assert train_hypernet(data, tmp_path / "h", _cfg(steps=5), resume=True, space=SMALL).steps_done == 5


def test_bad_checkpoints_and_settings_are_one_line_errors(tmp_path):
    data = _data()
    with pytest.raises(InputError, match="no hypernetwork"):
        load_hypernet(tmp_path / "missing")
    train_hypernet(data, tmp_path / "h", _cfg(steps=1), space=SMALL)
    with pytest.raises(InputError, match="already holds a hypernetwork"):
        train_hypernet(data, tmp_path / "h", _cfg(steps=1), space=SMALL)
    with pytest.raises(InputError, match="another dataset"):
        train_hypernet(_data(seed=1), tmp_path / "h", _cfg(steps=2), resume=True, space=SMALL)
    with pytest.raises(InputError, match="cannot resume with lr"):
        train_hypernet(data, tmp_path / "h", _cfg(steps=2, lr=0.1), resume=True, space=SMALL)
    with pytest.raises(InputError, match="differs from the one"):
        load_hypernet(tmp_path / "h", SMALL, _data(seed=2))
    ckpt, meta = checkpoint_paths(tmp_path / "h")
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[: len(good) // 2])
    for call in (lambda: load_hypernet(tmp_path / "h", SMALL, data),
                 lambda: train_hypernet(data, tmp_path / "h", _cfg(steps=2), resume=True, space=SMALL)):
        with pytest.raises(InputError, match="corrupt") as e:
            call()
        assert "\n" not in str(e.value)
    ckpt.write_bytes(good)
    meta.write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        load_hypernet(tmp_path / "h", SMALL, data)


def _run_main(monkeypatch, capsys, *args):
    from hwnas import cli

    monkeypatch.setattr(sys, "argv", ["hwnas", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    c = capsys.readouterr()
    return e.value.code, c.out, c.err


ARCH = "r160_w1.0_k3e3-k5e4_k3e3-k3e3_k7e6-k3e3_k3e3-k3e3_k3e3-k5e6"


def test_cli_bad_input_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    data = _data()
    np.savez(tmp_path / "a.npz", images=data.images, labels=data.labels)
    np.savez(tmp_path / "b.npz", images=_data(seed=1).images, labels=data.labels)
    train_hypernet(str(tmp_path / "a.npz"), tmp_path / "h", _cfg(steps=1))
    (tmp_path / "bad").mkdir()
    ckpt, meta = checkpoint_paths(tmp_path / "bad")
    meta.write_bytes((tmp_path / "h" / "hypernet.json").read_bytes())
    ckpt.write_bytes(b"not a checkpoint")
    cases = [
        (["accuracy", ARCH, "--estimator", "hypernet", "--hypernet-dir", tmp_path / "missing"], "hwnas hypernet train"),
        (["accuracy", ARCH, "--estimator", "hypernet"], "--hypernet-dir"),
        (["accuracy", ARCH, "--estimator", "hypernet", "--hypernet-dir", tmp_path / "bad"], "corrupt"),
        (["accuracy", ARCH, "--estimator", "macs", "--hypernet-dir", tmp_path / "bad"], "--estimator hypernet"),
        (["hypernet", "train", "--data", tmp_path / "missing.npz", "--out", tmp_path / "o"], "dataset not found"),
        (["hypernet", "train", "--data", tmp_path / "a.npz", "--out", tmp_path / "nowhere", "--resume"],
         "no hypernetwork"),
        (["hypernet", "train", "--data", tmp_path / "a.npz", "--out", tmp_path / "bad", "--resume"], "corrupt"),
        (["hypernet", "train", "--data", tmp_path / "b.npz", "--out", tmp_path / "h", "--resume"], "another dataset"),
        (["hypernet", "train", "--data", tmp_path / "a.npz", "--out", tmp_path / "h", "--resume", "--batch-size", "4"],
         "cannot resume with batch_size=4"),
        (["hypernet", "train", "--data", tmp_path / "a.npz", "--out", tmp_path / "h"], "already holds a hypernetwork"),
    ]
    for args, msg in cases:
        code, _, err = _run_main(monkeypatch, capsys, *args)
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("data:")]
        assert code == 2 and lines and lines[0].startswith("error:") and msg in err, (args, err)
        assert len(lines) == 1 and "Traceback" not in err, (args, err)


@pytest.mark.slow  # three CLI runs of real training on builtin:digits (about half a minute)
def test_cli_ctrl_c_keeps_the_checkpoint_and_resume_continues(tmp_path):
    """A real Ctrl-C (SIGINT) during `hwnas hypernet train --resume`: exit 130 with one line naming
    --resume, no traceback, the checkpoint intact; a further --resume continues from it."""
    import os
    import signal
    import subprocess
    import threading
    import time
    from pathlib import Path

    from hwnas.accuracy.hypernet.checkpoint import read_meta

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), COLUMNS="200")
    out = tmp_path / "hn"
    base = [sys.executable, "-m", "hwnas.cli", "hypernet", "train", "--data", "builtin:digits", "--out", str(out),
            "--threads", "1"]
    r = subprocess.run(base + ["--steps", "400", "--batch-size", "16", "--hidden", "8", "--max-steps", "2"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    first = read_meta(out)
    assert first["steps_done"] == 2

    # SIGINT's default back in the child: a test run started in the background of a non-interactive shell
    # (`.ci/run &`) inherits SIGINT ignored, and a Python started so keeps ignoring it
    p = subprocess.Popen(base + ["--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(p.stderr), daemon=True)
    reader.start()
    t0 = time.monotonic()
    while not any(ln.startswith("data:") for ln in lines) and p.poll() is None and time.monotonic() - t0 < 120:
        time.sleep(0.2)
    time.sleep(3.0)  # into the training loop
    assert p.poll() is None, "".join(lines)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    reader.join(timeout=10)
    err = "".join(lines)
    assert p.returncode == 130, err
    assert "--resume" in err and "interrupted" in err and "Traceback" not in err
    after = read_meta(out)  # still loadable: written atomically, every minute (none in these seconds)
    assert after["steps_done"] >= 2 and after["config"] == first["config"]

    r = subprocess.run(base + ["--resume", "--max-steps", "1"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert read_meta(out)["steps_done"] == after["steps_done"] + 1
