"""``builtin:shapes``: a procedural proxy task, rendered from a seed with numpy alone (nothing is
downloaded, nothing is written to disk).

Each image holds one shape of one of 12 classes (disc, ring, triangle, square, hexagon, star,
cross, ellipse, crescent, L, T, two dots) at a random position (it may leave the frame a little),
size (radius 5-13 px at 32 px), rotation and aspect (x0.8-1.25), filled with a random colour
that may be striped, on a textured background (flat, stripes, checks or smooth noise, two random
colours), behind which lie up to three clutter strokes and blobs, in front of which an occluding
bar may cut the shape (60% of images), plus pixel noise.  Labels are balanced (class counts
differ by at most one) and shuffled.

The spec is ``builtin:shapes`` or ``builtin:shapes:KEY=VALUE,...`` with integer keys ``n``
(images, default 24,000), ``seed`` (default 0), ``size`` (pixels, default 32, 16..64) and
``classes`` (the first K classes, default 12, 2..12).  The same spec gives the same bytes in
every process (chunks of images are drawn from ``default_rng([seed, chunk])``);
:func:`render_shapes` keeps the last few datasets in memory (per process, arrays read-only).

This module makes plain arrays; :func:`hwnas.accuracy.data.load_dataset` wraps them in an
``ImageDataset``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

BUILTIN_SHAPES = "builtin:shapes"
SHAPE_CLASSES = ("disc", "ring", "triangle", "square", "hexagon", "star", "cross", "ellipse", "crescent",
                 "L", "T", "two-dots")
_CHUNK = 512

__all__ = ["BUILTIN_SHAPES", "SHAPE_CLASSES", "ShapesSpec", "parse_shapes_spec", "render_shapes"]


@dataclass(frozen=True)
class ShapesSpec:
    """What ``builtin:shapes[:n=...,seed=...,size=...,classes=...]`` asks for."""

    n: int = 24_000
    seed: int = 0
    size: int = 32
    classes: int = len(SHAPE_CLASSES)

    @property
    def spec(self) -> str:
        """The canonical spec string (only the keys that differ from the defaults)."""
        d = ShapesSpec()
        parts = [f"{k}={getattr(self, k)}" for k in ("n", "seed", "size", "classes") if getattr(self, k) != getattr(d, k)]
        return BUILTIN_SHAPES + (":" + ",".join(parts) if parts else "")

    @property
    def description(self) -> str:
        return (f"procedural shapes (seed {self.seed}): {self.n:,} images, {self.classes} classes, "
                f"{self.size}x{self.size} RGB, rendered with clutter, occlusion, colour, scale and rotation")


def parse_shapes_spec(spec: str) -> ShapesSpec:
    """Parse ``builtin:shapes[:key=value,...]``; a bad spec raises a one-line InputError."""
    if spec == BUILTIN_SHAPES:
        return ShapesSpec()
    head = BUILTIN_SHAPES + ":"
    if not spec.startswith(head) or spec == head:
        raise InputError(f"bad dataset spec {spec!r}: expected {BUILTIN_SHAPES} or {BUILTIN_SHAPES}:n=24000,seed=0")
    kw: dict[str, int] = {}
    for item in spec[len(head):].split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in ("n", "seed", "size", "classes"):
            raise InputError(f"bad dataset spec {spec!r}: {item!r} is not one of n=, seed=, size=, classes=")
        if key in kw:
            raise InputError(f"bad dataset spec {spec!r}: {key} given twice")
        try:
            kw[key] = int(value)
        except ValueError:
            raise InputError(f"bad dataset spec {spec!r}: {key} must be an integer, got {value!r}") from None
    s = ShapesSpec(**kw)
    if not 2 <= s.classes <= len(SHAPE_CLASSES):
        raise InputError(f"bad dataset spec {spec!r}: classes must be 2..{len(SHAPE_CLASSES)}, got {s.classes}")
    if not 16 <= s.size <= 64:
        raise InputError(f"bad dataset spec {spec!r}: size must be 16..64 pixels, got {s.size}")
    if not 2 * s.classes <= s.n <= 1_000_000:
        raise InputError(f"bad dataset spec {spec!r}: n must be {2 * s.classes}..1000000 images, got {s.n}")
    if s.seed < 0:
        raise InputError(f"bad dataset spec {spec!r}: seed must be non-negative, got {s.seed}")
    return s


@functools.lru_cache(maxsize=2)
def render_shapes(spec: ShapesSpec) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``(images uint8 [N, 3, S, S], labels int64 [N], class names)`` of ``spec`` (cached
    per process; the arrays are read-only)."""
    labels = np.random.default_rng([spec.seed, 0]).permutation(np.arange(spec.n) % spec.classes).astype(np.int64)
    images = np.empty((spec.n, 3, spec.size, spec.size), dtype=np.uint8)
    for k, start in enumerate(range(0, spec.n, _CHUNK)):
        lab = labels[start:start + _CHUNK]
        images[start:start + len(lab)] = _render_chunk(np.random.default_rng([spec.seed, 1, k]), lab, spec.size)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels, tuple(SHAPE_CLASSES[:spec.classes])


# --------------------------------------------------------------------------------------------
# rendering (all float32, one chunk of images at a time; fields are "inside-ness" in pixels:
# positive inside, about the distance to the edge)


def _u(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return rng.uniform(lo, hi, n).astype(np.float32)[:, None, None]


def _box(u: np.ndarray, v: np.ndarray, cu: float, cv: float, hu: float, hv: float) -> np.ndarray:
    return np.minimum(hu - np.abs(u - cu), hv - np.abs(v - cv))


def _ngon(rho: np.ndarray, phi: np.ndarray, k: int) -> np.ndarray:
    sector = 2 * np.pi / k
    return np.cos(np.pi / k) / np.cos(np.mod(phi, sector) - sector / 2) - rho


def _shape_field(c: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-ness of class ``c`` in shape units (the shape spans about [-1, 1])."""
    rho = np.sqrt(u * u + v * v)
    if c == 0:  # disc
        return 1 - rho
    if c == 1:  # ring
        return 0.24 - np.abs(rho - 0.74)
    if c in (2, 3, 4):  # triangle, square, hexagon (vertex radius 1.15 / 1 / 0.95)
        k, r = {2: (3, 1.15), 3: (4, 1.0), 4: (6, 0.95)}[c]
        return _ngon(rho / r, np.arctan2(v, u), k)
    if c == 5:  # five-pointed star
        return 0.42 + 0.58 * (0.5 + 0.5 * np.cos(5 * np.arctan2(v, u))) ** 2 - rho
    if c == 6:  # cross
        return np.maximum(_box(u, v, 0, 0, 0.95, 0.28), _box(u, v, 0, 0, 0.28, 0.95))
    if c == 7:  # ellipse
        return 0.45 * (1 - np.sqrt(u * u + (v / 0.45) ** 2))
    if c == 8:  # crescent
        return np.minimum(1 - rho, np.sqrt((u - 0.5) ** 2 + v * v) - 0.8)
    if c == 9:  # L
        return np.maximum(_box(u, v, -0.55, 0, 0.27, 0.95), _box(u, v, 0, 0.68, 0.82, 0.27))
    if c == 10:  # T
        return np.maximum(_box(u, v, 0, -0.68, 0.95, 0.27), _box(u, v, 0, 0.1, 0.26, 0.85))
    # two dots
    return np.maximum(0.4 - np.sqrt((u - 0.56) ** 2 + v * v), 0.4 - np.sqrt((u + 0.56) ** 2 + v * v))


def _alpha(field_px: np.ndarray) -> np.ndarray:
    return np.clip(field_px + 0.5, 0.0, 1.0)


def _colours(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0, 1, (n, 3, 1, 1)).astype(np.float32)


def _luma(c: np.ndarray) -> np.ndarray:
    return 0.299 * c[:, 0] + 0.587 * c[:, 1] + 0.114 * c[:, 2]


def _texture(rng: np.random.Generator, n: int, yy: np.ndarray, xx: np.ndarray, size: int) -> np.ndarray:
    """A texture in [0, 1] per image: flat, stripes, checks or smooth noise (each computed only
    for its own images)."""
    kind = rng.integers(0, 4, n)
    th, freq, ph = _u(rng, 0, np.pi, n), _u(rng, 0.25, 1.1, n), _u(rng, 0, 2 * np.pi, n)
    g = rng.uniform(0, 1, (n, 5, 5)).astype(np.float32)
    out = np.zeros((n, size, size), dtype=np.float32)
    m = kind == 1
    a = xx * np.cos(th[m]) + yy * np.sin(th[m])
    out[m] = 0.5 + 0.5 * np.sin(freq[m] * a + ph[m])
    m = kind == 2
    a = (xx * np.cos(th[m]) + yy * np.sin(th[m])) * (freq[m] / np.pi)
    b = (yy * np.cos(th[m]) - xx * np.sin(th[m])) * (freq[m] / np.pi)
    out[m] = (np.floor(a) + np.floor(b)) % 2
    m = kind == 3
    idx = np.linspace(0, 4, size, dtype=np.float32)
    i0 = np.minimum(idx.astype(int), 3)
    f = (idx - i0).astype(np.float32)
    rows = g[m][:, i0] * (1 - f)[None, :, None] + g[m][:, i0 + 1] * f[None, :, None]  # [k, S, 5]
    out[m] = rows[:, :, i0] * (1 - f) + rows[:, :, i0 + 1] * f
    return out


def _render_chunk(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    n = len(labels)
    scale = size / 32.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy, xx = yy[None] - (size - 1) / 2, xx[None] - (size - 1) / 2

    # background: two colours mixed by a texture
    bg1, bg2 = _colours(rng, n), _colours(rng, n)
    amp = _u(rng, 0.0, 0.7, n)[:, None]
    img = bg1 + (bg2 - bg1) * amp * _texture(rng, n, yy, xx, size)[:, None]

    # clutter behind the shape: up to three strokes or blobs (strokes of length 0) of random colours
    for _ in range(3):
        on = rng.uniform(0, 1, n) < 0.6
        p = rng.uniform(-size / 2, size / 2, (n, 2)).astype(np.float32)
        d = rng.normal(0, 1, (n, 2)).astype(np.float32)
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-6
        stroke = rng.uniform(0, 1, n) < 0.5
        length = np.where(stroke, rng.uniform(3, 14, n) * scale, 0.0).astype(np.float32)[:, None, None]
        width = np.where(stroke, rng.uniform(0.6, 1.4, n), rng.uniform(1.5, 3.5, n)).astype(np.float32) * scale
        colour = _colours(rng, n)
        p, d, length, width, colour = p[on], d[on], length[on], width[on], colour[on]
        px, py = xx - p[:, 0, None, None], yy - p[:, 1, None, None]
        dx, dy = d[:, 0, None, None], d[:, 1, None, None]
        t = np.clip(px * dx + py * dy, 0, length)
        px -= t * dx
        py -= t * dy
        al = _alpha(width[:, None, None] - np.sqrt(px * px + py * py))
        img[on] += (colour - img[on]) * al[:, None]

    # the shape: position, radius, rotation, aspect; fill colour kept apart from the background
    r_px = _u(rng, 5.0, 13.0, n) * scale
    cx = _u(rng, -1, 1, n) * (size / 2 - 0.6 * r_px)
    cy = _u(rng, -1, 1, n) * (size / 2 - 0.6 * r_px)
    th = _u(rng, 0, 2 * np.pi, n)
    asp = np.exp(_u(rng, np.log(0.8), np.log(1.25), n))
    px, py = xx - cx, yy - cy
    u = (px * np.cos(th) + py * np.sin(th)) / (r_px * asp)
    v = (-px * np.sin(th) + py * np.cos(th)) * asp / r_px
    field = np.empty((n, size, size), dtype=np.float32)
    for c in np.unique(labels):
        m = labels == c
        field[m] = _shape_field(int(c), u[m], v[m])
    fg = _colours(rng, n)
    bg_luma = _luma(img.mean(axis=(2, 3), keepdims=True))
    push = np.where(bg_luma > 0.5, -1.0, 1.0).astype(np.float32)
    too_close = np.abs(_luma(fg) - bg_luma) < 0.25
    fg = np.where(too_close[:, None], np.clip(fg + push[:, None] * 0.35, 0, 1), fg)
    striped = rng.uniform(0, 1, n) < 0.4
    fill_amp, fill_freq = _u(rng, 0, 0.4, n), _u(rng, 0.8, 1.6, n)
    al = _alpha(field * (r_px * np.minimum(asp, 1 / asp)))[:, None]
    img += (fg - img) * al
    k = striped
    img[k] -= (fg[k] * (fill_amp[k] * (0.5 + 0.5 * np.sin(fill_freq[k] * u[k] * r_px[k])) * al[k][:, 0])[:, None])

    # occluder in front: a bar through a point near the shape
    on = rng.uniform(0, 1, n) < 0.6
    ang = _u(rng, 0, 2 * np.pi, n)
    off = _u(rng, 0.35, 1.0, n) * r_px
    ox, oy = cx + off * np.cos(ang), cy + off * np.sin(ang)
    bth = _u(rng, 0, np.pi, n)
    half_w = _u(rng, 0.12, 0.3, n) * r_px
    colour = _colours(rng, n)
    dist = np.abs((xx - ox[on]) * np.sin(bth[on]) - (yy - oy[on]) * np.cos(bth[on]))
    al = _alpha(half_w[on] - dist)
    img[on] += (colour[on] - img[on]) * al[:, None]

    img += (rng.standard_normal((n, size, size), dtype=np.float32) * _u(rng, 0.0, 0.06, n))[:, None]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
