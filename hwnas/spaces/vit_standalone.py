"""Stand-alone training of one vit subnet: the ground truth the super-transformer's inherited
accuracy is judged against.

:func:`train_vit_standalone` builds the subnet's own :class:`~hwnas.spaces.vit_supernet.VitModel`
on the proxy task (:func:`~hwnas.spaces.vit_supernet.proxy_arch`), freshly initialised like the
super-transformer (truncated normal, std 0.02) from ``seed``, and trains it from scratch with the
super-transformer's steps (:func:`~hwnas.spaces.vit_supernet_train.step_batch`: the same batches,
shifts, warmup + cosine schedule; :func:`~hwnas.spaces.vit_supernet_train.accumulated_step`: the
same loss, clipping and AdamW groups) for ``cfg.epochs`` epochs, one forward pass per step instead
of the sandwich's four.  Top-1 % on the validation split it is given (the super-transformer's,
:attr:`~hwnas.spaces.vit_supernet_train.LoadedVitSupernet.data`).

Seeds: seed 0 uses the super-transformer's own batch order and shifts (``cfg.seed``); seed ``s``
uses ``cfg.seed + s`` for them and for the initialisation.  The split is the one in ``data``,
whatever the seed.  Torch's global RNG is forked (left as it was), the thread count restored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from .vit import VitArch
from .vit_supernet import ProxyGeometry, VitModel, correct_per_image, init_vit_weights, proxy_arch, resize_px
from .vit_supernet_train import VitData, VitTrainConfig, accumulated_step, epoch_batches, make_optimizer, step_batch

__all__ = ["StandaloneResult", "evaluate_vit_model", "train_vit_standalone"]


@dataclass
class StandaloneResult:
    top1_pct: float
    seconds: float
    epoch_losses: list[float]


@torch.no_grad()
def evaluate_vit_model(model: VitModel, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 % of ``model`` on ``(x, y)`` (normalized images at native size, resized to the model's input)."""
    was = model.training
    model.eval()
    try:
        right = correct_per_image(lambda xb: model(resize_px(xb, model.arch.resolution)), x, y, batch_size)
    finally:
        model.train(was)
    return 100.0 * int(right.sum()) / max(1, len(right))


def train_vit_standalone(arch: VitArch, data: VitData, cfg: VitTrainConfig, geometry: ProxyGeometry,
                         n_classes: int, seed: int = 0, threads: int | None = None,
                         progress: Callable[[int, int, float], None] | None = None) -> StandaloneResult:
    """Train ``arch`` (a space architecture; its proxy model is built with ``geometry``) alone on
    ``data.x_train`` for ``cfg.epochs`` epochs; its top-1 % on ``data.x_val``."""
    from ..accuracy.supernet.distributed import torch_threads

    cfg = replace(cfg, seed=cfg.seed + int(seed))
    pa = proxy_arch(arch, geometry)
    t0 = time.perf_counter()
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = init_vit_weights(VitModel(pa, n_classes))
        opt = make_optimizer(model, cfg)
        per_epoch = len(epoch_batches(len(data.y_train), cfg, 0))
        total = cfg.epochs * per_epoch
        fwd = lambda x: model(resize_px(x, pa.resolution))  # noqa: E731
        model.train()
        epoch_losses = []
        for epoch in range(cfg.epochs):
            batches = epoch_batches(len(data.y_train), cfg, epoch)
            losses = []
            for step in range(len(batches)):
                x, y = step_batch(opt, data, cfg, epoch, step, batches, per_epoch, total)
                losses.append(accumulated_step(model, opt, [lambda x=x: fwd(x)], y, cfg))
                if progress is not None:
                    progress(epoch * per_epoch + step + 1, total, losses[-1])
            epoch_losses.append(float(np.mean(losses)))
        top1 = evaluate_vit_model(model, data.x_val, data.y_val)
    return StandaloneResult(top1, round(time.perf_counter() - t0, 1), epoch_losses)
