"""A Once-for-All style weight-sharing supernet of the space.

One set of weights, sized for the largest choice everywhere, serves every architecture:

* **elastic kernel** by *kernel transformation matrices* (OFA): a depthwise layer keeps one
  7x7 kernel; the 5x5 kernel is its centre 5x5 crop multiplied by a learned 25x25 matrix, the
  3x3 kernel the centre 3x3 crop of that result times a learned 9x9 matrix (one matrix per
  layer and kernel size, shared by all channels).  The matrices start as identities, so at
  initialisation the scheme is plain centre cropping (``kernel_mode="crop"`` keeps it so).
* **elastic depth**: a stage of depth d runs its first d blocks.
* **elastic expand ratio**: a block with expand e uses the first ``mid`` channels of its
  hidden layer; :meth:`Supernet.sort_channels` re-orders hidden channels (and the squeeze-
  excite hidden units) by importance, the L1 norm of the weights that read them, at the start
  of every training epoch, so the first channels are the most important ones.
* **elastic width** (the space's width multipliers 1.0 / 1.2, which OFA covers with separate
  networks): every layer keeps the channels of the widest multiplier and a narrower network
  uses the first channels.  These are not importance-sorted.
* **elastic resolution**: each subnet sees the batch resized to its input size
  (:func:`hwnas.accuracy.data.input_size`: the space's largest resolution maps to the
  dataset's native size).

Training follows the sandwich rule: each step accumulates the gradients of the largest, the
smallest and ``n_random`` uniformly sampled subnets (the smaller ones distilled from the
largest one's soft predictions when ``distill``) before one optimizer step.

:meth:`Supernet.subnet_state_dict` extracts a subnet's weights in the exact ``state_dict``
layout of :func:`hwnas.builders.torch_model.build_torch`; :func:`extract_subnet` returns that
standalone model, and :func:`recalibrate_bn` resets and re-estimates its batch-norm statistics
on a few batches (the supernet's own batch-norm layers normalize with batch statistics in
training; their running statistics are not used for evaluation).

Checkpoints (``DIR/supernet.pt``) are plain dicts of tensors, numbers and strings, saved with
``torch.save`` and loaded with ``weights_only=True``; ``DIR/supernet.json`` holds the metadata
(space, widths, classes, dataset fingerprint, training configuration, history) and is checked
when a checkpoint is resumed or loaded.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..builders.torch_model import BN_EPS, MobileNetV3, build_torch
from ..errors import InputError, first_line
from ..layers import STAGE_SE, STAGE_STRIDES, BlockSpec, plan
from ..space import DEFAULT_SPACE, N_STAGES, Arch, Block, SearchSpace
from .data import BUILTIN_DIGITS, ImageDataset, input_size, load_dataset

FORMAT = "hwnas-supernet"
VERSION = 1
CHECKPOINT = "supernet.pt"
META = "supernet.json"
KERNEL_MODES = ("transform", "crop")
SPACE_KEYS = ("resolutions", "width_mults", "depths", "kernels", "expands")
"""The choice lists of a space dict (``SearchSpace.to_dict``) that checkpoints are checked on."""

__all__ = [
    "CHECKPOINT",
    "META",
    "Supernet",
    "TrainConfig",
    "TrainResult",
    "LoadedSupernet",
    "evaluate_archs",
    "extract_subnet",
    "load_supernet",
    "recalibrate_bn",
    "sandwich_step",
    "train_standalone",
    "train_supernet",
]


# --------------------------------------------------------------------------------------------
# the network


def _act(x: torch.Tensor, kind: str) -> torch.Tensor:
    return F.relu(x) if kind == "relu" else F.hardswish(x)


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)),
        ("bn", nn.BatchNorm2d(out_ch, eps=BN_EPS)),
    ]))


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, c: int, batch_stats: bool) -> torch.Tensor:
    if batch_stats:
        return F.batch_norm(x, None, None, bn.weight[:c], bn.bias[:c], True, 0.0, bn.eps)
    return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c], False, 0.0, bn.eps)


def _bn_state(bn: nn.BatchNorm2d, c: int, prefix: str, out: dict) -> None:
    out[prefix + "weight"] = bn.weight[:c]
    out[prefix + "bias"] = bn.bias[:c]
    out[prefix + "running_mean"] = bn.running_mean[:c]
    out[prefix + "running_var"] = bn.running_var[:c]
    out[prefix + "num_batches_tracked"] = torch.zeros((), dtype=torch.long)


class DynamicBlock(nn.Module):
    """An MBConv block holding the weights of its largest variant.

    Parameter names match :class:`~hwnas.builders.torch_model.MBConvBlock` (``expand.conv``,
    ``expand.bn``, ``dw.conv``, ``dw.bn``, ``se.reduce``, ``se.expand``, ``project.conv``,
    ``project.bn``) plus the kernel transformation matrices ``ktrans.<big>to<small>``.
    """

    def __init__(self, in_max: int, out_max: int, mid_max: int, se_max: int, kernels: Sequence[int],
                 stride: int, has_expand: bool, se: bool) -> None:
        super().__init__()
        self.kernels = tuple(sorted(kernels, reverse=True))
        k = self.kernels[0]
        self.stride = stride
        self.expand = _conv_bn(in_max, mid_max, 1) if has_expand else None
        self.dw = _conv_bn(mid_max, mid_max, k, stride, groups=mid_max)
        if se:
            self.se = nn.Module()
            self.se.reduce = nn.Conv2d(mid_max, se_max, 1, bias=True)
            self.se.expand = nn.Conv2d(se_max, mid_max, 1, bias=True)
        else:
            self.se = None
        self.project = _conv_bn(mid_max, out_max, 1)
        self.ktrans = nn.ParameterDict({
            f"{a}to{b}": nn.Parameter(torch.eye(b * b)) for a, b in zip(self.kernels, self.kernels[1:])
        })

    def dw_weight(self, kernel: int, mid: int, mode: str) -> torch.Tensor:
        """Depthwise weight ``[mid, 1, kernel, kernel]``: centre crops of the largest kernel,
        each step through the transformation matrix when ``mode == "transform"``."""
        if kernel not in self.kernels:
            raise ValueError(f"kernel {kernel} is not one of this block's {self.kernels}")
        w = self.dw.conv.weight[:mid]
        cur = self.kernels[0]
        for nxt in self.kernels[1:]:
            if cur == kernel:
                break
            s = (cur - nxt) // 2
            w = w[:, :, s:s + nxt, s:s + nxt]
            if mode == "transform":
                shape = w.shape
                w = F.linear(w.reshape(-1, nxt * nxt), self.ktrans[f"{cur}to{nxt}"]).reshape(shape)
            cur = nxt
        return w

    def forward(self, x: torch.Tensor, spec: BlockSpec, mode: str, batch_stats: bool) -> torch.Tensor:
        mid = spec.mid_ch
        if self.expand is not None:
            y = F.conv2d(x, self.expand.conv.weight[:mid, :spec.in_ch])
            y = _act(_bn(y, self.expand.bn, mid, batch_stats), spec.act)
        else:
            y = x
        k = spec.kernel
        w = self.dw_weight(k, mid, mode)
        # On a small feature map the taps farther than (side - 1) from the centre only ever
        # see zero padding: crop them away (identical result, much cheaper on 1x1 / 2x2 maps).
        kh, kw = min(k, 2 * y.shape[2] - 1), min(k, 2 * y.shape[3] - 1)
        if (kh, kw) != (k, k):
            w = w[:, :, (k - kh) // 2:(k - kh) // 2 + kh, (k - kw) // 2:(k - kw) // 2 + kw]
        y = F.conv2d(y, w, None, spec.stride, (kh // 2, kw // 2), 1, mid)
        y = _act(_bn(y, self.dw.bn, mid, batch_stats), spec.act)
        if self.se is not None:
            se = spec.se_ch
            s = y.mean((2, 3), keepdim=True)
            s = F.relu(F.conv2d(s, self.se.reduce.weight[:se, :mid], self.se.reduce.bias[:se]))
            s = F.hardsigmoid(F.conv2d(s, self.se.expand.weight[:mid, :se], self.se.expand.bias[:mid]))
            y = y * s
        y = _bn(F.conv2d(y, self.project.conv.weight[:spec.out_ch, :mid]), self.project.bn, spec.out_ch, batch_stats)
        return x + y if spec.residual else y

    def state_for(self, spec: BlockSpec, prefix: str, mode: str, out: dict) -> None:
        mid, o = spec.mid_ch, spec.out_ch
        if self.expand is not None:
            out[prefix + "expand.conv.weight"] = self.expand.conv.weight[:mid, :spec.in_ch]
            _bn_state(self.expand.bn, mid, prefix + "expand.bn.", out)
        out[prefix + "dw.conv.weight"] = self.dw_weight(spec.kernel, mid, mode)
        _bn_state(self.dw.bn, mid, prefix + "dw.bn.", out)
        if self.se is not None:
            se = spec.se_ch
            out[prefix + "se.reduce.weight"] = self.se.reduce.weight[:se, :mid]
            out[prefix + "se.reduce.bias"] = self.se.reduce.bias[:se]
            out[prefix + "se.expand.weight"] = self.se.expand.weight[:mid, :se]
            out[prefix + "se.expand.bias"] = self.se.expand.bias[:mid]
        out[prefix + "project.conv.weight"] = self.project.conv.weight[:o, :mid]
        _bn_state(self.project.bn, o, prefix + "project.bn.", out)

    @torch.no_grad()
    def sort_channels(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Re-order hidden (and SE hidden) channels by importance; the largest variant's
        function is unchanged.  Optimizer state tensors of the permuted parameters follow."""
        if self.expand is None:
            return
        imp = self.project.conv.weight.abs().sum(dim=(0, 2, 3))
        order = torch.argsort(imp, descending=True, stable=True)
        moves = [(self.expand.conv.weight, 0), (self.dw.conv.weight, 0), (self.project.conv.weight, 1)]
        for bn in (self.expand.bn, self.dw.bn):
            moves += [(bn.weight, 0), (bn.bias, 0), (bn.running_mean, 0), (bn.running_var, 0)]
        if self.se is not None:
            moves += [(self.se.reduce.weight, 1), (self.se.expand.weight, 0), (self.se.expand.bias, 0)]
        for t, dim in moves:
            _permute_(t, order, dim, optimizer)
        if self.se is not None:
            imp = self.se.expand.weight.abs().sum(dim=(0, 2, 3))
            order = torch.argsort(imp, descending=True, stable=True)
            for t, dim in [(self.se.reduce.weight, 0), (self.se.reduce.bias, 0), (self.se.expand.weight, 1)]:
                _permute_(t, order, dim, optimizer)


def _permute_(t: torch.Tensor, order: torch.Tensor, dim: int, optimizer: torch.optim.Optimizer | None) -> None:
    t.copy_(t.index_select(dim, order))
    if optimizer is not None and isinstance(t, nn.Parameter) and t in optimizer.state:
        for v in optimizer.state[t].values():
            if isinstance(v, torch.Tensor) and v.shape == t.shape:
                v.copy_(v.index_select(dim, order))


def _max_dims(space: SearchSpace, n_classes: int) -> dict:
    """Largest channel counts per position over the space's widths and expand ratios."""
    depth = space.max_depth
    dims: dict = {}
    for w in space.width_mults:
        for e in space.expands:
            a = Arch(max(space.resolutions), w, tuple((Block(max(space.kernels), e),) * depth for _ in range(N_STAGES)))
            p = plan(a, n_classes)
            cur = {"stem": p.stem.out_ch, "final": p.head.final_expand, "last": p.head.last_ch,
                   "head_in": p.head.in_ch}
            for i, b in enumerate(p.blocks):
                s, j = divmod(i, depth)
                cur[(s, j)] = (b.in_ch, b.out_ch, b.mid_ch, b.se_ch)
            for key, v in cur.items():
                old = dims.get(key)
                dims[key] = v if old is None else (tuple(max(x, y) for x, y in zip(old, v)) if isinstance(v, tuple)
                                                   else max(old, v))
    return dims


class Supernet(nn.Module):
    """The weight-sharing supernet of ``space`` for ``n_classes`` classes.

    ``forward(x, arch)`` runs the subnet ``arch`` on ``x`` (already at the subnet's input size).
    In ``train()`` mode batch-norm layers use batch statistics; in ``eval()`` mode they use the
    (sliced) running statistics, which only make sense after they were set, e.g. from a
    recalibrated standalone model.
    """

    def __init__(self, space: SearchSpace = DEFAULT_SPACE, n_classes: int = 10, kernel_mode: str = "transform") -> None:
        super().__init__()
        if kernel_mode not in KERNEL_MODES:
            raise ValueError(f"kernel_mode must be one of {KERNEL_MODES}, got {kernel_mode!r}")
        self.space = space
        self.n_classes = n_classes
        self.kernel_mode = kernel_mode
        d = _max_dims(space, n_classes)
        self.dims = d
        self.stem = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(3, d["stem"], 3, 2, 1, bias=False)),
            ("bn", nn.BatchNorm2d(d["stem"], eps=BN_EPS)),
        ]))
        self.first = DynamicBlock(d["stem"], d["stem"], d["stem"], 8, (3,), 1, has_expand=False, se=False)
        self.stages = nn.ModuleList()
        for s in range(N_STAGES):
            blocks = nn.ModuleList()
            for j in range(space.max_depth):
                i_max, o_max, m_max, se_max = d[(s, j)]
                blocks.append(DynamicBlock(i_max, o_max, m_max, se_max, space.kernels,
                                           STAGE_STRIDES[s] if j == 0 else 1, True, STAGE_SE[s]))
            self.stages.append(blocks)
        self.head = nn.Module()
        self.head.expand = _conv_bn(d["head_in"], d["final"], 1)
        self.head.feature = nn.Conv2d(d["final"], d["last"], 1, bias=True)
        self.head.classifier = nn.Linear(d["last"], n_classes)

    # -- subnets -------------------------------------------------------------------------------
    def _check(self, arch: Arch) -> None:
        try:
            self.space.validate(arch)
        except ValueError as e:
            raise InputError(f"architecture {arch} is outside the supernet's space: {e}") from None

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        self._check(arch)
        p = plan(arch, self.n_classes)
        bs = self.training
        c = p.stem.out_ch
        y = F.hardswish(_bn(F.conv2d(x, self.stem.conv.weight[:c], None, 2, 1), self.stem.bn, c, bs))
        y = self.first(y, p.first_block, self.kernel_mode, bs)
        i = 0
        for s, stage in enumerate(arch.stages):
            for j in range(len(stage)):
                y = self.stages[s][j](y, p.blocks[i], self.kernel_mode, bs)
                i += 1
        h = p.head
        y = F.hardswish(_bn(F.conv2d(y, self.head.expand.conv.weight[:h.final_expand, :h.in_ch]),
                            self.head.expand.bn, h.final_expand, bs))
        y = y.mean((2, 3), keepdim=True)
        y = F.hardswish(F.conv2d(y, self.head.feature.weight[:h.last_ch, :h.final_expand],
                                 self.head.feature.bias[:h.last_ch]))
        return F.linear(y.flatten(1), self.head.classifier.weight[:, :h.last_ch], self.head.classifier.bias)

    @torch.no_grad()
    def subnet_state_dict(self, arch: Arch) -> "OrderedDict[str, torch.Tensor]":
        """Weights of ``arch`` in the layout of ``build_torch(arch, n_classes).state_dict()`` (copies)."""
        self._check(arch)
        p = plan(arch, self.n_classes)
        out: dict = OrderedDict()
        c = p.stem.out_ch
        out["stem.conv.weight"] = self.stem.conv.weight[:c]
        _bn_state(self.stem.bn, c, "stem.bn.", out)
        self.first.state_for(p.first_block, "blocks.0.", self.kernel_mode, out)
        i = 0
        for s, stage in enumerate(arch.stages):
            for j in range(len(stage)):
                self.stages[s][j].state_for(p.blocks[i], f"blocks.{i + 1}.", self.kernel_mode, out)
                i += 1
        h = p.head
        out["head.expand.conv.weight"] = self.head.expand.conv.weight[:h.final_expand, :h.in_ch]
        _bn_state(self.head.expand.bn, h.final_expand, "head.expand.bn.", out)
        out["head.feature.weight"] = self.head.feature.weight[:h.last_ch, :h.final_expand]
        out["head.feature.bias"] = self.head.feature.bias[:h.last_ch]
        out["head.classifier.weight"] = self.head.classifier.weight[:, :h.last_ch]
        out["head.classifier.bias"] = self.head.classifier.bias
        return OrderedDict((k, v.detach().clone().contiguous()) for k, v in out.items())

    @torch.no_grad()
    def sort_channels(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Importance-sort every block's hidden channels (see :meth:`DynamicBlock.sort_channels`)."""
        for stage in self.stages:
            for b in stage:
                b.sort_channels(optimizer)

    def meta(self) -> dict:
        """What a checkpoint of this network must agree on to be loaded."""
        return {"space": self.space.to_dict(), "n_classes": self.n_classes, "kernel_mode": self.kernel_mode,
                "width_mults": list(self.space.width_mults)}


def extract_subnet(net: Supernet, arch: Arch) -> MobileNetV3:
    """A standalone :func:`~hwnas.builders.torch_model.build_torch` model holding ``arch``'s inherited weights."""
    model = build_torch(arch, net.n_classes)
    model.load_state_dict(net.subnet_state_dict(arch), strict=True)
    return model


# --------------------------------------------------------------------------------------------
# data plumbing


class Batches:
    """Normalised float batches of a dataset at chosen input sizes (images kept as uint8)."""

    def __init__(self, data: ImageDataset, train_idx: np.ndarray, space: SearchSpace,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        self.data = data
        self.space = space
        if mean is None or std is None:
            mean, std = data.channel_stats(train_idx)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def size_of(self, arch: Arch) -> tuple[int, int]:
        return input_size(arch.resolution, self.data.hw, max(self.space.resolutions))

    def tensor(self, idx: np.ndarray, shifts: np.ndarray | None = None) -> torch.Tensor:
        x = torch.from_numpy(self.data.images[idx]).float().div_(255.0)
        if shifts is not None:
            x = _shift(x, shifts)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    @staticmethod
    def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[2:]) == tuple(size):
            return x
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return y.contiguous(memory_format=torch.channels_last)


def _shift(x: torch.Tensor, shifts: np.ndarray) -> torch.Tensor:
    """Translate each image by integer (dy, dx) with zero fill (augmentation)."""
    n, c, h, w = x.shape
    pad = int(np.abs(shifts).max()) if shifts.size else 0
    if pad == 0:
        return x
    xp = F.pad(x, (pad, pad, pad, pad))
    out = torch.empty_like(x)
    for i, (dy, dx) in enumerate(shifts):
        out[i] = xp[i, :, pad - dy:pad - dy + h, pad - dx:pad - dx + w]
    return out


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Reset every batch-norm layer's running statistics and re-estimate them as the plain
    average over ``batches`` (forward passes in train mode); returns ``model`` in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for x in batches:
        model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return model.eval()


@torch.no_grad()
def _correct(model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor, batch: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x_val[i:i + batch]).argmax(1) == y_val[i:i + batch] for i in range(0, len(y_val), batch)]
                     or [torch.zeros(0, dtype=torch.bool)])


def _accuracy(model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor) -> float:
    c = _correct(model, x_val, y_val)
    return 100.0 * int(c.sum()) / len(c) if len(c) else 0.0


# --------------------------------------------------------------------------------------------
# training


@dataclass
class TrainConfig:
    """Supernet (and standalone) training settings; saved in the checkpoint metadata."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-5
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    n_random: int = 2
    distill: bool = True
    augment_shift: float = 0.125
    val_fraction: float | None = None
    seed: int = 0
    kernel_mode: str = "transform"
    calib_batches: int = 6
    calib_batch_size: int = 100
    checkpoint_every_s: float = 60.0

    def to_dict(self) -> dict:
        return asdict(self)

    def resolved(self, data: ImageDataset) -> "TrainConfig":
        """A copy with ``val_fraction`` settled: ``None`` means half the images for datasets
        under 5,000 images (a small validation set cannot tell subnets apart: on the 1,797
        digits, 20% = 360 images gave a split-half reliability of only 0.5), else 20%."""
        if self.val_fraction is not None:
            return self
        return TrainConfig.from_dict({**self.to_dict(), "val_fraction": 0.5 if data.n < 5000 else 0.2})

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    # settings that must agree for a resume to continue the same run
    RESUME_KEYS = ("batch_size", "lr", "momentum", "weight_decay", "warmup_epochs", "label_smoothing",
                   "n_random", "distill", "augment_shift", "val_fraction", "seed", "kernel_mode")


@dataclass
class TrainResult:
    out_dir: Path
    epochs_done: int
    epochs: int
    step_in_epoch: int
    seconds: float
    stopped_by_budget: bool
    history: list = field(default_factory=list)


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or ".bn." in name or "ktrans" in name or name.endswith("bias") else decay).append(p)
    return torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


def _lr_at(cfg: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, t)))


def _epoch_batches(n_train: int, cfg: TrainConfig, epoch: int) -> list[np.ndarray]:
    perm = np.random.default_rng([cfg.seed, 1, epoch]).permutation(n_train)
    nb = n_train // cfg.batch_size  # drop the ragged last batch (keeps BN batch statistics sane)
    if nb == 0:
        return [perm]
    return [perm[i * cfg.batch_size:(i + 1) * cfg.batch_size] for i in range(nb)]


def _step_shifts(rng: np.random.Generator, n: int, hw: tuple[int, int], frac: float) -> np.ndarray | None:
    m = int(round(frac * min(hw)))
    if m <= 0:
        return None
    return rng.integers(-m, m + 1, size=(n, 2))


def _sandwich(space: SearchSpace, rng: np.random.Generator, n_random: int) -> list[Arch]:
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n_random)]


def _kd_loss(logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return -(F.softmax(teacher, 1) * F.log_softmax(logits, 1)).sum(1).mean()


def sandwich_step(net: Supernet, opt: torch.optim.Optimizer, batches: "Batches", x: torch.Tensor, y: torch.Tensor,
                  rng: np.random.Generator, cfg: TrainConfig) -> float:
    """One optimizer step of the sandwich rule on the batch ``(x, y)`` (``x`` at the dataset's
    size): the gradients of the largest, the smallest and ``cfg.n_random`` subnets drawn from
    ``rng`` are accumulated, then ``opt`` steps (at its current learning rate).  Returns the
    largest subnet's loss."""
    opt.zero_grad(set_to_none=True)
    teacher = None
    largest_loss = 0.0
    for k, arch in enumerate(_sandwich(net.space, rng, cfg.n_random)):
        logits = net(batches.resize(x, batches.size_of(arch)), arch)
        if k == 0 or not cfg.distill:
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            if k == 0:
                teacher = logits.detach()
                largest_loss = float(loss.detach())
        else:
            loss = _kd_loss(logits, teacher)
        loss.backward()
    opt.step()
    return largest_loss


def checkpoint_paths(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    d = Path(out_dir)
    return d / CHECKPOINT, d / META


def _meta_doc(net: Supernet, data: ImageDataset, cfg: TrainConfig, epochs_done: int, step: int,
              history: list, mean, std, seconds: float) -> dict:
    return {"format": FORMAT, "version": VERSION, **net.meta(),
            "dataset": data.describe() | {"mean": mean, "std": std},
            "config": cfg.to_dict(), "epochs_done": epochs_done, "step_in_epoch": step,
            "train_seconds": seconds, "history": history,
            "input_sizes": {str(r): list(input_size(r, data.hw, max(net.space.resolutions)))
                            for r in net.space.resolutions}}


def _save_checkpoint(out_dir: Path, net: Supernet, opt: torch.optim.Optimizer, meta: dict) -> None:
    ckpt, meta_path = checkpoint_paths(out_dir)
    blob = {"format": FORMAT, "version": VERSION, "epoch": int(meta["epochs_done"]),
            "step_in_epoch": int(meta["step_in_epoch"]), "model": net.state_dict(),
            "optimizer": opt.state_dict() if opt is not None else {}, "meta": json.dumps(meta, sort_keys=True)}
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, ckpt)
    from ..predictors.serialize import save_json

    save_json(meta, meta_path)


def read_meta(out_dir: str | os.PathLike) -> dict:
    """The metadata JSON of a supernet directory; clear errors when missing or corrupt."""
    from ..predictors.serialize import load_json

    ckpt, meta_path = checkpoint_paths(out_dir)
    if not meta_path.is_file():
        raise InputError(f"no supernet in {out_dir} ({META} missing); train one with "
                         f"`hwnas supernet train --data {BUILTIN_DIGITS} --out {out_dir}`")
    try:
        meta = load_json(meta_path)
    except ValueError as e:
        raise InputError(f"supernet metadata {meta_path} is unreadable: {e}") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{meta_path} is not a supernet metadata file (format {meta.get('format')!r})")
    if int(meta.get("version", 0)) > VERSION:
        raise InputError(f"{meta_path} has format version {meta.get('version')}; upgrade hwnas to read it")
    return meta


def _load_blob(ckpt: Path) -> dict:
    if not ckpt.is_file():
        raise InputError(f"no supernet checkpoint {ckpt}; train one with "
                         f"`hwnas supernet train --data {BUILTIN_DIGITS} --out {ckpt.parent}`")
    try:
        blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise InputError(f"supernet checkpoint {ckpt} is corrupt or not a weights-only checkpoint: "
                         f"{first_line(e)[:200]}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or "model" not in blob:
        raise InputError(f"{ckpt} is not an hwnas supernet checkpoint")
    return blob


def _choices_within(inner: Iterable, outer: Iterable) -> bool:
    """True if every value of ``inner`` is one of ``outer`` (compared as floats)."""
    return set(map(float, inner)) <= set(map(float, outer))


def space_covers(outer: dict, inner: dict) -> bool:
    """True if every choice of space dict ``inner`` is also a choice of ``outer``."""
    try:
        return all(_choices_within(inner[k], outer[k]) for k in SPACE_KEYS)
    except (KeyError, TypeError, ValueError):
        return False


def _check_compatible(meta: dict, want: dict, where: str, exact: bool = True) -> None:
    """``want``: the wanted net's meta (space, n_classes, kernel_mode).  ``exact`` (resuming):
    the same space; otherwise (estimating) the checkpoint's space must cover the wanted one."""
    got_space, want_space = meta.get("space") or {}, want["space"]
    if exact:
        diffs = [k for k in SPACE_KEYS if list(map(float, got_space.get(k) or [])) != list(map(float, want_space[k]))]
    else:
        diffs = [k for k in SPACE_KEYS if not _choices_within(want_space[k], got_space.get(k) or [])]
    if diffs:
        detail = "; ".join(f"{k}: checkpoint {got_space.get(k)} vs wanted {want_space[k]}" for k in diffs)
        what = "width multipliers" if diffs == ["width_mults"] else "search space"
        raise InputError(f"{where} was trained for another {what} ({detail})")
    for key in ("n_classes", "kernel_mode"):
        if key in want and meta.get(key) != want[key]:
            raise InputError(f"{where} has {key} {meta.get(key)!r}, expected {want[key]!r}")


def _check_state_shapes(net: Supernet, state: dict, where: str) -> None:
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        raise InputError(f"{where} does not match this supernet (missing {missing[:2]}, unexpected {extra[:2]}); "
                         f"was it made for another space or width?")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise InputError(f"{where}: tensor {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)} "
                             f"(a checkpoint of another space or width?)")


def train_supernet(data: ImageDataset | str, out_dir: str | os.PathLike, cfg: TrainConfig | None = None,
                   space: SearchSpace = DEFAULT_SPACE, resume: bool = False,
                   time_budget_s: float | None = None,
                   progress: Callable[[int, int, dict], None] | None = None,
                   threads: int | None = None) -> TrainResult:
    """Train (or with ``resume`` continue) a supernet on ``data`` into ``out_dir``.

    ``data`` is a dataset or a ``--data`` spec; the spec is recorded so estimators can find
    the data again.  Stops after ``cfg.epochs`` epochs, or at a step boundary once
    ``time_budget_s`` has passed (a checkpoint is saved; ``resume`` continues).
    ``progress(step_done, total_steps, info)`` is called after every step.
    """
    cfg = cfg or TrainConfig()
    if time_budget_s is not None:
        from ..validate import positive_number

        positive_number(time_budget_s, "time budget", "seconds", allow_zero=True)  # 0: stop after one step
    if threads:
        torch.set_num_threads(threads)
    if isinstance(data, (str, os.PathLike)):
        data = load_dataset(data)
    cfg = cfg.resolved(data)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} is a file, not a directory")
    ckpt, meta_path = checkpoint_paths(out)
    if cfg.epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {cfg.epochs}")
    torch.manual_seed(cfg.seed)
    # channels-last: oneDNN's fast path on CPU (same numbers, ~20% faster training here)
    net = Supernet(space, data.n_classes, cfg.kernel_mode).to(memory_format=torch.channels_last)
    opt = _make_optimizer(net, cfg)
    train_idx, val_idx = data.split(cfg.val_fraction, cfg.seed)
    mean, std = data.channel_stats(train_idx)
    start_epoch, start_step, history, seconds_before = 0, 0, [], 0.0
    if resume:
        meta = read_meta(out)
        blob = _load_blob(ckpt)
        where = f"checkpoint {ckpt}"
        _check_compatible(meta, net.meta(), where)
        if json.loads(blob["meta"]).get("epochs_done") != meta.get("epochs_done"):
            raise InputError(f"{ckpt} and {meta_path} disagree (interrupted write?); retrain into a fresh --out")
        if meta["dataset"]["fingerprint"] != data.fingerprint:
            raise InputError(f"{where} was trained on another dataset ({meta['dataset']['source']}, "
                             f"fingerprint {meta['dataset']['fingerprint']}); resume with the same --data")
        old = TrainConfig.from_dict(meta["config"])
        for k in TrainConfig.RESUME_KEYS:
            if getattr(old, k) != getattr(cfg, k):
                raise InputError(f"cannot resume with {k}={getattr(cfg, k)!r}: {where} was trained with {getattr(old, k)!r}")
        _check_state_shapes(net, blob["model"], where)
        net.load_state_dict(blob["model"])
        try:
            opt.load_state_dict(blob["optimizer"])
        except (ValueError, KeyError) as e:
            raise InputError(f"{where}: optimizer state does not fit ({e})") from None
        start_epoch, start_step = int(blob["epoch"]), int(blob["step_in_epoch"])
        history = list(meta.get("history", []))
        seconds_before = float(meta.get("train_seconds", 0.0))
    elif ckpt.exists() or meta_path.exists():
        raise InputError(f"{out} already holds a supernet; add --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    batches = Batches(data, train_idx, space, mean, std)
    steps_per_epoch = len(_epoch_batches(len(train_idx), cfg, 0))
    total = cfg.epochs * steps_per_epoch
    t0 = time.perf_counter()
    last_ckpt = t0
    stopped = False
    epoch, step = start_epoch, start_step
    done_steps = epoch * steps_per_epoch + step
    if done_steps >= total:
        return TrainResult(out, epoch, cfg.epochs, step, seconds_before, False, history)

    def save(ep: int, st: int) -> None:
        m = _meta_doc(net, data, cfg, ep, st, history, mean, std, seconds_before + time.perf_counter() - t0)
        _save_checkpoint(out, net, opt, m)

    net.train()
    while epoch < cfg.epochs and not stopped:
        ebatches = _epoch_batches(len(train_idx), cfg, epoch)
        if step == 0:
            net.sort_channels(opt)
        loss_sum, n_sum, ep_t0 = 0.0, 0, time.perf_counter()
        bi = step
        while bi < len(ebatches):
            rng = np.random.default_rng([cfg.seed, 2, epoch, bi])
            idx = train_idx[ebatches[bi]]
            x = batches.tensor(idx, _step_shifts(rng, len(idx), data.hw, cfg.augment_shift))
            y = torch.from_numpy(data.labels[idx])
            lr = _lr_at(cfg, epoch * steps_per_epoch + bi, total, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            loss_sum += sandwich_step(net, opt, batches, x, y, rng, cfg) * len(y)
            n_sum += len(y)
            bi += 1
            done_steps += 1
            if progress is not None:
                progress(done_steps, total, {"epoch": epoch, "loss": loss_sum / max(1, n_sum), "lr": lr})
            now = time.perf_counter()
            if time_budget_s is not None and now - t0 >= time_budget_s and done_steps < total:
                stopped = True
                break
            if now - last_ckpt >= cfg.checkpoint_every_s and bi < len(ebatches):
                save(epoch, bi)
                last_ckpt = time.perf_counter()
        if bi == len(ebatches):
            history.append({"epoch": epoch + 1, "train_loss_largest": loss_sum / max(1, n_sum),
                            "seconds": time.perf_counter() - ep_t0})
            epoch, step = epoch + 1, 0
            save(epoch, 0)
            last_ckpt = time.perf_counter()
        else:
            step = bi
            save(epoch, step)
    return TrainResult(out, epoch, cfg.epochs, step, seconds_before + time.perf_counter() - t0, stopped, history)


# --------------------------------------------------------------------------------------------
# loading and evaluating


@dataclass
class LoadedSupernet:
    net: Supernet
    meta: dict
    data: ImageDataset
    config: TrainConfig
    train_idx: np.ndarray
    val_idx: np.ndarray
    batches: Batches

    @property
    def complete(self) -> bool:
        return int(self.meta["epochs_done"]) >= int(self.config.epochs)


def load_supernet(out_dir: str | os.PathLike, space: SearchSpace = DEFAULT_SPACE,
                  data: ImageDataset | str | None = None) -> LoadedSupernet:
    """Load a trained supernet, checking it belongs to ``space`` and finding its dataset
    (``data`` or the ``--data`` source recorded at training time)."""
    ckpt, meta_path = checkpoint_paths(out_dir)
    meta = read_meta(out_dir)
    where = f"supernet checkpoint {ckpt}"
    _check_compatible(meta, {"space": space.to_dict()}, where, exact=False)
    blob = _load_blob(ckpt)
    if json.loads(blob["meta"]).get("epochs_done") != meta.get("epochs_done"):
        raise InputError(f"{ckpt} and {meta_path} disagree (interrupted write?); resume the training to fix it")
    try:
        own_space = SearchSpace.from_dict(meta["space"])
        net = Supernet(own_space, int(meta["n_classes"]), meta["kernel_mode"])
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"supernet metadata {meta_path} is corrupt ({e})") from None
    _check_state_shapes(net, blob["model"], where)
    net.load_state_dict(blob["model"])
    cfg = TrainConfig.from_dict(meta["config"])
    ds_meta = meta["dataset"]
    if data is None:
        data = ds_meta["source"]
    if isinstance(data, (str, os.PathLike)):
        try:
            data = load_dataset(data)
        except InputError as e:
            raise InputError(f"the supernet in {out_dir} needs its dataset: {e}") from None
    if data.fingerprint != ds_meta["fingerprint"]:
        raise InputError(f"dataset {data.source} differs from the one the supernet in {out_dir} was trained on "
                         f"(fingerprint {data.fingerprint} vs {ds_meta['fingerprint']})")
    train_idx, val_idx = data.split(cfg.val_fraction, cfg.seed)
    b = Batches(data, train_idx, net.space, ds_meta["mean"], ds_meta["std"])
    return LoadedSupernet(net.eval(), meta, data, cfg, train_idx, val_idx, b)


def _calib_batches(b: Batches, train_idx: np.ndarray, size: tuple[int, int], n_batches: int, batch_size: int,
                   seed: int) -> list[torch.Tensor]:
    perm = np.random.default_rng([seed, 3]).permutation(len(train_idx))
    out = []
    for i in range(n_batches):
        part = perm[i * batch_size:(i + 1) * batch_size]
        if len(part) == 0:
            break
        out.append(b.resize(b.tensor(train_idx[part]), size))
    return out


def evaluate_archs(ls: LoadedSupernet, archs: Sequence[Arch], progress: Callable[[int], None] | None = None,
                   return_items: bool = False):
    """Top-1 accuracy (%) on the validation split of each architecture with inherited weights,
    after batch-norm recalibration on ``calib_batches`` fixed training batches.  With
    ``return_items`` also the per-image correctness ``bool [n_archs, n_val]``."""
    cfg = ls.config
    out = np.empty(len(archs))
    items = np.zeros((len(archs), len(ls.val_idx)), dtype=bool) if return_items else None
    val_cache: dict = {}
    calib_cache: dict = {}
    y_val = torch.from_numpy(ls.data.labels[ls.val_idx])
    for i, a in enumerate(archs):
        size = ls.batches.size_of(a)
        if size not in val_cache:
            val_cache[size] = ls.batches.resize(ls.batches.tensor(ls.val_idx), size)
            calib_cache[size] = _calib_batches(ls.batches, ls.train_idx, size, cfg.calib_batches,
                                               cfg.calib_batch_size, cfg.seed)
        model = extract_subnet(ls.net, a).to(memory_format=torch.channels_last)  # 3-5x faster inference here
        model = recalibrate_bn(model, calib_cache[size])
        correct = _correct(model, val_cache[size], y_val)
        out[i] = 100.0 * int(correct.sum()) / len(correct) if len(correct) else 0.0
        if items is not None:
            items[i] = correct.numpy()
        if progress is not None:
            progress(1)
    return (out, items) if return_items else out


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
    steps_per_epoch = len(_epoch_batches(len(train_idx), cfg, 0))
    total = cfg.epochs * steps_per_epoch
    t0 = time.perf_counter()
    model.train()
    done = 0
    for epoch in range(cfg.epochs):
        for bi, part in enumerate(_epoch_batches(len(train_idx), cfg, epoch)):
            rng = np.random.default_rng([cfg.seed, 2, epoch, bi])
            idx = train_idx[part]
            x = b.resize(b.tensor(idx, _step_shifts(rng, len(idx), data.hw, cfg.augment_shift)), size)
            lr = _lr_at(cfg, done, total, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), torch.from_numpy(data.labels[idx]), label_smoothing=cfg.label_smoothing).backward()
            opt.step()
            done += 1
            if progress is not None:
                progress(done, total)
    secs = time.perf_counter() - t0
    recalibrate_bn(model, _calib_batches(b, train_idx, size, cfg.calib_batches, cfg.calib_batch_size, cfg.seed))
    acc = _accuracy(model, b.resize(b.tensor(val_idx), size), torch.from_numpy(data.labels[val_idx]))
    return acc, secs
