"""A vision-transformer search space (HAT / AutoFormer style), architectures as data.

A :class:`VitArch` is an immutable, hashable, validated value.  Its string form round-trips::

    vit_p16_r224_e192_h3m4-h4m3-h3m2-h4m4-h3m4-h4m4

Grammar (tokens separated by ``_``)::

    vit                      the space's tag (an mbv3 string starts with ``r``)
    p<patch>                 patch size in pixels (the patch-embedding conv's kernel = stride)
    r<resolution>            input resolution in pixels; tokens = (r / p)^2 + 1 (class token)
    e<embed>                 embedding dimension, shared by every layer (AutoFormer: one per net)
    <layer>(-<layer>)*       one entry per encoder layer; depth = the number of entries
    layer := h<heads>m<mlp>  attention heads and MLP ratio of that layer, e.g. h4m3

The network: patch-embedding conv, class token, learned position embedding, pre-LN encoder
layers (LayerNorm, fused QKV MatMul, per-head attention, projection, residual; LayerNorm,
MLP MatMul-GELU-MatMul, residual), final LayerNorm, class-token select, linear head.
:class:`VitSpace` holds the allowed choices; it samples (with a seeded generator it owns),
mutates, crosses over, encodes, and gives analytic MACs and params.  Its ONNX graphs are
built by :mod:`hwnas.spaces.vit_onnx`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

SPACE_NAME = "vit"
N_CLASSES = 1000

_INT = r"([0-9]+)\Z"
_PATCH_RE = re.compile(r"^p" + _INT)
_RES_RE = re.compile(r"^r" + _INT)
_EMBED_RE = re.compile(r"^e" + _INT)
_LAYER_RE = re.compile(r"^h([0-9]+)m([0-9]+)\Z")


@dataclass(frozen=True, order=True)
class VitLayer:
    """One encoder layer: attention ``heads`` and MLP ratio ``mlp`` (hidden = mlp x embed)."""

    heads: int
    mlp: int

    def __str__(self) -> str:
        return f"h{self.heads}m{self.mlp}"


@dataclass(frozen=True)
class VitArch:
    """One architecture of the vit space.  :meth:`parse` / ``str()`` convert to and from text."""

    patch: int
    resolution: int
    embed: int
    layers: tuple[VitLayer, ...]

    def __post_init__(self) -> None:
        for name in ("patch", "resolution", "embed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
            object.__setattr__(self, name, int(v))
        layers = tuple(x if isinstance(x, VitLayer) else VitLayer(*x) for x in self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            raise ValueError("a vit architecture needs at least one layer")
        if self.resolution % self.patch:
            raise ValueError(f"patch {self.patch} does not divide resolution {self.resolution}")
        for i, layer in enumerate(layers):
            if layer.heads <= 0 or layer.mlp <= 0:
                raise ValueError(f"layer {i + 1} ({layer}) needs positive heads and MLP ratio")
            if self.embed % layer.heads:
                raise ValueError(f"layer {i + 1}: {layer.heads} heads do not divide embed {self.embed}")

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def tokens(self) -> int:
        """Sequence length: patches plus the class token."""
        return (self.resolution // self.patch) ** 2 + 1

    def __str__(self) -> str:
        return f"vit_p{self.patch}_r{self.resolution}_e{self.embed}_" + "-".join(str(x) for x in self.layers)

    @classmethod
    def parse(cls, text: str) -> "VitArch":
        """Parse the string form; a bad string raises a one-line ``ValueError`` naming the problem."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty architecture string")
        tokens = text.strip().split("_")
        if tokens[0] != "vit":
            raise ValueError(f"{text!r} is not a vit architecture: it must start with 'vit_' "
                             "(like vit_p16_r224_e192_h3m4-h4m3)")
        if len(tokens) != 5:
            raise ValueError(f"vit architecture {text!r} has {len(tokens)} '_'-separated tokens; expected 5: "
                             "vit_p<patch>_r<res>_e<embed>_<layers like h3m4-h4m3>")
        vals = []
        for tok, rx, what in ((tokens[1], _PATCH_RE, "patch size like 'p16'"),
                              (tokens[2], _RES_RE, "resolution like 'r224'"),
                              (tokens[3], _EMBED_RE, "embed dim like 'e192'")):
            m = rx.match(tok)
            if not m:
                raise ValueError(f"bad token {tok!r} in {text!r}: expected {what}")
            vals.append(int(m.group(1)))
        layers = []
        for i, part in enumerate(tokens[4].split("-")):
            m = _LAYER_RE.match(part)
            if not m:
                raise ValueError(f"bad layer {part!r} (layer {i + 1}) in {text!r}: expected h<heads>m<mlp> like 'h3m4'")
            layers.append(VitLayer(int(m.group(1)), int(m.group(2))))
        try:
            return cls(vals[0], vals[1], vals[2], tuple(layers))
        except ValueError as e:
            raise ValueError(f"bad vit architecture {text!r}: {e}") from None


@dataclass(frozen=True)
class VitCost:
    macs: int
    params: int


def layer_macs(tokens: int, embed: int, mlp: int) -> int:
    """MACs of one encoder layer (MatMuls only, as :func:`hwnas.onnx_io.onnx_macs` counts):
    QKV, Q K^T, A V, projection, two MLP MatMuls."""
    t, e = tokens, embed
    return t * e * 3 * e + 2 * t * t * e + t * e * e + 2 * t * e * (mlp * e)


def layer_params(embed: int, mlp: int) -> int:
    e, h = embed, mlp * embed
    return 4 * e + (3 * e * e + 3 * e) + (e * e + e) + (e * h + h) + (h * e + e)


def stem_macs(patch: int, resolution: int, embed: int) -> int:
    return (resolution // patch) ** 2 * embed * 3 * patch * patch


def stem_params(patch: int, resolution: int, embed: int) -> int:
    tokens = (resolution // patch) ** 2 + 1
    return 3 * patch * patch * embed + embed + embed + tokens * embed  # conv, bias, class token, positions


def head_macs(embed: int, n_classes: int = N_CLASSES) -> int:
    return embed * n_classes


def head_params(embed: int, n_classes: int = N_CLASSES) -> int:
    return 2 * embed + embed * n_classes + n_classes


def vit_cost(arch: VitArch, n_classes: int = N_CLASSES) -> VitCost:
    """Analytic MACs and params (the MAC count matches ``onnx_macs`` of the built graph)."""
    macs = stem_macs(arch.patch, arch.resolution, arch.embed) + head_macs(arch.embed, n_classes)
    params = stem_params(arch.patch, arch.resolution, arch.embed) + head_params(arch.embed, n_classes)
    for x in arch.layers:
        macs += layer_macs(arch.tokens, arch.embed, x.mlp)
        params += layer_params(arch.embed, x.mlp)
    return VitCost(int(macs), int(params))


def _tuple(v: Sequence, name: str) -> tuple[int, ...]:
    t = tuple(int(x) for x in v)
    if not t or len(set(t)) != len(t) or any(x <= 0 for x in t):
        raise ValueError(f"{name} must be distinct positive ints, got {v!r}")
    return tuple(sorted(t))


@dataclass
class VitSpace:
    """The choices of the vit space and a seeded generator it owns (``seed``).

    Defaults: a tiny AutoFormer-like space sized so that its largest member runs in ~40 ms on one
    core here and latencies span ~4x (``benchmarks/vit_space.py``)."""

    patches: tuple[int, ...] = (16,)
    resolutions: tuple[int, ...] = (160, 192, 224)
    embeds: tuple[int, ...] = (192, 216, 240)
    heads: tuple[int, ...] = (3, 4, 6)
    mlp_ratios: tuple[int, ...] = (3, 4)
    depths: tuple[int, ...] = (5, 6, 7)
    seed: int = 0
    rng: np.random.Generator = field(init=False, repr=False, compare=False)

    name = SPACE_NAME

    def __post_init__(self) -> None:
        for f in ("patches", "resolutions", "embeds", "heads", "mlp_ratios", "depths"):
            setattr(self, f, _tuple(getattr(self, f), f))
        for p in self.patches:
            for r in self.resolutions:
                if r % p:
                    raise ValueError(f"patch {p} does not divide resolution {r}")
        for e in self.embeds:
            for h in self.heads:
                if e % h:
                    raise ValueError(f"{h} heads do not divide embed {e}")
        self.rng = np.random.default_rng(self.seed)

    # -- membership ------------------------------------------------------------------------------
    def validate(self, arch: VitArch) -> VitArch:
        """``arch`` if every choice lies in the space, else a one-line ValueError naming the first that does not."""
        for what, v, allowed in (("patch", arch.patch, self.patches), ("resolution", arch.resolution, self.resolutions),
                                 ("embed", arch.embed, self.embeds), ("depth", arch.depth, self.depths)):
            if v not in allowed:
                raise ValueError(f"{what} {v} is not in the vit space's {list(allowed)}")
        for i, x in enumerate(arch.layers):
            if x.heads not in self.heads:
                raise ValueError(f"layer {i + 1}: heads {x.heads} not in the vit space's {list(self.heads)}")
            if x.mlp not in self.mlp_ratios:
                raise ValueError(f"layer {i + 1}: mlp ratio {x.mlp} not in the vit space's {list(self.mlp_ratios)}")
        return arch

    def parse(self, text: str) -> VitArch:
        """Parse and validate; a one-line ValueError names the string and the choice outside the space."""
        a = VitArch.parse(text)
        try:
            return self.validate(a)
        except ValueError as e:
            raise ValueError(f"{text!r} is outside the vit space: {e}") from None

    def contains(self, arch: VitArch) -> bool:
        try:
            self.validate(arch)
            return True
        except ValueError:
            return False

    # -- sampling and variation ------------------------------------------------------------------
    def _gen(self, rng: np.random.Generator | None) -> np.random.Generator:
        return self.rng if rng is None else rng

    def _layer(self, rng: np.random.Generator) -> VitLayer:
        return VitLayer(int(rng.choice(self.heads)), int(rng.choice(self.mlp_ratios)))

    def sample(self, rng: np.random.Generator | None = None) -> VitArch:
        """One uniform architecture (the space's own generator unless ``rng`` is given)."""
        g = self._gen(rng)
        depth = int(g.choice(self.depths))
        return VitArch(int(g.choice(self.patches)), int(g.choice(self.resolutions)), int(g.choice(self.embeds)),
                       tuple(self._layer(g) for _ in range(depth)))

    def sample_many(self, n: int, seed: int | None = None, unique: bool = True) -> list[VitArch]:
        """``n`` architectures from a generator seeded with ``seed`` (the space's own if None)."""
        g = self.rng if seed is None else np.random.default_rng(seed)
        out: list[VitArch] = []
        seen: set[VitArch] = set()
        for _ in range(100 * n + 1000):
            if len(out) == n:
                break
            a = self.sample(g)
            if unique and a in seen:
                continue
            seen.add(a)
            out.append(a)
        if len(out) < n:
            raise ValueError(f"could not draw {n} unique architectures from the vit space")
        return out

    def mutate(self, arch: VitArch, rng: np.random.Generator | None = None, prob: float = 0.2) -> VitArch:
        """Resample each choice with probability ``prob`` (depth: add or drop layers at the end)."""
        g = self._gen(rng)
        pick = lambda cur, choices: int(g.choice(choices)) if g.random() < prob else cur  # noqa: E731
        layers = [VitLayer(pick(x.heads, self.heads), pick(x.mlp, self.mlp_ratios)) for x in arch.layers]
        depth = pick(arch.depth, self.depths)
        while len(layers) < depth:
            layers.append(self._layer(g))
        return VitArch(pick(arch.patch, self.patches), pick(arch.resolution, self.resolutions),
                       pick(arch.embed, self.embeds), tuple(layers[:depth]))

    def crossover(self, a: VitArch, b: VitArch, rng: np.random.Generator | None = None) -> VitArch:
        """Each choice from one parent at random; layer i from either parent that has it."""
        g = self._gen(rng)
        pick = lambda x, y: x if g.random() < 0.5 else y  # noqa: E731
        depth = pick(a.depth, b.depth)
        layers = []
        for i in range(depth):
            have = [p.layers[i] for p in (a, b) if i < p.depth]
            layers.append(have[0] if len(have) == 1 else pick(*have))
        return VitArch(pick(a.patch, b.patch), pick(a.resolution, b.resolution), pick(a.embed, b.embed), tuple(layers))

    # -- extremes, size ---------------------------------------------------------------------------
    def smallest(self) -> VitArch:
        return VitArch(max(self.patches), min(self.resolutions), min(self.embeds),
                       (VitLayer(min(self.heads), min(self.mlp_ratios)),) * min(self.depths))

    def largest(self) -> VitArch:
        return VitArch(min(self.patches), max(self.resolutions), max(self.embeds),
                       (VitLayer(max(self.heads), max(self.mlp_ratios)),) * max(self.depths))

    @property
    def size(self) -> int:
        per_layer = len(self.heads) * len(self.mlp_ratios)
        return len(self.patches) * len(self.resolutions) * len(self.embeds) * sum(per_layer ** d for d in self.depths)

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    # -- the block lookup table's keys ------------------------------------------------------------
    def token_counts(self) -> list[tuple[int, int, int]]:
        """(patch, resolution, tokens) for every patch / resolution pair."""
        return [(p, r, (r // p) ** 2 + 1) for p in self.patches for r in self.resolutions]

    # -- encoding for learned predictors ----------------------------------------------------------
    _GLOBAL_FEATURES = ("patch", "resolution", "tokens", "embed", "depth", "mean_heads", "mean_mlp", "log_macs",
                        "log_linear_macs", "log_attention_macs", "log_softmax_elems", "log_mlp_hidden_elems")

    def feature_names(self) -> list[str]:
        names = list(self._GLOBAL_FEATURES)
        for i in range(self.max_depth):
            names += [f"l{i}_heads", f"l{i}_mlp"]
        return names

    def encode(self, archs: Sequence[VitArch]) -> np.ndarray:
        """One row per architecture: global choices, means, log MACs and per-op-group sizes (linear-layer
        MACs, attention MACs, softmax elements, MLP hidden elements), then per-layer (heads, mlp), 0 when absent."""
        g = len(self._GLOBAL_FEATURES)
        X = np.zeros((len(archs), len(self.feature_names())))
        for n, a in enumerate(archs):
            t, e = a.tokens, a.embed
            linear = sum(t * e * e * (4 + 2 * x.mlp) for x in a.layers)
            X[n, :g] = [a.patch, a.resolution, t, e, a.depth,
                        np.mean([x.heads for x in a.layers]), np.mean([x.mlp for x in a.layers]),
                        np.log(vit_cost(a).macs), np.log(linear), np.log(2 * t * t * e * a.depth),
                        np.log(sum(x.heads for x in a.layers) * t * t), np.log(sum(x.mlp for x in a.layers) * t * e)]
            for i, x in enumerate(a.layers[: self.max_depth]):
                X[n, g + 2 * i: g + 2 + 2 * i] = (x.heads, x.mlp)
        return X

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": SPACE_NAME, "patches": list(self.patches), "resolutions": list(self.resolutions),
                "embeds": list(self.embeds), "heads": list(self.heads), "mlp_ratios": list(self.mlp_ratios),
                "depths": list(self.depths)}

    @classmethod
    def from_dict(cls, d: dict, seed: int = 0) -> "VitSpace":
        if d.get("name") != SPACE_NAME:
            raise ValueError(f"not a vit space description (name {d.get('name')!r})")
        return cls(**{k: tuple(d[k]) for k in ("patches", "resolutions", "embeds", "heads", "mlp_ratios", "depths")},
                   seed=seed)


__all__ = ["SPACE_NAME", "VitArch", "VitLayer", "VitSpace", "VitCost", "vit_cost", "layer_macs"]
