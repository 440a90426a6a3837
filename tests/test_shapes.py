"""The procedural proxy task ``builtin:shapes`` and the noise figures of accuracies."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.accuracy.data import load_dataset
from hwnas.accuracy.noise import accuracy_noise, spearman_brown
from hwnas.accuracy.shapes import SHAPE_CLASSES, ShapesSpec, parse_shapes_spec, render_shapes
from hwnas.errors import InputError

SMALL = "builtin:shapes:n=600"


def test_default_spec_is_the_issue_size_without_rendering_it():
    s = parse_shapes_spec("builtin:shapes")
    assert s == ShapesSpec() and s.n >= 20_000 and s.size == 32 and s.classes >= 10 == len(SHAPE_CLASSES) - 2
    assert parse_shapes_spec("builtin:shapes:seed=3,n=600").spec == "builtin:shapes:n=600,seed=3"


def test_same_seed_same_bytes_other_seed_differs():
    a = load_dataset(SMALL)
    render_shapes.cache_clear()  # rendered again, not served from the cache
    b = load_dataset(SMALL)
    c = load_dataset(SMALL + ",seed=1")
    assert a.images is not b.images and a.images.tobytes() == b.images.tobytes()
    assert np.array_equal(a.labels, b.labels) and a.fingerprint == b.fingerprint
    assert (a.images != c.images).mean() > 0.5 and a.fingerprint != c.fingerprint
    assert a.source == SMALL and c.source == "builtin:shapes:n=600,seed=1"


def test_shapes_and_classes_balanced():
    d = load_dataset("builtin:shapes:n=605,size=24,classes=11")
    assert d.images.shape == (605, 3, 24, 24) and d.images.dtype == np.uint8
    assert d.classes == list(SHAPE_CLASSES[:11])
    counts = np.bincount(d.labels, minlength=11)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 605
    assert not d.images.flags.writeable  # the per-process cache cannot be changed by a caller
    assert 40 < d.images.mean() < 215 and d.images.std() > 40  # not blank, not saturated


def test_colour_alone_does_not_give_the_class():
    """A nearest-centroid classifier on mean colour is near chance (1/12): shape decides."""
    d = load_dataset("builtin:shapes:n=1200")
    f = d.images.reshape(d.n, 3, -1).mean(2)
    tr, va = np.arange(d.n) < 900, np.arange(d.n) >= 900
    cent = np.stack([f[tr & (d.labels == c)].mean(0) for c in range(d.n_classes)])
    pred = np.argmin(((f[va, None] - cent[None]) ** 2).sum(-1), 1)
    assert (pred == d.labels[va]).mean() < 0.2


@pytest.mark.parametrize("spec, words", [
    ("builtin:shapes:n=abc", "n must be an integer"),
    ("builtin:shapes:depth=3", "'depth=3' is not one of"),
    ("builtin:shapes:n=5", "n must be 24..1000000"),
    ("builtin:shapes:classes=13", "classes must be 2..12"),
    ("builtin:shapes:size=8", "size must be 16..64"),
    ("builtin:shapes:n=100,n=200", "n given twice"),
    ("builtin:shapes:", "expected builtin:shapes or"),
    ("builtin:shapez", "unknown built-in dataset"),
])
def test_bad_spec_is_a_one_line_error(spec, words):
    with pytest.raises(InputError, match=words) as e:
        load_dataset(spec)
    assert "\n" not in str(e.value)


def test_noise_figures_separate_signal_from_noise():
    rng = np.random.default_rng(0)
    n = 4000
    p = np.linspace(0.5, 0.8, 40)  # 40 architectures 30 pp apart at the ends
    items = rng.uniform(size=(40, n)) < p[:, None]
    z = accuracy_noise(items, n_boot=300, n_splits=5, seed=1)
    acc = np.array(z.accuracy_pct)
    assert np.allclose(acc, 100 * items.mean(1))
    assert all(lo < a < hi for lo, a, hi in zip(z.ci95_low_pct, acc, z.ci95_high_pct))
    binomial = 100 * np.sqrt(p * (1 - p) / n)
    assert np.allclose(z.se_pp, binomial, rtol=0.25)
    assert z.reliability > 0.95 and z.range_over_median_se > 30
    same = rng.uniform(size=(40, n)) < 0.6  # 40 equal architectures: any ranking is noise
    zs = accuracy_noise(same, n_boot=100, n_splits=5, seed=1)
    assert abs(zs.split_half_spearman) < 0.3 and zs.range_over_median_se < 10
    assert accuracy_noise(items, n_boot=300, n_splits=5, seed=1) == z  # seeded
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="n_archs, n_images"):
        accuracy_noise(items[0])
