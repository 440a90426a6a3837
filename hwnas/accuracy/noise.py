"""The noise of accuracy figures measured on a finite validation set.

:func:`accuracy_noise` takes the per-image correctness ``bool [n_archs, n_images]`` of several
architectures on the same images (``evaluate_archs(..., return_items=True)``) and reports

* per architecture: top-1 %, its bootstrap standard error and percentile 95% interval
  (``n_boot`` resamples of the images with replacement, the same resample for every
  architecture, so that differences between them are paired);
* the spread of the accuracies (max - min, and the 5-95% inter-quantile range) against their
  median standard error: how many noise widths the architectures span;
* the split-half reliability of the ranking: the Spearman correlation of the accuracies on two
  disjoint random halves of the images (mean over ``n_splits`` seeded splits), stepped up to
  the full set by Spearman-Brown (``2 r / (1 + r)``).  It estimates how well a second
  validation set of the same size would reproduce the ranking.

All draws come from ``numpy.random.default_rng(seed)``; nothing global is touched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["AccuracyNoise", "accuracy_noise", "spearman_brown"]


def spearman_brown(r: float) -> float:
    """Reliability of the full set from the correlation ``r`` of its two halves."""
    return float(2 * r / (1 + r)) if r > -1 else float("nan")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


@dataclass
class AccuracyNoise:
    """Noise figures of ``n_archs`` accuracies measured on the same ``n_images`` images."""

    n_archs: int
    n_images: int
    n_boot: int
    n_splits: int
    accuracy_pct: list[float]
    se_pp: list[float]
    ci95_low_pct: list[float]
    ci95_high_pct: list[float]
    median_se_pp: float
    range_pp: float
    iqr90_pp: float
    range_over_median_se: float
    iqr90_over_median_se: float
    split_half_spearman: float
    split_half_spearman_sd: float
    reliability: float

    def to_dict(self, per_arch: bool = True) -> dict:
        d = asdict(self)
        if not per_arch:
            for k in ("accuracy_pct", "se_pp", "ci95_low_pct", "ci95_high_pct"):
                d.pop(k)
        return d


def accuracy_noise(items: np.ndarray, n_boot: int = 1000, n_splits: int = 20, seed: int = 0) -> AccuracyNoise:
    """Bootstrap intervals, spread and split-half reliability of the accuracies in ``items``
    (``bool [n_archs, n_images]``: architecture a got image i right)."""
    x = np.asarray(items, dtype=bool)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"items must be [n_archs, n_images >= 2], got shape {x.shape}")
    n_archs, n = x.shape
    if n_boot < 2 or n_splits < 1:
        raise ValueError(f"need n_boot >= 2 and n_splits >= 1, got {n_boot}, {n_splits}")
    rng = np.random.default_rng(seed)
    acc = 100.0 * x.mean(axis=1)
    xf = x.astype(np.float32)
    boot = np.empty((n_archs, n_boot), dtype=np.float64)
    for start in range(0, n_boot, 100):  # weights: how often each image is drawn in a resample
        k = min(100, n_boot - start)
        draws = rng.integers(0, n, (k, n)) + (np.arange(k) * n)[:, None]
        w = np.bincount(draws.ravel(), minlength=k * n).reshape(k, n).astype(np.float32)
        boot[:, start:start + k] = 100.0 * (xf @ w.T) / n
    se = boot.std(axis=1, ddof=1)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=1)
    med_se = float(np.median(se))
    rng_pp = float(np.ptp(acc))
    q5, q95 = np.percentile(acc, [5, 95])
    rs = []
    if n_archs >= 3:
        for _ in range(n_splits):
            half = np.zeros(n, dtype=bool)
            half[rng.permutation(n)[: n // 2]] = True
            rs.append(_spearman(x[:, half].mean(1), x[:, ~half].mean(1)))
    r = float(np.nanmean(rs)) if rs and not np.all(np.isnan(rs)) else float("nan")
    ratio = (lambda v: float(v / med_se) if med_se > 0 else float("inf"))
    return AccuracyNoise(
        n_archs=n_archs, n_images=n, n_boot=n_boot, n_splits=n_splits,
        accuracy_pct=[float(v) for v in acc], se_pp=[float(v) for v in se],
        ci95_low_pct=[float(v) for v in lo], ci95_high_pct=[float(v) for v in hi],
        median_se_pp=med_se, range_pp=rng_pp, iqr90_pp=float(q95 - q5),
        range_over_median_se=ratio(rng_pp), iqr90_over_median_se=ratio(q95 - q5),
        split_half_spearman=r, split_half_spearman_sd=float(np.nanstd(rs)) if rs else float("nan"),
        reliability=spearman_brown(r) if np.isfinite(r) else float("nan"))
