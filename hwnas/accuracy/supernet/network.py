"""The elastic network: :class:`Supernet` (one set of weights for every architecture of a
space), its :class:`DynamicBlock` and :func:`extract_subnet` (a subnet as a standalone
:func:`~hwnas.builders.torch_model.build_torch` model)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...builders.torch_model import BN_EPS, MobileNetV3, build_torch
from ...errors import InputError
from ...layers import STAGE_SE, STAGE_STRIDES, BlockSpec, plan
from ...space import DEFAULT_SPACE, N_STAGES, Arch, Block, SearchSpace

KERNEL_MODES = ("transform", "crop")


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
