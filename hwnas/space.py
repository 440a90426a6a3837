"""The search space: a MobileNetV3 / Once-for-All style space, architectures as data.

An :class:`Arch` is an immutable, hashable, validated value.  Its string form is compact and
round-trips exactly::

    r224_w1.0_k3e4-k5e6_k7e3-k3e3-k5e4_k3e6-k3e6_k5e4-k5e4-k7e3-k3e3_k3e3-k5e6

Grammar (tokens separated by ``_``)::

    r<resolution>            input resolution in pixels, e.g. r224
    w<width>                 width multiplier, e.g. w1.0 or w1.2
    <block>(-<block>)*       one token per elastic stage (five of them), one block per entry
    block := k<kernel>e<expand>   depthwise kernel size and expand ratio, e.g. k5e6

The depth of a stage is the number of blocks in its token.  :class:`SearchSpace` holds the
allowed choices; it samples, mutates, crosses over, enumerates and encodes architectures.
Decoding an architecture into concrete layers lives in :mod:`hwnas.layers`; building torch
modules and ONNX graphs lives in :mod:`hwnas.builders`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

N_STAGES = 5

# ASCII digits only (``\d`` would take any Unicode digit, e.g. a fullwidth ``３``), whole token
# (``$`` would let a trailing newline through)
_RES_RE = re.compile(r"^r([0-9]+)\Z")
_WIDTH_RE = re.compile(r"^w([0-9]+(?:\.[0-9]+)?)\Z")
_BLOCK_RE = re.compile(r"^k([0-9]+)e([0-9]+)\Z")


@dataclass(frozen=True, order=True)
class Block:
    """One elastic MBConv block: depthwise ``kernel`` size and ``expand`` ratio."""

    kernel: int
    expand: int

    def __str__(self) -> str:
        return f"k{self.kernel}e{self.expand}"


@dataclass(frozen=True)
class Arch:
    """One architecture of the space.  Use :meth:`parse` / ``str()`` to convert to text."""

    resolution: int
    width_mult: float
    stages: tuple[tuple[Block, ...], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.resolution, (int, np.integer)) or isinstance(self.resolution, bool):
            raise ValueError(f"resolution must be an int, got {self.resolution!r}")
        object.__setattr__(self, "resolution", int(self.resolution))
        object.__setattr__(self, "width_mult", float(self.width_mult))
        stages = tuple(tuple(b if isinstance(b, Block) else Block(*b) for b in s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if len(stages) != N_STAGES:
            raise ValueError(f"an architecture has {N_STAGES} stages, got {len(stages)}")
        for i, s in enumerate(stages):
            if len(s) == 0:
                raise ValueError(f"stage {i + 1} has no blocks")
        object.__setattr__(self, "_hash", hash((self.resolution, self.width_mult, stages)))

    def __hash__(self) -> int:  # cached: architectures are dict keys in every search
        return self._hash  # type: ignore[attr-defined]

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.stages)

    @property
    def n_blocks(self) -> int:
        return sum(self.depths)

    def __str__(self) -> str:
        w = f"{self.width_mult:g}"
        if "." not in w:
            w += ".0"
        body = "_".join("-".join(str(b) for b in s) for s in self.stages)
        return f"r{self.resolution}_w{w}_{body}"

    @classmethod
    def parse(cls, text: str) -> "Arch":
        """Parse the string form.  A bad string raises ``ValueError`` naming the bad token."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty architecture string")
        tokens = text.strip().split("_")
        if len(tokens) != 2 + N_STAGES:
            raise ValueError(
                f"architecture string {text!r} has {len(tokens)} '_'-separated tokens; expected "
                f"{2 + N_STAGES}: r<res>_w<width>_ then {N_STAGES} stages like k3e4-k5e6"
            )
        m = _RES_RE.match(tokens[0])
        if not m:
            raise ValueError(f"bad token {tokens[0]!r} in {text!r}: expected resolution like 'r224'")
        res = int(m.group(1))
        m = _WIDTH_RE.match(tokens[1])
        if not m:
            raise ValueError(f"bad token {tokens[1]!r} in {text!r}: expected width multiplier like 'w1.0'")
        width = float(m.group(1))
        stages = []
        for si, tok in enumerate(tokens[2:]):
            blocks = []
            for part in tok.split("-"):
                bm = _BLOCK_RE.match(part)
                if not bm:
                    raise ValueError(
                        f"bad token {part!r} in stage {si + 1} of {text!r}: expected a block like 'k3e4'"
                    )
                blocks.append(Block(int(bm.group(1)), int(bm.group(2))))
            stages.append(tuple(blocks))
        return cls(res, width, tuple(stages))


def stable_hash(key: str, salt: str) -> int:
    """A 32-bit hash of ``salt:key``, the same on every run and machine: what held-out splits and
    folds of architectures are drawn from (a key's side never depends on the other keys)."""
    return int(hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:8], 16)


def draw_unique(draw: Callable[[], "Arch"], n: int, unique: bool = True) -> list["Arch"]:
    """``n`` results of ``draw()``, repeats skipped when ``unique`` (gives up after 100n + 1000 draws)."""
    out: list[Arch] = []
    seen: set[Arch] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"could not draw {n} unique architectures from the space")
        a = draw()
        if unique and a in seen:
            continue
        seen.add(a)
        out.append(a)
    return out


@dataclass(frozen=True)
class SearchSpace:
    """Allowed choices of the MobileNetV3 / OFA space and operations over it.

    ``resolutions`` defaults to {128, 160, 192, 224}; OFA trains on 128-224 in steps of 4.
    """

    resolutions: tuple[int, ...] = (128, 160, 192, 224)
    width_mults: tuple[float, ...] = (1.0, 1.2)
    depths: tuple[int, ...] = (2, 3, 4)
    kernels: tuple[int, ...] = (3, 5, 7)
    expands: tuple[int, ...] = (3, 4, 6)
    name: str = field(default="ofa-mbv3")

    def __post_init__(self) -> None:
        # before sorting: NaN neither sorts nor fails a "<= 0" check
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0
                   for w in self.width_mults):
            raise ValueError(f"width multipliers must be positive, finite numbers, got {tuple(self.width_mults)}")
        for attr in ("resolutions", "width_mults", "depths", "kernels", "expands"):
            vals = tuple(sorted(getattr(self, attr)))
            if not vals:
                raise ValueError(f"search space {attr} is empty")
            object.__setattr__(self, attr, vals)
        if any(r <= 0 or r % 4 for r in self.resolutions):
            raise ValueError(f"resolutions must be positive multiples of 4, got {self.resolutions}")
        if min(self.depths) < 1:
            raise ValueError("depths must be >= 1")
        if any(k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd, got {self.kernels}")
        # every block choice, built once (blocks are immutable and shared between archs)
        object.__setattr__(self, "_blocks", tuple(tuple(Block(k, e) for e in self.expands) for k in self.kernels))

    # -- validation -------------------------------------------------------------------------
    def validate(self, arch: Arch) -> Arch:
        """Return ``arch`` if it lies in the space, else raise ``ValueError`` saying why."""
        if arch.resolution not in self.resolutions:
            raise ValueError(f"resolution {arch.resolution} is outside the space {list(self.resolutions)}")
        if not any(abs(arch.width_mult - w) < 1e-9 for w in self.width_mults):
            raise ValueError(f"width multiplier {arch.width_mult:g} is outside the space {list(self.width_mults)}")
        for si, stage in enumerate(arch.stages):
            if len(stage) not in self.depths:
                raise ValueError(f"stage {si + 1} has depth {len(stage)}, outside {list(self.depths)}")
            for b in stage:
                if b.kernel not in self.kernels:
                    raise ValueError(f"block {b} in stage {si + 1}: kernel {b.kernel} outside {list(self.kernels)}")
                if b.expand not in self.expands:
                    raise ValueError(f"block {b} in stage {si + 1}: expand {b.expand} outside {list(self.expands)}")
        return arch

    def parse(self, text: str) -> Arch:
        return self.validate(Arch.parse(text))

    def contains(self, arch: Arch) -> bool:
        try:
            self.validate(arch)
        except ValueError:
            return False
        return True

    # -- sampling ---------------------------------------------------------------------------
    def _block(self, rng: np.random.Generator) -> Block:
        ki, ei = rng.integers((len(self.kernels), len(self.expands)))
        return self._blocks[ki][ei]  # type: ignore[attr-defined]

    def sample(self, rng: np.random.Generator) -> Arch:
        """One architecture drawn uniformly per choice (resolution, width, depths, blocks)."""
        md = max(self.depths)
        r = rng.integers((len(self.resolutions), len(self.width_mults)))
        d = rng.integers(len(self.depths), size=N_STAGES)
        ks = rng.integers(len(self.kernels), size=(N_STAGES, md))
        es = rng.integers(len(self.expands), size=(N_STAGES, md))
        blocks = self._blocks  # type: ignore[attr-defined]
        stages = tuple(tuple(blocks[ks[s, j]][es[s, j]] for j in range(self.depths[d[s]])) for s in range(N_STAGES))
        return Arch(self.resolutions[r[0]], self.width_mults[r[1]], stages)

    def sample_many(self, n: int, seed: int = 0, unique: bool = True) -> list[Arch]:
        """``n`` seeded samples; with ``unique`` no architecture repeats."""
        rng = np.random.default_rng(seed)
        return draw_unique(lambda: self.sample(rng), n, unique)

    def mutate(self, arch: Arch, rng: np.random.Generator, prob: float = 0.1) -> Arch:
        """OFA-style mutation: each choice is re-drawn with probability ``prob``.

        Depth mutation keeps the existing blocks (elastic depth keeps the first d) and draws
        new ones for added positions.
        """
        md = max(self.depths)
        hit = rng.random(2 + N_STAGES * (1 + md)) < prob
        res = self.resolutions[rng.integers(len(self.resolutions))] if hit[0] else arch.resolution
        width = self.width_mults[rng.integers(len(self.width_mults))] if hit[1] else arch.width_mult
        stages = []
        for si, stage in enumerate(arch.stages):
            base = 2 + si * (1 + md)
            depth = self.depths[rng.integers(len(self.depths))] if hit[base] else len(stage)
            blocks = list(stage[:depth])
            while len(blocks) < depth:
                blocks.append(self._block(rng))
            for j in range(depth):
                if hit[base + 1 + j]:
                    blocks[j] = self._block(rng)
            stages.append(tuple(blocks))
        return Arch(res, width, tuple(stages))

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Uniform crossover: resolution, width, each stage's depth and each block from either parent."""
        md = max(len(s) for s in a.stages + b.stages)
        coin = rng.random(2 + N_STAGES * (1 + md)) < 0.5
        res = a.resolution if coin[0] else b.resolution
        width = a.width_mult if coin[1] else b.width_mult
        stages = []
        for si, (sa, sb) in enumerate(zip(a.stages, b.stages)):
            base = 2 + si * (1 + md)
            depth = len(sa) if coin[base] else len(sb)
            blocks = []
            for i in range(depth):
                if i < len(sa) and i < len(sb):
                    blocks.append(sa[i] if coin[base + 1 + i] else sb[i])
                else:
                    blocks.append(sa[i] if i < len(sa) else sb[i])
            stages.append(tuple(blocks))
        return Arch(res, width, tuple(stages))

    # -- enumeration ------------------------------------------------------------------------
    def enumerate_grid(
        self,
        block: Block | None = None,
        resolutions: Sequence[int] | None = None,
        width_mults: Sequence[float] | None = None,
        depths: Sequence[int] | None = None,
    ) -> Iterator[Arch]:
        """Grid over resolution x width x per-stage depth, every block set to ``block``.

        The full space (~10^19 members) cannot be enumerated; grid search fixes the blocks
        (default: the largest kernel and expand) and walks the macro choices.
        """
        block = block or Block(max(self.kernels), max(self.expands))
        for res in resolutions or self.resolutions:
            for w in width_mults or self.width_mults:
                for ds in itertools.product(depths or self.depths, repeat=N_STAGES):
                    yield self.validate(Arch(res, w, tuple(tuple([block] * d) for d in ds)))

    @property
    def size(self) -> int:
        """Number of distinct architectures."""
        per_block = len(self.kernels) * len(self.expands)
        per_stage = sum(per_block**d for d in self.depths)
        return len(self.resolutions) * len(self.width_mults) * per_stage**N_STAGES

    def smallest(self) -> Arch:
        b = Block(min(self.kernels), min(self.expands))
        return Arch(min(self.resolutions), min(self.width_mults), tuple((b,) * min(self.depths) for _ in range(N_STAGES)))

    def largest(self) -> Arch:
        b = Block(max(self.kernels), max(self.expands))
        return Arch(max(self.resolutions), max(self.width_mults), tuple((b,) * max(self.depths) for _ in range(N_STAGES)))

    # -- encoding ---------------------------------------------------------------------------
    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def feature_names(self) -> list[str]:
        names = ["resolution", "width_mult"] + [f"depth_s{i + 1}" for i in range(N_STAGES)]
        for s in range(N_STAGES):
            for j in range(self.max_depth):
                names += [f"s{s + 1}b{j + 1}_kernel", f"s{s + 1}b{j + 1}_expand"]
        return names

    def encode(self, archs: Sequence[Arch], kind: str = "ordinal") -> np.ndarray:
        """Numeric encoding for predictors, one row per architecture (float32).

        ``ordinal``: [resolution, width, depth x5, (kernel, expand) per block slot, 0 where the
        slot is beyond the stage's depth].
        ``onehot``: one-hot of resolution, width, depth per stage, and kernel/expand per slot
        (all-zero for absent slots), as in OFA's accuracy predictor.
        """
        if kind == "ordinal":
            width = 2 + N_STAGES + N_STAGES * self.max_depth * 2
            out = np.zeros((len(archs), width), dtype=np.float32)
            for r, a in enumerate(archs):
                out[r, 0] = a.resolution
                out[r, 1] = a.width_mult
                out[r, 2 : 2 + N_STAGES] = a.depths
                for s, stage in enumerate(a.stages):
                    base = 2 + N_STAGES + s * self.max_depth * 2
                    for j, b in enumerate(stage):
                        out[r, base + 2 * j] = b.kernel
                        out[r, base + 2 * j + 1] = b.expand
            return out
        if kind == "onehot":
            return self.genomes_to_onehot(self.archs_to_genomes(archs))
        raise ValueError(f"unknown encoding {kind!r}; use 'ordinal' or 'onehot'")

    # -- index genomes (vectorized search) ----------------------------------------------------
    # A genome is a row of choice indices: [resolution, width, depth x5, (kernel, expand) per
    # block slot].  Slots beyond a stage's depth are inactive (kept, as elastic depth keeps the
    # weights of unused blocks) and zeroed by ``canonical``.
    @property
    def genome_cardinalities(self) -> np.ndarray:
        md = self.max_depth
        return np.array([len(self.resolutions), len(self.width_mults)] + [len(self.depths)] * N_STAGES
                        + [len(self.kernels), len(self.expands)] * (N_STAGES * md), dtype=np.int64)

    def random_genomes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(self.genome_cardinalities, size=(n, len(self.genome_cardinalities)))

    def _active_slots(self, G: np.ndarray) -> np.ndarray:
        md = self.max_depth
        depth = np.asarray(self.depths)[G[:, 2:2 + N_STAGES]]  # (n, 5)
        return np.arange(md)[None, None, :] < depth[:, :, None]  # (n, 5, md)

    def canonical(self, G: np.ndarray) -> np.ndarray:
        """Genomes with inactive slots zeroed: equal rows <=> equal architectures."""
        G = np.array(G, dtype=np.int64, copy=True)
        n, md = len(G), self.max_depth
        blocks = G[:, 2 + N_STAGES:].reshape(n, N_STAGES, md, 2)
        blocks *= self._active_slots(G)[..., None]
        G[:, 2 + N_STAGES:] = blocks.reshape(n, -1)
        return G

    def genomes_to_ordinal(self, G: np.ndarray) -> np.ndarray:
        """Genomes -> the ``ordinal`` encoding of :meth:`encode` (vectorized)."""
        n, md = len(G), self.max_depth
        X = np.zeros((n, 2 + N_STAGES + N_STAGES * md * 2), dtype=np.float32)
        X[:, 0] = np.asarray(self.resolutions)[G[:, 0]]
        X[:, 1] = np.asarray(self.width_mults)[G[:, 1]]
        X[:, 2:2 + N_STAGES] = np.asarray(self.depths)[G[:, 2:2 + N_STAGES]]
        blocks = G[:, 2 + N_STAGES:].reshape(n, N_STAGES, md, 2)
        active = self._active_slots(G)
        vals = np.stack([np.asarray(self.kernels)[blocks[..., 0]], np.asarray(self.expands)[blocks[..., 1]]], axis=-1)
        X[:, 2 + N_STAGES:] = (vals * active[..., None]).reshape(n, -1)
        return X

    def ordinal_to_genomes(self, X: np.ndarray) -> np.ndarray:
        """The ``ordinal`` encoding back to canonical genomes (vectorized)."""
        X = np.asarray(X, dtype=np.float64)
        n, md = len(X), self.max_depth

        def idx(values: np.ndarray, choices) -> np.ndarray:
            return np.abs(values[..., None] - np.asarray(choices, dtype=np.float64)).argmin(-1)

        G = np.zeros((n, len(self.genome_cardinalities)), dtype=np.int64)
        G[:, 0] = idx(X[:, 0], self.resolutions)
        G[:, 1] = idx(X[:, 1], self.width_mults)
        G[:, 2:2 + N_STAGES] = idx(X[:, 2:2 + N_STAGES], self.depths)
        blocks = X[:, 2 + N_STAGES:].reshape(n, N_STAGES, md, 2)
        gb = np.stack([idx(blocks[..., 0], self.kernels), idx(blocks[..., 1], self.expands)], axis=-1)
        G[:, 2 + N_STAGES:] = gb.reshape(n, -1)
        return self.canonical(G)

    def genomes_to_onehot(self, G: np.ndarray) -> np.ndarray:
        """Genomes -> the ``onehot`` encoding of :meth:`encode` (vectorized)."""
        G = np.asarray(G)
        n, md = len(G), self.max_depth
        nr, nw, nd, nk, ne = (len(self.resolutions), len(self.width_mults), len(self.depths), len(self.kernels),
                              len(self.expands))
        slot = nk + ne
        width = nr + nw + N_STAGES * nd + N_STAGES * md * slot
        out = np.zeros((n, width + 1), dtype=np.float32)  # + a spare column for inactive slots, dropped below
        rows = np.arange(n)
        out[rows, G[:, 0]] = 1
        out[rows, nr + G[:, 1]] = 1
        out[rows[:, None], nr + nw + np.arange(N_STAGES) * nd + G[:, 2:2 + N_STAGES]] = 1
        # every block slot at once: its kernel and expand columns (inactive slots hit the spare)
        active = self._active_slots(G).reshape(n, N_STAGES * md)
        starts = nr + nw + N_STAGES * nd + np.arange(N_STAGES * md) * slot
        blocks = G[:, 2 + N_STAGES:].reshape(n, N_STAGES * md, 2)
        out[rows[:, None], np.where(active, starts[None, :] + blocks[..., 0], width)] = 1
        out[rows[:, None], np.where(active, starts[None, :] + nk + blocks[..., 1], width)] = 1
        out = out[:, :width]
        return out

    def genomes_into(self, other: "SearchSpace", G: np.ndarray) -> np.ndarray:
        """Genomes of this space as genomes of ``other`` (the same architectures), which must offer
        every choice of this one; ValueError naming a choice it lacks."""
        G = np.asarray(G, dtype=np.int64)
        n, md = len(G), self.max_depth

        def index_map(name: str) -> np.ndarray:
            pos = {float(v): i for i, v in enumerate(getattr(other, name))}
            missing = [v for v in getattr(self, name) if float(v) not in pos]
            if missing:
                raise ValueError(f"{name}: {missing[0]} is not a choice of the other space {list(getattr(other, name))}")
            return np.array([pos[float(v)] for v in getattr(self, name)], dtype=np.int64)

        out = np.zeros((n, len(other.genome_cardinalities)), dtype=np.int64)
        out[:, 0] = index_map("resolutions")[G[:, 0]]
        out[:, 1] = index_map("width_mults")[G[:, 1]]
        out[:, 2:2 + N_STAGES] = index_map("depths")[G[:, 2:2 + N_STAGES]]
        blocks = G[:, 2 + N_STAGES:].reshape(n, N_STAGES, md, 2)
        theirs = np.zeros((n, N_STAGES, other.max_depth, 2), dtype=np.int64)  # other's max depth covers ours
        theirs[:, :, :md, 0] = index_map("kernels")[blocks[..., 0]]
        theirs[:, :, :md, 1] = index_map("expands")[blocks[..., 1]]
        out[:, 2 + N_STAGES:] = theirs.reshape(n, -1)
        return out

    def genomes_to_archs(self, G: np.ndarray) -> list[Arch]:
        blocks = self._blocks  # type: ignore[attr-defined]
        md = self.max_depth
        out = []
        for g in np.asarray(G):
            stages = []
            for s in range(N_STAGES):
                d = self.depths[g[2 + s]]
                base = 2 + N_STAGES + 2 * md * s
                stages.append(tuple(blocks[g[base + 2 * j]][g[base + 2 * j + 1]] for j in range(d)))
            out.append(Arch(self.resolutions[g[0]], self.width_mults[g[1]], tuple(stages)))
        return out

    def archs_to_genomes(self, archs: Sequence[Arch]) -> np.ndarray:
        ri = {v: i for i, v in enumerate(self.resolutions)}
        di = {v: i for i, v in enumerate(self.depths)}
        ki = {v: i for i, v in enumerate(self.kernels)}
        ei = {v: i for i, v in enumerate(self.expands)}
        md = self.max_depth
        G = np.zeros((len(archs), len(self.genome_cardinalities)), dtype=np.int64)
        for r, a in enumerate(archs):
            self.validate(a)
            G[r, 0] = ri[a.resolution]
            G[r, 1] = int(np.argmin([abs(w - a.width_mult) for w in self.width_mults]))
            for s, stage in enumerate(a.stages):
                G[r, 2 + s] = di[len(stage)]
                base = 2 + N_STAGES + 2 * md * s
                for j, b in enumerate(stage):
                    G[r, base + 2 * j] = ki[b.kernel]
                    G[r, base + 2 * j + 1] = ei[b.expand]
        return G

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "resolutions": list(self.resolutions),
            "width_mults": list(self.width_mults),
            "depths": list(self.depths),
            "kernels": list(self.kernels),
            "expands": list(self.expands),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        return cls(
            resolutions=tuple(d["resolutions"]),
            width_mults=tuple(d["width_mults"]),
            depths=tuple(d["depths"]),
            kernels=tuple(d["kernels"]),
            expands=tuple(d["expands"]),
            name=d.get("name", "ofa-mbv3"),
        )


DEFAULT_SPACE = SearchSpace()
