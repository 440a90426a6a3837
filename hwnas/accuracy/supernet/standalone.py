"""Stand-alone training: one architecture trained alone from scratch with the supernet's data,
schedule, augmentation and loop (:func:`~hwnas.accuracy.supernet.training.run_epochs`), the
reference that inherited weights are judged against."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...builders.torch_model import build_torch
from ...space import DEFAULT_SPACE, Arch, SearchSpace
from ..data import ImageDataset
from .batches import Batches
from .evaluation import _calib_batches, _correct, recalibrate_bn
from .training import TrainConfig, _make_optimizer, run_epochs


def train_standalone(arch: Arch, data: ImageDataset, cfg: TrainConfig, space: SearchSpace = DEFAULT_SPACE,
                     progress: Callable[[int, int], None] | None = None,
                     init_seed: int | None = None) -> tuple[float, float]:
    """Train ``arch`` alone from scratch with the supernet's data, schedule, augmentation and
    number of optimizer steps (``cfg.epochs`` epochs); returns (top-1 % on the validation
    split after the same batch-norm recalibration as inherited weights, seconds).  The
    weights are initialised from ``init_seed`` (default ``cfg.seed``; the split and the batch
    order always follow ``cfg.seed``), without touching torch's global generator."""
    acc, _, secs = train_standalone_correct(arch, data, cfg, space, progress, init_seed)
    return acc, secs


def train_standalone_correct(arch: Arch, data: ImageDataset, cfg: TrainConfig, space: SearchSpace = DEFAULT_SPACE,
                             progress: Callable[[int, int], None] | None = None,
                             init_seed: int | None = None) -> tuple[float, np.ndarray, float]:
    """:func:`train_standalone`, with the per-image correctness on the validation split (bool,
    in the split's order) between the accuracy and the seconds: for paired comparisons of two
    architectures on the same images."""
    cfg = cfg.resolved(data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed if init_seed is None else init_seed)
        model = build_torch(arch, data.n_classes)
    train_idx, val_idx = data.split(cfg.val_fraction, cfg.seed)
    return _train(model, arch, data, cfg, Batches(data, train_idx, space), train_idx, val_idx, progress)


def train_model(model: nn.Module, arch: Arch, data: ImageDataset, cfg: TrainConfig, batches: Batches,
                train_idx: np.ndarray, val_idx: np.ndarray,
                progress: Callable[[int, int], None] | None = None) -> tuple[float, float]:
    """Train ``model`` (of ``arch``, from whatever weights it holds) for ``cfg.epochs`` epochs of
    the training loop on ``train_idx`` at ``arch``'s input size; recalibrate its batch norm
    and return (top-1 % on ``val_idx``, seconds).  ``model`` is left in eval mode."""
    acc, _, secs = _train(model, arch, data, cfg, batches, train_idx, val_idx, progress)
    return acc, secs


def _train(model: nn.Module, arch: Arch, data: ImageDataset, cfg: TrainConfig, batches: Batches,
           train_idx: np.ndarray, val_idx: np.ndarray,
           progress: Callable[[int, int], None] | None) -> tuple[float, np.ndarray, float]:
    model.to(memory_format=torch.channels_last)
    size = batches.size_of(arch)
    opt = _make_optimizer(model, cfg)

    def step(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> float:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(batches.resize(x, size)), y, label_smoothing=cfg.label_smoothing)
        loss.backward()
        opt.step()
        return float(loss.detach())

    model.train()
    end = run_epochs(data, train_idx, batches, cfg, opt, step,
                     progress=None if progress is None else lambda done, total, info: progress(done, total))
    recalibrate_bn(model, _calib_batches(batches, train_idx, size, cfg.calib_batches, cfg.calib_batch_size, cfg.seed))
    correct = _correct(model, batches.resize(batches.tensor(val_idx), size), torch.from_numpy(data.labels[val_idx]))
    correct = correct.numpy().astype(bool)
    acc = 100.0 * int(correct.sum()) / len(correct) if len(correct) else 0.0
    return acc, correct, end.seconds
