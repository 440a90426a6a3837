"""Stand-alone training: one architecture trained alone from scratch with the supernet's data,
schedule, augmentation and loop (:func:`~hwnas.accuracy.supernet.training.run_epochs`), the
reference that inherited weights are judged against."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...builders.torch_model import build_torch
from ...space import DEFAULT_SPACE, Arch, SearchSpace
from ..data import ImageDataset
from .batches import Batches
from .evaluation import _accuracy, _calib_batches, recalibrate_bn
from .training import TrainConfig, _make_optimizer, run_epochs


def train_standalone(arch: Arch, data: ImageDataset, cfg: TrainConfig, space: SearchSpace = DEFAULT_SPACE,
                     progress: Callable[[int, int], None] | None = None) -> tuple[float, float]:
    """Train ``arch`` alone from scratch with the supernet's data, schedule, augmentation and
    number of optimizer steps (``cfg.epochs`` epochs); returns (top-1 % on the validation
    split after the same batch-norm recalibration as inherited weights, seconds)."""
    cfg = cfg.resolved(data)
    torch.manual_seed(cfg.seed)
    model = build_torch(arch, data.n_classes).to(memory_format=torch.channels_last)
    train_idx, val_idx = data.split(cfg.val_fraction, cfg.seed)
    b = Batches(data, train_idx, space)
    size = b.size_of(arch)
    opt = _make_optimizer(model, cfg)

    def step(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> float:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(b.resize(x, size)), y, label_smoothing=cfg.label_smoothing)
        loss.backward()
        opt.step()
        return float(loss.detach())

    model.train()
    end = run_epochs(data, train_idx, b, cfg, opt, step,
                     progress=None if progress is None else lambda done, total, info: progress(done, total))
    recalibrate_bn(model, _calib_batches(b, train_idx, size, cfg.calib_batches, cfg.calib_batch_size, cfg.seed))
    acc = _accuracy(model, b.resize(b.tensor(val_idx), size), torch.from_numpy(data.labels[val_idx]))
    return acc, end.seconds
