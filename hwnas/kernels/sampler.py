"""Seeded samplers of realistic kernel specs: CNN shapes, transformer (token) shapes, and the
``lrn`` kernels of older CNNs."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .spec import EXTRA_OPS, FUSED_ACT_CONV_OPS, OPS, TOKEN_OPS, KernelSpec


DEFAULT_OP_WEIGHTS: dict[str, float] = {
    "conv": 0.12, "dwconv": 0.11, "pwconv": 0.14, "gconv": 0.04, "gemm": 0.04,
    "maxpool": 0.03, "avgpool": 0.02, "globalavgpool": 0.03,
    "relu": 0.03, "hswish": 0.03, "sigmoid": 0.02, "swish": 0.02, "hsigmoid": 0.02,
    "add": 0.04, "mul": 0.02, "mul_bcast": 0.03, "concat": 0.03, "reshape_transpose": 0.02,
    "batchnorm": 0.03, "conv_relu": 0.08, "conv_hswish": 0.06, "conv_add": 0.05,
}  # fmt: skip
"""Relative draw weights of the op types (convolutions most common)."""

# Stage levels: level L runs at about image_res / 2**L with channels in [lo, hi].  Level 0 is the
# stem (3-channel image, dense convs only).  Big spatial pairs with few channels, small with many.
_LEVEL_CHANNELS: dict[int, tuple[int, int]] = {1: (8, 96), 2: (16, 256), 3: (24, 512), 4: (48, 1024), 5: (64, 1024)}
_LEVEL_WEIGHTS = (0.15, 0.25, 0.25, 0.2, 0.15)  # levels 1..5
_IMAGE_RES = (128, 160, 192, 224, 256, 288, 320)
_IMAGE_RES_WEIGHTS = (0.12, 0.14, 0.16, 0.3, 0.1, 0.08, 0.1)
_STEM_OPS = ("conv", "conv_relu", "conv_hswish")
MIN_RES, MAX_RES = 7, 224
MIN_CH, MAX_CH = 8, 1024


def _weighted(rng: np.random.Generator, values: Sequence[Any], weights: Sequence[float]) -> Any:
    p = np.asarray(weights, dtype=np.float64)
    return values[int(rng.choice(len(values), p=p / p.sum()))]


class KernelSampler:
    """Seeded sampler of realistic kernel specs; owns its ``numpy.random.Generator``.

    Each draw picks an op type (``op_weights``), then a stage level (image resolution
    ``/ 2**L``) and channels consistent with that level, so shapes look like real CNN layers:
    spatial 7-224 px, channels 8-1024 (multiples of 8 with probability ``p_mult8``), kernels
    1/3/5/7, strides 1-2, groups from 1 to C; gemm with 64-4096 in and 10-4096 out features.
    Draws whose MACs exceed ``max_macs`` or whose largest tensor exceeds ``max_elements``
    values are rejected (400 M MACs runs in roughly 20 ms on one thread).

    Successive :meth:`sample` calls continue one stream and never repeat a spec, so
    ``sample(10) + sample(10)`` equals ``sample(20)`` of a fresh sampler with the same seed.
    """

    #: the ops this sampler draws
    OP_SET: tuple[str, ...] = tuple(op for op in OPS if op not in TOKEN_OPS + EXTRA_OPS)

    def __init__(
        self,
        seed: int = 0,
        *,
        op_weights: dict[str, float] | None = None,
        batches: Sequence[int] = (1,),
        max_macs: int = 400_000_000,
        max_elements: int = 4_000_000,
        p_mult8: float = 0.85,
    ) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        weights = dict(DEFAULT_OP_WEIGHTS if op_weights is None else op_weights)
        unknown = set(weights) - set(self.OP_SET)
        if unknown:
            raise ValueError(f"kernel ops {', '.join(sorted(unknown))} are not drawn by {type(self).__name__}; "
                             f"expected some of {', '.join(self.OP_SET)}")
        self.ops = tuple(op for op in self.OP_SET if weights.get(op, 0) > 0)
        if not self.ops:
            raise ValueError("op_weights gives no op a positive weight")
        self.op_weights = tuple(float(weights[op]) for op in self.ops)
        if not batches or any(int(b) < 1 for b in batches):
            raise ValueError(f"batches must be positive ints, got {list(batches)}")
        self.batches = tuple(int(b) for b in batches)
        self.max_macs = int(max_macs)
        self.max_elements = int(max_elements)
        self.p_mult8 = float(p_mult8)
        self._seen: set[KernelSpec] = set()

    # -- drawing helpers ----------------------------------------------------------------------
    def _channels(self, lo: float, hi: float) -> int:
        """Log-uniform channel count in [lo, hi], a multiple of 8 with probability p_mult8."""
        lo, hi = max(lo, MIN_CH), min(hi, MAX_CH)
        v = math.exp(self.rng.uniform(math.log(lo), math.log(hi)))
        if self.rng.random() < self.p_mult8:
            c = int(round(v / 8)) * 8
        else:
            c = int(round(v))
        return int(min(max(c, MIN_CH), MAX_CH))

    def _level_res(self, level: int) -> int:
        image = _weighted(self.rng, _IMAGE_RES, _IMAGE_RES_WEIGHTS)
        if level == 0:
            image = min(image, MAX_RES)
        return int(min(max(math.ceil(image / 2**level), MIN_RES), MAX_RES))

    def _out_like(self, c: int, lo: int, hi: int) -> int:
        """An output channel count related to ``c`` by a typical ratio (expand/project/widen)."""
        ratio = _weighted(self.rng, (1 / 6, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 6.0), (1, 2, 3, 4, 3, 2, 1))
        v = c * ratio
        c_out = int(round(v / 8)) * 8 if self.rng.random() < self.p_mult8 else int(round(v))
        return int(min(max(c_out, max(lo // 2, MIN_CH)), MAX_CH))

    def _stride(self, p2: float = 0.25) -> int:
        return 2 if self.rng.random() < p2 else 1

    def _draw(self) -> KernelSpec | None:
        """One candidate spec, or None when the drawn shape does not fit the op."""
        rng = self.rng
        op = _weighted(rng, self.ops, self.op_weights)
        batch = int(rng.choice(self.batches))
        if op == "gemm":
            fin = self._gemm_features(64, 4096)
            fout = (
                int(rng.choice((10, 100, 1000, 1001)))
                if rng.random() < 0.25
                else self._gemm_features(10, 4096)
            )
            return KernelSpec("gemm", batch=batch, in_ch=fin, out_ch=fout)
        if op in _STEM_OPS and rng.random() < 0.1:
            res = self._level_res(0)
            kernel = _weighted(rng, (3, 5, 7), (0.7, 0.1, 0.2))
            return KernelSpec(op, batch=batch, in_ch=3, out_ch=self._channels(8, 64), res=res,
                              kernel=kernel, stride=self._stride(0.85))
        level = _weighted(rng, (1, 2, 3, 4, 5), _LEVEL_WEIGHTS)
        lo, hi = _LEVEL_CHANNELS[level]
        res = self._level_res(level)
        c = self._channels(lo, hi)
        common = dict(batch=batch, in_ch=c, res=res)
        if op == "conv":
            kernel = _weighted(rng, (1, 3, 5, 7), (0.1, 0.7, 0.1, 0.1))
            return KernelSpec(op, out_ch=self._out_like(c, lo, hi), kernel=kernel, stride=self._stride(), **common)
        if op == "pwconv":
            return KernelSpec(op, out_ch=self._out_like(c, lo, hi), stride=self._stride(0.1), **common)
        if op == "dwconv":
            kernel = _weighted(rng, (3, 5, 7), (0.5, 0.3, 0.2))
            return KernelSpec(op, kernel=kernel, stride=self._stride(), **common)
        if op == "gconv":
            out = self._out_like(c, lo, hi)
            groups = self._divisor_groups(c, out)
            if groups is None:
                return None
            kernel = _weighted(rng, (1, 3), (0.4, 0.6))
            return KernelSpec(op, out_ch=out, kernel=kernel, stride=self._stride(), groups=groups, **common)
        if op in ("conv_relu", "conv_hswish", "conv_add"):
            depthwise = rng.random() < 0.4
            kernel = _weighted(rng, (3, 5, 7), (0.5, 0.3, 0.2)) if depthwise else _weighted(
                rng, (1, 3, 5, 7), (0.45, 0.45, 0.05, 0.05)
            )
            if op == "conv_add":
                return KernelSpec(op, kernel=kernel, groups=c if depthwise else 1, **common)
            if depthwise:
                return KernelSpec(op, out_ch=c, kernel=kernel, groups=c, stride=self._stride(), **common)
            return KernelSpec(op, out_ch=self._out_like(c, lo, hi), kernel=kernel, stride=self._stride(), **common)
        if op == "maxpool":
            kernel, stride = _weighted(rng, ((3, 2), (2, 2), (3, 1), (5, 1)), (0.5, 0.3, 0.1, 0.1))
            return KernelSpec(op, kernel=kernel, stride=stride, **common)
        if op == "avgpool":
            kernel, stride = _weighted(rng, ((2, 2), (3, 1), (3, 2)), (0.4, 0.4, 0.2))
            return KernelSpec(op, kernel=kernel, stride=stride, **common)
        if op == "concat":
            n = _weighted(rng, (2, 3, 4), (0.6, 0.2, 0.2))
            common["in_ch"] = self._channels(lo // n, hi // n)
            return KernelSpec(op, n_inputs=n, **common)
        if op == "reshape_transpose":
            cands = [g for g in (2, 3, 4, 8) if c % g == 0 and g < c]
            if not cands:
                return None
            return KernelSpec(op, groups=int(rng.choice(cands)), **common)
        return KernelSpec(op, **common)  # activations, add, mul, mul_bcast, batchnorm, globalavgpool

    def _gemm_features(self, lo: int, hi: int) -> int:
        v = math.exp(self.rng.uniform(math.log(lo), math.log(hi)))
        f = round(v / 8) * 8 if self.rng.random() < self.p_mult8 else round(v)
        return int(min(max(f, lo), hi))

    def _divisor_groups(self, c: int, out: int) -> int | None:
        """Groups of a grouped conv: ShuffleNet-style counts or RegNet/ResNeXt group widths."""
        cands = {g for g in (2, 3, 4, 8, 16, 32, 64)}
        cands |= {c // w for w in (8, 16, 32, 64) if c % w == 0}
        ok = sorted(g for g in cands if 1 < g < c and c % g == 0 and out % g == 0)
        return int(self.rng.choice(ok)) if ok else None

    def _fits(self, spec: KernelSpec) -> bool:
        biggest = max(math.prod(spec.input_shape) * spec.n_inputs, math.prod(spec.output_shape))
        return spec.macs <= self.max_macs and biggest <= self.max_elements

    # -- public -------------------------------------------------------------------------------
    def sample(self, n: int) -> list[KernelSpec]:
        """``n`` new specs, none repeating any spec this sampler has returned before."""
        out: list[KernelSpec] = []
        attempts = 0
        while len(out) < n:
            attempts += 1
            if attempts > 200 * n + 1000:
                raise ValueError(f"could not draw {n} new unique kernels (op weights or caps too narrow)")
            spec = self._draw()
            if spec is None or spec in self._seen or not self._fits(spec):
                continue
            self._seen.add(spec)
            out.append(spec)
        return out


DEFAULT_TOKEN_OP_WEIGHTS: dict[str, float] = {
    "linear": 0.34, "gelu": 0.08, "layernorm": 0.1, "add_layernorm": 0.08, "softmax": 0.12, "attn_qk": 0.14,
    "attn_av": 0.14,
}  # fmt: skip
"""Relative draw weights of the token ops (the MLP and QKV projections dominate a transformer)."""

_EMBED = (64, 1024)  # features per token
_TOKENS = (16, 1024)  # sequence length / image patches
_CONV_TOKENS = (49, 196, 784, 3136)  # ConvNeXt's channels-last MLP: 7x7 .. 56x56 positions
_HEAD_DIMS = (16, 32, 48, 64, 96, 128)


class TokenKernelSampler(KernelSampler):
    """Seeded sampler of transformer-shaped token kernels (:data:`~hwnas.kernels.spec.TOKEN_OPS`).

    Shapes from real ranges: embedding 64-1024 features, 16-1024 tokens (and ConvNeXt's
    7x7-56x56 positions for ``linear``), heads 1-16 of dimension 16-128, MLP ratio 2-4.  Same
    stream and de-duplication rules as :class:`KernelSampler`, under its own op weights; a
    different seed offset keeps its stream independent of the CNN sampler's."""

    OP_SET = TOKEN_OPS

    def __init__(self, seed: int = 0, *, op_weights: dict[str, float] | None = None, **kw: Any) -> None:
        super().__init__(seed, op_weights=dict(DEFAULT_TOKEN_OP_WEIGHTS if op_weights is None else op_weights), **kw)
        self.rng = np.random.default_rng((seed, 0x70CE))

    def _log_uniform(self, lo: int, hi: int, mult: int = 8) -> int:
        v = math.exp(self.rng.uniform(math.log(lo), math.log(hi)))
        if self.rng.random() < self.p_mult8:
            v = round(v / mult) * mult
        return int(min(max(round(v), lo), hi))

    def _draw(self) -> KernelSpec | None:
        rng = self.rng
        op = _weighted(rng, self.ops, self.op_weights)
        batch = int(rng.choice(self.batches))
        tokens = self._log_uniform(*_TOKENS, mult=1)
        if rng.random() < 0.3:  # patch grids: a square number of tokens, often plus a class token
            side = max(2, round(math.sqrt(tokens)))
            tokens = side * side + int(rng.random() < 0.5)
        if op in ("softmax", "attn_qk", "attn_av"):
            heads = int(_weighted(rng, (1, 2, 3, 4, 6, 8, 12, 16), (1, 2, 3, 3, 3, 3, 2, 1)))
            d = int(_weighted(rng, _HEAD_DIMS, (1, 3, 1, 4, 1, 1)))
            if op == "softmax":
                return KernelSpec(op, batch=batch, in_ch=tokens, res=tokens, groups=heads)
            if op == "attn_qk":
                return KernelSpec(op, batch=batch, in_ch=d, res=tokens, groups=heads)
            return KernelSpec(op, batch=batch, in_ch=tokens, out_ch=min(d, tokens), res=tokens, groups=heads)
        c = self._log_uniform(*_EMBED)
        if op == "linear":
            if rng.random() < 0.25:
                tokens = int(rng.choice(_CONV_TOKENS))
            ratio = _weighted(rng, (1 / 4, 1 / 3, 1 / 2, 1.0, 2.0, 3.0, 4.0), (2, 1, 1, 3, 1, 1, 3))
            out = int(min(max(round(c * ratio / 8) * 8, 8), 4096))
            return KernelSpec(op, batch=batch, in_ch=c, out_ch=out, res=tokens)
        if op in ("gelu", "layernorm") and rng.random() < 0.25:
            tokens = int(rng.choice(_CONV_TOKENS))
        if op == "gelu":  # after the MLP's expansion
            c = int(min(c * _weighted(rng, (2, 3, 4), (1, 1, 2)), 4096))
        return KernelSpec(op, batch=batch, in_ch=c, res=tokens)


_LRN_RES = (13, 27, 28, 55, 56)  # AlexNet / CaffeNet / ZFNet (55, 27, 13 px), GoogLeNet (56, 28 px)


class _OneOpSampler(KernelSampler):
    """A sampler of one extra op (:data:`~hwnas.kernels.spec.EXTRA_OPS`) on a stream of its own,
    seeded by ``(seed, SEED_TAG)`` so that it leaves every other sampler's stream as it was."""

    SEED_TAG = 0

    def __init__(self, seed: int = 0, *, op_weights: dict[str, float] | None = None, **kw: Any) -> None:
        super().__init__(seed, op_weights={self.OP_SET[0]: 1.0} if op_weights is None else op_weights, **kw)
        self.rng = np.random.default_rng((seed, self.SEED_TAG))


class LrnKernelSampler(_OneOpSampler):
    """Seeded sampler of ``lrn`` kernels (LocalResponseNormalization) in the shapes older CNNs
    run it at: channels 16-512 (AlexNet 96 and 256, GoogLeNet 64 and 192), spatial 7-112 px
    (log-uniform, or with probability 0.3 one of AlexNet's / GoogLeNet's sizes), LRN size 5
    (AlexNet, GoogLeNet) or 3.  Same stream and de-duplication rules as :class:`KernelSampler`;
    its own seed offset keeps its stream independent of the other samplers'."""

    OP_SET = ("lrn",)
    SEED_TAG = 0x14E

    def _draw(self) -> KernelSpec | None:
        rng = self.rng
        batch = int(rng.choice(self.batches))
        if rng.random() < 0.3:
            res = int(rng.choice(_LRN_RES))
        else:
            res = int(round(math.exp(rng.uniform(math.log(7), math.log(112)))))
        size = int(_weighted(rng, (3, 5), (0.3, 0.7)))
        return KernelSpec("lrn", batch=batch, in_ch=self._channels(16, 512), res=res, kernel=size)


_PATCH_STEM = (4, 8, 14, 16, 32)  # ConvNeXt / Swin 4 px; ViT / DeiT 16 (8, 14, 32 in their variants)
_PATCH_STEM_WEIGHTS = (0.3, 0.1, 0.1, 0.35, 0.15)
_PATCH_IMAGE_RES = (96, 112, 128, 160, 192, 224, 256, 288, 320, 384)
_PATCH_STAGE_RES = (7, 8, 14, 16, 28, 32, 56, 64, 112)  # where a 2 px downsampling runs (its input)


class PatchKernelSampler(_OneOpSampler):
    """Seeded sampler of ``patch_conv`` kernels: convolutions over non-overlapping patches
    (``stride == kernel``, no padding), which the CNN sampler's odd, padded kernels never cover.

    Half are stems from RGB: ViT / DeiT patch embeddings (16 px, also 8, 14, 32) at images of
    96-384 px into 64-1024 features, and ConvNeXt / Swin's 4 px stem into 24-192 channels; half
    are the 2 px (sometimes 4 px) downsampling between stages (ConvNeXt, Swin's patch merging
    as a convolution, hybrids): 16-768 channels in, usually doubled, at 7-112 px.  Same stream
    and de-duplication rules as :class:`KernelSampler`; its own seed offset keeps its stream
    independent of the other samplers'."""

    OP_SET = ("patch_conv",)
    SEED_TAG = 0x9A7C

    def _draw(self) -> KernelSpec | None:
        rng = self.rng
        batch = int(rng.choice(self.batches))
        if rng.random() < 0.5:  # a stem from RGB
            patch = int(_weighted(rng, _PATCH_STEM, _PATCH_STEM_WEIGHTS))
            res = int(rng.choice(_PATCH_IMAGE_RES))
            out = self._channels(24, 192) if patch == 4 else self._channels(64, 1024)
            return KernelSpec("patch_conv", batch=batch, in_ch=3, out_ch=out, res=res, kernel=patch)
        patch = int(_weighted(rng, (2, 4), (0.85, 0.15)))
        res = int(rng.choice(_PATCH_STAGE_RES))
        if res < patch:
            return None
        c = self._channels(16, 768)
        ratio = _weighted(rng, (1.0, 2.0), (0.25, 0.75))
        out = int(min(max(round(c * ratio / 8) * 8, 8), MAX_CH))
        return KernelSpec("patch_conv", batch=batch, in_ch=c, out_ch=out, res=res, kernel=patch)


_FC_IN = (4096, 9216, 12544, 18432, 25088)  # VGG / AlexNet flattened features (512x7x7, 256x6x6, ...), fc7's 4096
_FC_OUT = (4096, 2048, 1000, 1024, 512)


class FcKernelSampler(_OneOpSampler):
    """Seeded sampler of the large ``gemm`` kernels of classic classifier heads (AlexNet's 9216 -> 4096,
    VGG's 25088 -> 4096, then 4096 -> 4096 / 1000): weight matrices of 10-400 MB that stream from
    memory, beyond the CNN sampler's 64-4096 features.  Half from those sizes, half log-uniform in
    4096-25088 in and 512-4096 out features.  Same stream and de-duplication rules as
    :class:`KernelSampler`; its own seed offset keeps its stream independent of the other samplers'."""

    OP_SET = ("gemm",)
    SEED_TAG = 0xFC

    def _draw(self) -> KernelSpec | None:
        rng = self.rng
        batch = int(rng.choice(self.batches))
        if rng.random() < 0.5:
            fin, fout = int(rng.choice(_FC_IN)), int(rng.choice(_FC_OUT))
        else:
            fin = int(round(math.exp(rng.uniform(math.log(4096), math.log(25088))) / 8) * 8)
            fout = int(round(math.exp(rng.uniform(math.log(512), math.log(4096))) / 8) * 8)
        return KernelSpec("gemm", batch=batch, in_ch=fin, out_ch=fout)


_ATTN_HEADS = (1, 2, 3, 4, 6, 8, 12, 16)
_ATTN_HEAD_WEIGHTS = (1, 2, 3, 3, 3, 3, 2, 1)


class AttentionKernelSampler(_OneOpSampler):
    """Seeded sampler of fused self-attention kernels, ``attention`` (ORT's ``Attention``: Q/K/V
    projection and attention in one kernel) and ``mha`` (``MultiHeadAttention`` on projected
    Q, K, V), half each: 16-1024 tokens (log-uniform, or with probability 0.3 a square patch grid,
    often plus a class token), 1-16 heads of 32-128 features, embedding 64-1024.  Up to 2 G MACs
    (a ViT-B layer's attention at 197 tokens is 0.4 G), beyond the CNN sampler's 400 M.  Same
    stream and de-duplication rules as :class:`KernelSampler`; its own seed offset keeps its
    stream independent of the other samplers'."""

    OP_SET = ("attention", "mha")
    SEED_TAG = 0xA77E

    def __init__(self, seed: int = 0, *, op_weights: dict[str, float] | None = None, max_macs: int = 2_000_000_000,
                 **kw: Any) -> None:
        super().__init__(seed, op_weights={"attention": 1.0, "mha": 1.0} if op_weights is None else op_weights,
                         max_macs=max_macs, **kw)

    def _draw(self) -> KernelSpec | None:
        rng = self.rng
        op = _weighted(rng, self.ops, self.op_weights)
        batch = int(rng.choice(self.batches))
        tokens = int(round(math.exp(rng.uniform(math.log(_TOKENS[0]), math.log(_TOKENS[1])))))
        if rng.random() < 0.3:  # patch grids: a square number of tokens, often plus a class token
            side = max(2, round(math.sqrt(tokens)))
            tokens = side * side + int(rng.random() < 0.5)
        heads = int(_weighted(rng, _ATTN_HEADS, _ATTN_HEAD_WEIGHTS))
        d = int(_weighted(rng, (32, 48, 64, 96, 128), (3, 1, 4, 1, 1)))
        c = heads * d
        if not _EMBED[0] <= c <= _EMBED[1]:
            return None
        return KernelSpec(op, batch=batch, in_ch=c, res=tokens, groups=heads)


class FusedActKernelSampler(_OneOpSampler):
    """Seeded sampler of convolutions with an activation ORT fuses into them beyond Relu / HardSwish
    (:data:`~hwnas.kernels.spec.FUSED_ACT_CONV_OPS`): mostly ReLU6 (``conv_relu6``: MobileNetV2's
    and its descendants' every expand and depthwise convolution), then LeakyReLU and Sigmoid.  Half
    depthwise (3x3 / 5x5 / 7x7, stride 1 or 2: where the activation's own pass over the output
    costs most), the rest pointwise expansions and projections (up to 6x the input channels) and
    dense 3x3 convolutions, some of them stems from RGB; stage shapes as :class:`KernelSampler`
    draws them.  Its own seed offset keeps its stream independent of the other samplers'."""

    OP_SET = FUSED_ACT_CONV_OPS
    SEED_TAG = 0xAC7

    def __init__(self, seed: int = 0, *, op_weights: dict[str, float] | None = None, **kw: Any) -> None:
        weights = {"conv_relu6": 0.6, "conv_lrelu": 0.2, "conv_sigmoid": 0.2} if op_weights is None else op_weights
        super().__init__(seed, op_weights=weights, **kw)

    def _draw(self) -> KernelSpec | None:
        rng = self.rng
        op = _weighted(rng, self.ops, self.op_weights)
        batch = int(rng.choice(self.batches))
        if rng.random() < 0.08:  # a stem from RGB, 3x3 stride 2 as MobileNetV2's
            return KernelSpec(op, batch=batch, in_ch=3, out_ch=self._channels(16, 64), res=self._level_res(0),
                              kernel=3, stride=self._stride(0.85))
        level = _weighted(rng, (1, 2, 3, 4, 5), _LEVEL_WEIGHTS)
        lo, hi = _LEVEL_CHANNELS[level]
        c = self._channels(lo, hi)
        common = dict(batch=batch, in_ch=c, res=self._level_res(level))
        shape = rng.random()
        if shape < 0.5:  # depthwise
            kernel = _weighted(rng, (3, 5, 7), (0.6, 0.3, 0.1))
            return KernelSpec(op, out_ch=c, kernel=kernel, groups=c, stride=self._stride(), **common)
        if shape < 0.85:  # pointwise: an inverted residual's expansion (to 3-6x) or its projection
            expand = _weighted(rng, (1.0, 3.0, 4.0, 6.0), (0.3, 0.2, 0.15, 0.35))
            out = (int(min(max(round(c * expand / 8) * 8, 8), MAX_CH)) if rng.random() < 0.6
                   else self._out_like(c, lo, hi))
            return KernelSpec(op, out_ch=out, kernel=1, **common)
        return KernelSpec(op, out_ch=self._out_like(c, lo, hi), kernel=3, stride=self._stride(), **common)
