"""The graph hypernetwork: :class:`HyperNet` (block descriptions -> embeddings -> each block's
weights at the supernet's largest shape) and :func:`node_features` (one feature row per block).

The elastic blocks' weights are *generated* per architecture; the stem, the fixed first block,
the head, every batch-norm affine and the squeeze-excite biases are ordinary shared parameters.
The network is run by the supernet's own code (:class:`~hwnas.accuracy.supernet.Supernet` in
``kernel_mode="crop"``) with the generated tensors put in place of its block weights
(:func:`torch.func.functional_call`), so every architecture is sliced exactly as the supernet
slices it (first channels, first blocks, centre crop of the 7x7 depthwise kernel).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from ...errors import InputError
from ...layers import BlockSpec, plan
from ...space import DEFAULT_SPACE, N_STAGES, Arch, SearchSpace
from ..supernet.network import Supernet

# the block weight tensors that are generated (names inside a DynamicBlock)
GENERATED = ("expand.conv.weight", "dw.conv.weight", "se.reduce.weight", "se.expand.weight", "project.conv.weight")


def _log_ch(ch: int, ch_max: int) -> float:
    return math.log2(ch) / math.log2(ch_max)


def node_features(arch: Arch, space: SearchSpace, n_classes: int, dims: dict) -> torch.Tensor:
    """``float32 [1 + n_blocks, n_features]``: one row per block of the chain (the fixed first
    block, then every active block in order): kernel and expand one-hot, stage one-hot (the
    first block has its own), position in the stage and the stage's depth (over the space's
    largest depth), first-in-stage, input resolution (over the space's largest), width
    multiplier, log in / out / hidden channels (over the largest of the space), stride 2,
    squeeze-excite, residual."""
    p = plan(arch, n_classes)
    md = space.max_depth
    ch_max = max(max(v[:3]) for k, v in dims.items() if isinstance(k, tuple))
    res_max = max(space.resolutions)
    rows = []

    def row(spec: BlockSpec, stage: int, pos: int, depth: int) -> list[float]:
        kern = [float(spec.kernel == k) for k in space.kernels]
        exp = [float(spec.expand == e) for e in space.expands]
        st = [float(stage == s) for s in range(-1, N_STAGES)]
        return (kern + exp + st + [pos / md, depth / md, float(pos == 0), spec.in_res / res_max,
                                   arch.width_mult - 1.0, _log_ch(spec.in_ch, ch_max), _log_ch(spec.out_ch, ch_max),
                                   _log_ch(spec.mid_ch, ch_max), float(spec.stride == 2), float(spec.se),
                                   float(spec.residual)])

    rows.append(row(p.first_block, -1, 0, 1))
    i = 0
    for s, stage in enumerate(arch.stages):
        for j in range(len(stage)):
            rows.append(row(p.blocks[i], s, j, len(stage)))
            i += 1
    return torch.tensor(rows, dtype=torch.float32)


def n_node_features(space: SearchSpace) -> int:
    return len(space.kernels) + len(space.expands) + (N_STAGES + 1) + 11


class _Decoder(nn.Module):
    """One block position's decoder: embedding -> multiplicative factors (1 + output) per
    hidden, input, output and squeeze-excite channel and per depthwise tap.  The last layer
    starts near zero (weights ~ N(0, 0.01^2), bias 0), so an untrained hypernetwork generates
    its templates almost unchanged while gradients already reach the embeddings."""

    def __init__(self, hidden: int, in_max: int, out_max: int, mid_max: int, se_max: int, k_max: int,
                 se: bool) -> None:
        super().__init__()
        self.sizes = OrderedDict([("mid_expand", mid_max), ("in_expand", in_max), ("mid_dw", mid_max),
                                  ("tap_dw", k_max * k_max), ("se", se_max if se else 0), ("mid_project", mid_max),
                                  ("out_project", out_max)])
        self.out = nn.Linear(hidden, sum(self.sizes.values()))
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.sizes, torch.split(1.0 + self.out(h), list(self.sizes.values()))))


class HyperNet(nn.Module):
    """A graph hypernetwork over the chain of blocks of an architecture of ``space``.

    Each block's description (:func:`node_features`) is embedded by a two-layer MLP, a
    bidirectional GRU runs over the chain (the first block, then every active block), and the
    decoder of the block's position (stage, index in stage) turns its GRU state into that
    block's weights at the largest shape of the position: each weight tensor is a learned
    template of that shape scaled by generated factors per output channel, per input channel
    and (depthwise) per kernel tap.  ``hidden`` is the embedding and GRU state width.

    ``forward(x, arch)`` runs ``arch`` on ``x`` (at the architecture's input size) with
    generated weights and batch statistics in every batch-norm layer (the module is kept in
    train mode); the whole path is differentiable in the hypernetwork's parameters.
    :meth:`subnet_state_dict` gives the generated subnet in the layout of
    :func:`~hwnas.builders.torch_model.build_torch` (for evaluation after batch-norm
    recalibration).
    """

    def __init__(self, space: SearchSpace = DEFAULT_SPACE, n_classes: int = 10, hidden: int = 32) -> None:
        super().__init__()
        if hidden < 2 or hidden % 2:
            raise ValueError(f"hidden must be an even number >= 2, got {hidden}")
        self.space = space
        self.n_classes = n_classes
        self.hidden = hidden
        self.template = Supernet(space, n_classes, kernel_mode="crop")
        self.template.train()
        dims = self.template.dims
        nf = n_node_features(space)
        self.embed = nn.Sequential(nn.Linear(nf, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.gru = nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True)
        k_max = max(space.kernels)
        self.decoders = nn.ModuleDict()
        for s in range(N_STAGES):
            for j in range(space.max_depth):
                i_max, o_max, m_max, se_max = dims[(s, j)]
                se = self.template.stages[s][j].se is not None
                self.decoders[f"s{s}b{j}"] = _Decoder(hidden, i_max, o_max, m_max, se_max, k_max, se)

    def train(self, mode: bool = True) -> "HyperNet":
        super().train(mode)
        self.template.train()  # batch statistics always: running statistics come from recalibration
        return self

    def _check(self, arch: Arch) -> None:
        try:
            self.space.validate(arch)
        except ValueError as e:
            raise InputError(f"architecture {arch} is outside the hypernetwork's space: {e}") from None

    def embeddings(self, arch: Arch) -> torch.Tensor:
        """``[1 + n_blocks, hidden]``: the GRU state of every block of the chain."""
        device = self.embed[0].weight.device
        x = self.embed(node_features(arch, self.space, self.n_classes, self.template.dims).to(device))
        h, _ = self.gru(x.unsqueeze(0))
        return h.squeeze(0)

    def generated_weights(self, arch: Arch) -> "OrderedDict[str, torch.Tensor]":
        """The generated weights of ``arch``'s active blocks at their positions' largest shapes,
        keyed by the template supernet's parameter names (``stages.<s>.<j>.<GENERATED>``)."""
        self._check(arch)
        h = self.embeddings(arch)
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        i = 1
        for s, stage in enumerate(arch.stages):
            for j in range(len(stage)):
                block = self.template.stages[s][j]
                g = self.decoders[f"s{s}b{j}"](h[i])
                pre = f"stages.{s}.{j}."
                w = block.expand.conv.weight
                out[pre + "expand.conv.weight"] = w * g["mid_expand"].view(-1, 1, 1, 1) * g["in_expand"].view(1, -1, 1, 1)
                w = block.dw.conv.weight
                taps = g["tap_dw"].view(1, 1, w.shape[2], w.shape[3])
                out[pre + "dw.conv.weight"] = w * g["mid_dw"].view(-1, 1, 1, 1) * taps
                if block.se is not None:
                    out[pre + "se.reduce.weight"] = block.se.reduce.weight * g["se"].view(-1, 1, 1, 1)
                    out[pre + "se.expand.weight"] = block.se.expand.weight * g["se"].view(1, -1, 1, 1)
                w = block.project.conv.weight
                out[pre + "project.conv.weight"] = (w * g["out_project"].view(-1, 1, 1, 1)
                                                    * g["mid_project"].view(1, -1, 1, 1))
                i += 1
        return out

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return torch.func.functional_call(self.template, self.generated_weights(arch), (x, arch), strict=False)

    @torch.no_grad()
    def subnet_state_dict(self, arch: Arch) -> "OrderedDict[str, torch.Tensor]":
        """``arch``'s generated weights in the layout of ``build_torch(arch, n_classes).state_dict()``
        (copies; the batch-norm running statistics are the template's, to be recalibrated)."""
        gen = self.generated_weights(arch)
        saved = {}
        try:
            for name, w in gen.items():
                p = self.template.get_parameter(name)
                saved[name] = p.detach().clone()
                p.copy_(w)
            return self.template.subnet_state_dict(arch)
        finally:
            for name, w in saved.items():
                self.template.get_parameter(name).copy_(w)

    def meta(self) -> dict:
        """What a checkpoint of this network must agree on to be loaded."""
        return {"space": self.space.to_dict(), "n_classes": self.n_classes, "hidden": self.hidden,
                "width_mults": list(self.space.width_mults)}


def extract_generated(net: HyperNet, arch: Arch):
    """A standalone :func:`~hwnas.builders.torch_model.build_torch` model holding ``arch``'s generated weights."""
    from ...builders.torch_model import build_torch

    model = build_torch(arch, net.n_classes)
    model.load_state_dict(net.subnet_state_dict(arch), strict=True)
    return model
