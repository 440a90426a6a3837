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

    latency_new = exp(c) * (sum_k exp(theta_class(k)) * t_k) ** (e + beta)
    (c, e: the reference's calibration; beta: a shift of its exponent, as the power law's slope)

The scales are shrunk towards their common mean (ridge on the deviations, strength by
leave-one-out error), so a class no measured model exercises moves with the others, and the
fit is Huber-weighted (iteratively reweighted) so one noisy measurement does not tilt a class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

#: kernel classes that move apart between CPUs; every other kernel family is "other"
CLASSES = ("conv", "pwconv", "dwconv", "gconv", "gemm", "other")
LAMBDAS = (0.003, 0.03, 0.3, 3.0, 30.0, 300.0)
HUBER_C = 1.345
MIN_SCALE = 0.01


def class_index(family: str) -> int:
    """Index in :data:`CLASSES` of a kernel family (``hwnas.predictors.kernel_features.FAMILIES``)."""
    return CLASSES.index(family) if family in CLASSES[:-1] else len(CLASSES) - 1


def class_sums(predictions: Sequence) -> np.ndarray:
    """Per-class sums of a model's kernel predictions (``KernelPrediction``; canary units); exact
    (``math.fsum``), so they do not depend on the order ORT lists the kernels in."""
    parts: list[list[float]] = [[] for _ in CLASSES]
    for p in predictions:
        parts[class_index(p.family)].append(p.relative)
    return np.array([math.fsum(x) for x in parts])


#: ridge on the exponent's shift (the same as the power law's on its slope, log units)
EXPONENT_RIDGE = 1.0


def _solve(T: np.ndarray, y: np.ndarray, w: np.ndarray, lam: float, calib: tuple[float, float],
           theta0: np.ndarray, n_iter: int = 30) -> np.ndarray:
    """Weighted Gauss-Newton for the class log-scales (ridge on their deviations from their mean)
    and, last, the shift of the calibration's exponent (a second thread, a bigger cache help big
    models more than small ones: the power law's slope, here on top of the class scales)."""
    c, e = calib
    k = T.shape[1]
    phi = np.append(theta0[:k], 0.0) if len(theta0) == k else theta0.copy()
    P = np.zeros((k + 1, k + 1))
    P[:k, :k] = lam * (np.eye(k) - np.full((k, k), 1.0 / k))  # (I - 11'/k) is idempotent: P'P = P
    P[k, k] = EXPONENT_RIDGE
    for _ in range(n_iter):
        theta, beta = phi[:k], phi[k]
        s = np.maximum(T @ np.exp(theta), 1e-12)
        r = c + (e + beta) * np.log(s) - y
        J = np.column_stack([(e + beta) * (T * np.exp(theta)) / s[:, None], np.log(s)])
        G = J.T @ (J * w[:, None]) + P + 1e-9 * np.eye(k + 1)
        g = J.T @ (w * r) + P @ phi
        step = np.linalg.solve(G, g)
        phi = phi - step
        if np.max(np.abs(step)) < 1e-8:
            break
    return phi


def _log_pred(T: np.ndarray, phi: np.ndarray, calib: tuple[float, float]) -> np.ndarray:
    c, e = calib
    k = T.shape[1]
    return c + (e + phi[k]) * np.log(np.maximum(T @ np.exp(phi[:k]), 1e-12))


@dataclass
class KernelClassTransfer:
    """Per-class log-scales of the reference kernel predictor's figures (see the module doc)."""

    lambdas: tuple[float, ...] = LAMBDAS
    log_scale_: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    lambda_: float = 0.0
    exponent_shift_: float = 0.0
    loo_residuals_: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    weights_: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    n_models_: int = 0

    def fit(self, T: np.ndarray, relative: np.ndarray, calib: tuple[float, float],
            judge_rows: np.ndarray | None = None) -> "KernelClassTransfer":
        """``T``: per-class kernel sums (n x len(CLASSES)) of the measured models on the reference;
        ``relative``: their measured latency on the new device (canary units); ``calib``: the
        reference kernel predictor's end-to-end calibration (c, e).  ``judge_rows``: a mask of the
        rows whose leave-one-out error picks the ridge strength (the models of *other* families
        than the space's: how well a class scale carries to a family it was not fitted on);
        all rows when None."""
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
        judge = np.ones(len(y), dtype=bool) if judge_rows is None else np.asarray(judge_rows, dtype=bool)
        best = None
        for lam in self.lambdas:
            loo = self._loo(T, y, w, lam, calib, theta0)
            err = float(np.sqrt(w[judge] @ loo[judge] ** 2 / w[judge].sum()))
            if best is None or err < best[1] - 1e-12:
                best = (lam, err)
        lam = best[0]
        w = self._huber_weights(T, y, w, lam, calib, theta0)
        best = (lam, best[1], self._loo(T, y, w, lam, calib, theta0))
        self.lambda_ = float(best[0])
        phi = _solve(T, y, w, self.lambda_, calib, theta0)
        self.log_scale_, self.exponent_shift_ = phi[:-1], float(phi[-1])
        self.loo_residuals_ = best[2]  # log(measured / predicted)
        self.judge_loo_rmse_ = float(np.sqrt(w[judge] @ best[2][judge] ** 2 / w[judge].sum()))
        self.weights_ = w
        self.n_models_ = int(len(y))
        return self

    @staticmethod
    def _huber_weights(T, y, w, lam, calib, theta0, max_iter: int = 30) -> np.ndarray:
        c, e = calib
        for _ in range(max_iter):
            phi = _solve(T, y, w, lam, calib, theta0)
            res = y - _log_pred(T, phi, calib)
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
            phi = _solve(T[keep], y[keep], w[keep], lam, calib, theta0)
            out[i] = y[i] - float(_log_pred(T[i : i + 1], phi, calib)[0])
        return out

    def predict(self, T: np.ndarray, calib: tuple[float, float]) -> np.ndarray:
        """New-device canary units of models with per-class kernel sums ``T`` on the reference."""
        if self.log_scale_ is None:
            raise ValueError("KernelClassTransfer is not fitted")
        return np.exp(_log_pred(np.atleast_2d(np.asarray(T, dtype=float)),
                                np.append(self.log_scale_, self.exponent_shift_), calib))

    def to_dict(self) -> dict:
        return {"classes": list(CLASSES), "log_scale": [float(x) for x in self.log_scale_],
                "exponent_shift": self.exponent_shift_,
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
        t.exponent_shift_ = float(d["exponent_shift"])
        t.n_models_ = int(d["n_models"])
        t.loo_residuals_ = np.asarray(d.get("loo_residuals", []), dtype=float)
        t.weights_ = np.ones(t.n_models_)
        return t
