"""Brief training on the proxy task (settings: the supernet's :class:`TrainConfig`; its epochs,
warm-up and sandwich settings are not read) for morphism search and its benchmark: a model (from scratch
or with inherited weights) takes a number of SGD steps on the training split, then its top-1
accuracy on the validation split is read after the same batch-norm recalibration the stand-alone
ground truth uses (:mod:`hwnas.accuracy.supernet.standalone`).

Seeded: a model's initial weights, its batches and their augmentation shifts come from the seed
given (torch's global RNG is restored after a from-scratch build).  Torch's thread count is left
as it is.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..accuracy.data import ImageDataset, load_dataset
from ..accuracy.supernet.batches import Batches, _step_shifts
from ..accuracy.supernet.evaluation import _calib_batches, _correct, recalibrate_bn
from ..accuracy.supernet.training import TrainConfig, _make_optimizer
from ..builders.torch_model import MobileNetV3, build_torch
from ..space import Arch, SearchSpace


class ProxyTask:
    """A dataset split once (seeded) into training and validation images, with the batches of
    each architecture's input size."""

    def __init__(self, data: ImageDataset, space: SearchSpace, config: TrainConfig | None = None,
                 split_seed: int = 0) -> None:
        self.data = data
        self.space = space
        self.config = (config or TrainConfig()).resolved(data)  # the supernet's optimizer, augmentation, split
        self.train_idx, self.val_idx = data.split(self.config.val_fraction, split_seed)
        self.batches = Batches(data, self.train_idx, space)
        self._val: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def load(cls, spec: str, space: SearchSpace, config: TrainConfig | None = None,
             split_seed: int = 0) -> "ProxyTask":
        return cls(load_dataset(spec), space, config, split_seed)

    def scratch(self, arch: Arch, seed: int) -> MobileNetV3:
        """A freshly initialized model of ``arch`` (seeded; the global RNG is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_torch(arch, self.data.n_classes)

    def train(self, model: MobileNetV3, steps: int, seed: int) -> float:
        """``steps`` SGD steps (cosine learning rate from ``config.lr`` to 0) on batches drawn
        with replacement across steps from ``default_rng([seed, step])``; returns the mean loss."""
        cfg = self.config
        if steps <= 0:
            return math.nan
        opt = _make_optimizer(model, cfg)
        size = self.batches.size_of(model.arch)
        batch = min(cfg.batch_size, len(self.train_idx))
        model.train()
        total = 0.0
        for s in range(steps):
            rng = np.random.default_rng([seed, s])
            idx = self.train_idx[rng.choice(len(self.train_idx), batch, replace=False)]
            x = self.batches.resize(self.batches.tensor(idx, _step_shifts(rng, batch, self.data.hw, cfg.augment_shift)),
                                    size)
            y = torch.from_numpy(self.data.labels[idx])
            for g in opt.param_groups:
                g["lr"] = 0.5 * cfg.lr * (1 + math.cos(math.pi * s / steps))
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        return total / steps

    def correct(self, model: MobileNetV3, seed: int = 0) -> np.ndarray:
        """Per validation image, whether ``model`` (batch-norm statistics re-estimated on
        training images first, in place) classifies it right."""
        cfg = self.config
        size = self.batches.size_of(model.arch)
        recalibrate_bn(model, _calib_batches(self.batches, self.train_idx, size, cfg.calib_batches,
                                             cfg.calib_batch_size, seed))
        if size not in self._val:
            self._val[size] = self.batches.resize(self.batches.tensor(self.val_idx), size)
        return _correct(model, self._val[size], torch.from_numpy(self.data.labels[self.val_idx])).numpy()

    def accuracy_pct(self, model: MobileNetV3, seed: int = 0) -> float:
        """Top-1 % on the validation split (see :meth:`correct`)."""
        c = self.correct(model, seed)
        return 100.0 * float(c.mean()) if len(c) else 0.0
