"""Few-shot transfer of the kernel predictor to a new device, one scale per kernel class.

A new CPU does not speed every kernel up alike: dense convolutions follow the core's
arithmetic (vector width, FMA units), depthwise and element-wise kernels its memory system,
matrix products on token tensors its caches.  One global scale (or power law) fitted on the
few-shot architectures of a MobileNetV3 space -- depthwise and pointwise convolutions only --
says nothing about how a ResNet's 3x3 convolutions or a ViT's matrix products moved.

:class:`KernelClassTransfer` splits the reference kernel predictor's per-kernel figures of a
model (canary units, before end-to-end calibration) into :data:`CLASSES` and learns one
log-scale per class from the few-shot measurements (architectures *and* a handful of measured
zoo models of other families)::

    latency_new = exp(c) * (sum_k exp(theta_class(k)) * t_k) ** e      (c, e: the reference's calibration)

The scales are shrunk towards their common mean (ridge on the deviations, strength by
leave-one-out error), so a class no measured model exercises moves with the others, and the
fit is Huber-weighted (iteratively reweighted) so one noisy measurement does not tilt a class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

#: kernel classes that move apart between CPUs; every other kernel family is "other"
CLASSES = ("conv", "pwconv", "dwconv", "gconv", "gemm", "other")
LAMBDAS = (0.003, 0.03, 0.3, 3.0)
HUBER_C = 1.345
MIN_SCALE = 0.01


def class_index(family: str) -> int:
    """Index in :data:`CLASSES` of a kernel family (``hwnas.predictors.kernel_features.FAMILIES``)."""
    return CLASSES.index(family) if family in CLASSES[:-1] else len(CLASSES) - 1


def class_sums(predictions: Sequence) -> np.ndarray:
    """Per-class sums of a model's kernel predictions (``KernelPrediction``; canary units)."""
    out = np.zeros(len(CLASSES))
    for p in predictions:
        out[class_index(p.family)] += p.relative
    return out


def _solve(T: np.ndarray, y: np.ndarray, w: np.ndarray, lam: float, calib: tuple[float, float],
           theta0: np.ndarray, n_iter: int = 30) -> np.ndarray:
    """Weighted Gauss-Newton for the class log-scales with the ridge on their deviations."""
    c, e = calib
    k = T.shape[1]
    theta = theta0.copy()
    P = np.eye(k) - np.full((k, k), 1.0 / k)  # deviation from the mean
    for _ in range(n_iter):
        s = T @ np.exp(theta)
        s = np.maximum(s, 1e-12)
        r = c + e * np.log(s) - y
        J = e * (T * np.exp(theta)) / s[:, None]
        G = J.T @ (J * w[:, None]) + lam * P.T @ P + 1e-9 * np.eye(k)
        g = J.T @ (w * r) + lam * P.T @ (P @ theta)
        step = np.linalg.solve(G, g)
        theta = theta - step
        if np.max(np.abs(step)) < 1e-8:
            break
    return theta


@dataclass
class KernelClassTransfer:
    """Per-class log-scales of the reference kernel predictor's figures (see the module doc)."""

    lambdas: tuple[float, ...] = LAMBDAS
    log_scale_: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    lambda_: float = 0.0
    loo_residuals_: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    weights_: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    n_models_: int = 0

    def fit(self, T: np.ndarray, relative: np.ndarray, calib: tuple[float, float]) -> "KernelClassTransfer":
        """``T``: per-class kernel sums (n x len(CLASSES)) of the measured models on the reference;
        ``relative``: their measured latency on the new device (canary units); ``calib``: the
        reference kernel predictor's end-to-end calibration (c, e)."""
        T = np.asarray(T, dtype=float)
        y = np.log(np.asarray(relative, dtype=float))
        if T.ndim != 2 or T.shape[1] != len(CLASSES) or len(T) != len(y) or len(y) < 3:
            raise ValueError("need at least 3 models with a kernel sum per class")
        c, e = calib
        # start: one common scale that matches the median ratio
        t0 = float(np.median((y - c) / e - np.log(np.maximum(T.sum(axis=1), 1e-12))))
        theta0 = np.full(len(CLASSES), t0)
        # Huber weights by IRLS at a middle ridge strength, then the strength by the weighted
        # leave-one-out error (a noisy run must not choose it), then the weights again
        w = self._huber_weights(T, y, np.ones(len(y)), self.lambdas[len(self.lambdas) // 2], calib, theta0)
        best = None
        for lam in self.lambdas:
            loo = self._loo(T, y, w, lam, calib, theta0)
            err = float(np.sqrt(w @ loo**2 / w.sum()))
            if best is None or err < best[1] - 1e-12:
                best = (lam, err)
        lam = best[0]
        w = self._huber_weights(T, y, w, lam, calib, theta0)
        best = (lam, best[1], self._loo(T, y, w, lam, calib, theta0))
        self.lambda_ = float(best[0])
        self.log_scale_ = _solve(T, y, w, self.lambda_, calib, theta0)
        self.loo_residuals_ = best[2]  # log(measured / predicted)
        self.weights_ = w
        self.n_models_ = int(len(y))
        return self

    @staticmethod
    def _huber_weights(T, y, w, lam, calib, theta0, max_iter: int = 30) -> np.ndarray:
        c, e = calib
        for _ in range(max_iter):
            theta = _solve(T, y, w, lam, calib, theta0)
            res = y - (c + e * np.log(np.maximum(T @ np.exp(theta), 1e-12)))
            scale = max(1.4826 * float(np.median(np.abs(res - np.median(res)))), MIN_SCALE)
            new = np.minimum(1.0, HUBER_C * scale / np.maximum(np.abs(res), 1e-12))
            if np.max(np.abs(new - w)) < 1e-4:
                return new
            w = new
        return w

    @staticmethod
    def _loo(T, y, w, lam, calib, theta0) -> np.ndarray:
        """Leave-one-out residuals, log(measured) - log(predicted)."""
        c, e = calib
        out = np.empty(len(y))
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            th = _solve(T[keep], y[keep], w[keep], lam, calib, theta0)
            out[i] = y[i] - (c + e * np.log(max(float(T[i] @ np.exp(th)), 1e-12)))
        return out

    def predict(self, T: np.ndarray, calib: tuple[float, float]) -> np.ndarray:
        """New-device canary units of models with per-class kernel sums ``T`` on the reference."""
        if self.log_scale_ is None:
            raise ValueError("KernelClassTransfer is not fitted")
        c, e = calib
        s = np.maximum(np.atleast_2d(np.asarray(T, dtype=float)) @ np.exp(self.log_scale_), 1e-12)
        return np.exp(c) * s**e

    def to_dict(self) -> dict:
        return {"classes": list(CLASSES), "log_scale": [float(x) for x in self.log_scale_],
                "lambda": self.lambda_, "lambdas": list(self.lambdas), "n_models": self.n_models_,
                "loo_residuals": [float(x) for x in self.loo_residuals_]}

    @classmethod
    def from_dict(cls, d: dict) -> "KernelClassTransfer":
        if list(d["classes"]) != list(CLASSES):
            raise ValueError(f"kernel classes {d['classes']} differ from this version's {list(CLASSES)}")
        t = cls(lambdas=tuple(float(x) for x in d["lambdas"]))
        t.log_scale_ = np.asarray(d["log_scale"], dtype=float)
        if t.log_scale_.shape != (len(CLASSES),) or not np.all(np.isfinite(t.log_scale_)):
            raise ValueError("kernel class scales are not finite numbers, one per class")
        t.lambda_ = float(d["lambda"])
        t.n_models_ = int(d["n_models"])
        t.loo_residuals_ = np.asarray(d.get("loo_residuals", []), dtype=float)
        t.weights_ = np.ones(t.n_models_)
        return t
