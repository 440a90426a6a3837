"""Stand-alone training of one vit subnet (the ground truth of the super-transformer's ranking)."""

from __future__ import annotations

import numpy as np
import torch

from hwnas.accuracy.data import ImageDataset
from hwnas.spaces.vit import VitSpace
from hwnas.spaces.vit_standalone import train_vit_standalone
from hwnas.spaces.vit_supernet import proxy_geometry
from hwnas.spaces.vit_supernet_train import VitTrainConfig, prepare_data

SPACE = VitSpace(patches=(16,), resolutions=(96, 128), embeds=(8, 16), heads=(1, 2), mlp_ratios=(1, 2),
                 depths=(1, 2), seed=0)


def _data(n: int = 96):
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    imgs = rng.integers(0, 60, (n, 3, 16, 16)).astype(np.uint8)
    for i, c in enumerate(labels):  # class c: a bright channel c
        imgs[i, c] += 150
    return prepare_data(ImageDataset(imgs, labels, ["a", "b", "c"], "synthetic"), 0.5, 0)


def test_standalone_trains_is_seeded_and_leaves_global_rng():
    vd, geo = _data(), proxy_geometry(SPACE, 16)
    cfg = VitTrainConfig(epochs=3, batch_size=8, lr=1e-2, label_smoothing=0.0, val_fraction=0.5)
    arch = SPACE.largest()
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = train_vit_standalone(arch, vd, cfg, geo, 3, seed=0, threads=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    assert len(a.epoch_losses) == 3 and a.epoch_losses[-1] < 0.7 * a.epoch_losses[0]
    assert a.top1_pct > 60  # chance: 33 %, on the held-out half
    b = train_vit_standalone(arch, vd, cfg, geo, 3, seed=0, threads=1)
    assert b.top1_pct == a.top1_pct and b.epoch_losses == a.epoch_losses
    c = train_vit_standalone(arch, vd, cfg, geo, 3, seed=1, threads=1)
    assert c.epoch_losses != a.epoch_losses
