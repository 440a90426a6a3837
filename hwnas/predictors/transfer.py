"""Few-shot transfer: a reference profile's predictors adapted to a new device from N measurements.

For architectures of the space the reference's default predictor gives ``base`` (reference
canary units) and a ridge regression learns the log-ratio to the new device's measurement::

    latency_new = base * exp(w . features + b)

The features say *where* an architecture spends its time on the reference device (the share
of stem/head and of each stage in its lookup-table sum), its resolution, width and size:
a second thread speeds up big convolutions more than small ones, int8 helps pointwise more
than depthwise.  The ridge penalty is chosen by leave-one-out error (closed form), so with few
measurements the fit shrinks towards a single scale factor; the fit is Huber-weighted (iteratively
reweighted), so one or two measurements far off the law -- a noisy run on a busy machine -- do not
tilt it.

For ONNX models, when the reference's ONNX predictor is the kernel predictor, its per-kernel
figures are rescaled per kernel class (dense, pointwise, depthwise, grouped convolutions, matrix
products, the rest: :mod:`hwnas.predictors.transfer_onnx`), the scales learned from the N
architectures and the few zoo models of other families the few-shot profile measured too.
Otherwise (an older few-shot profile, a reference without kernel predictor) a two-parameter
power law ``latency_new = exp(a) * base^b`` fitted on the N architectures maps the reference's
figure: no architecture features exist for an arbitrary graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..profile import Profile
from ..space import N_STAGES
from .base import EncodedPredictor, LatencyPredictor, TargetSpec, finite_array, require_archs, saved_positive
from .data import arch_data

if TYPE_CHECKING:
    from .transfer_onnx import KernelClassTransfer

ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 1e4)


def _lut_of(pred: LatencyPredictor):
    """The lookup table inside a reference predictor (learned or lut), if any."""
    return getattr(pred, "lut_", None) or (pred if hasattr(pred, "lut_parts") else None)


def ridge_loo(F: np.ndarray, y: np.ndarray, alphas: Sequence[float] = ALPHAS,
              weights: np.ndarray | None = None) -> tuple[np.ndarray, float, float, float, np.ndarray]:
    """Ridge on standardized ``F`` with an unpenalized intercept; alpha by leave-one-out MSE.

    ``weights``: per-row weights (weighted least squares; the LOO error is weighted alike).
    Returns (coef on the raw features, intercept, alpha, LOO RMSE, LOO residuals)."""
    mu, sd = F.mean(axis=0), F.std(axis=0)
    sd[sd < 1e-12] = 1.0
    Z = (F - mu) / sd
    n, p = Z.shape
    wt = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    sw = wt.sum()
    zm = (wt @ Z) / sw if weights is not None else np.zeros(p)
    ym = float(wt @ y / sw)
    Zc = Z - zm
    yc = y - ym
    best = None
    for a in alphas:
        G = Zc.T @ (Zc * wt[:, None]) + a * np.eye(p)
        b = np.linalg.solve(G, Zc.T @ (wt * yc))
        # hat matrix of the centred weighted problem, plus the intercept's share
        h = wt * np.einsum("ij,ji->i", Zc, np.linalg.solve(G, Zc.T)) + wt / sw
        r = (yc - Zc @ b) / np.maximum(1.0 - h, 1e-6)
        loo = float(np.sqrt(wt @ r**2 / sw))
        if best is None or loo < best[2] - 1e-12:
            best = (b, a, loo, r)
    b, a, loo, r = best
    coef = b / sd
    return coef, float(ym - zm @ b - mu @ coef), float(a), loo, r


#: Huber's constant (95% efficiency under normal errors) and the floor of the residual scale (log units)
HUBER_C = 1.345
MIN_SCALE = 0.01


def robust_ridge_loo(F: np.ndarray, y: np.ndarray, alphas: Sequence[float] = ALPHAS,
                     max_iter: int = 30) -> tuple[np.ndarray, float, float, float, np.ndarray, np.ndarray]:
    """:func:`ridge_loo` with Huber weights by iteratively reweighted least squares: a few
    measurements far off the law (a noisy run, a stall) lose their pull instead of tilting it.
    The scale is the residuals' MAD (floored at 1%).  Returns ridge_loo's tuple plus the weights."""
    wt = np.ones(len(y))
    for _ in range(max_iter):
        coef, b0, a, loo, r = ridge_loo(F, y, alphas, wt)
        res = y - (F @ coef + b0)
        scale = max(1.4826 * float(np.median(np.abs(res - np.median(res)))), MIN_SCALE)
        new = np.minimum(1.0, HUBER_C * scale / np.maximum(np.abs(res), 1e-12))
        if np.max(np.abs(new - wt)) < 1e-6:
            break
        wt = new
    coef, b0, a, loo, r = ridge_loo(F, y, alphas, wt)
    return coef, b0, a, loo, r, wt


def class_rows(reference_onnx, profile: Profile, data=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-kernel-class sums of the reference kernel predictor's figures (``transfer_onnx.CLASSES``
    columns) and the measured canary units of a few-shot profile's architectures (``data``:
    :func:`arch_data`'s, loaded when None), then of its zoo models (a model this version no longer
    builds is skipped)."""
    import warnings

    from ..zoo_sealed import model_by_name
    from .transfer_onnx import CLASSES, class_sums

    data = data if data is not None else arch_data(profile)
    rows, rel = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncovered ops: the reference's fallback is what is rescaled
        for a, r in zip(data.archs, data.relative):
            rows.append(class_sums(reference_onnx.breakdown(str(a))))
            rel.append(float(r))
        zoo = profile.table("zoo")
        for target, r in zip(zoo["target"], zoo["relative_to_canary"]):
            try:
                model = model_by_name(target["name"]).build()
            except KeyError:
                continue
            rows.append(class_sums(reference_onnx.breakdown(model)))
            rel.append(float(r))
    return np.array(rows, dtype=float).reshape(len(rows), len(CLASSES)), np.array(rel)


class TransferPredictor(EncodedPredictor):
    """A reference profile's predictors adapted to this profile's device (few-shot)."""

    name = "transfer"
    handles_onnx = True
    validates_onnx = True  # ONNX models go to the reference's kernel predictor as they are
    min_archs = 5

    def __init__(self, alphas: tuple[float, ...] = ALPHAS) -> None:
        self.alphas = tuple(alphas)

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, profile: Profile, reference: EncodedPredictor, reference_onnx: LatencyPredictor | None = None,
            archs: Sequence[str] | None = None) -> "TransferPredictor":
        data = arch_data(profile, archs)
        require_archs(self.name, len(data.archs), self.min_archs)
        if reference.space_.to_dict() != profile.space.to_dict():
            raise ValueError("the reference predictor was fitted for another search space")
        self.reference_ = reference
        self.reference_onnx_ = reference_onnx
        self.space_ = profile.space
        self.canary_reference_ms_ = profile.canary_reference_ms
        X = profile.space.encode(data.archs)
        base = reference.predict_encoded(X)
        y = np.log(data.relative) - np.log(base)
        F = self._features(X, base)
        (self.coef_, self.intercept_, self.alpha_, self.loo_rmse_, self.loo_residuals_,
         self.weights_) = robust_ridge_loo(F, y, self.alphas)
        # ONNX path: a power law on the reference prediction alone, the same log-ratio ``y``;
        # the exponent is shrunk towards 1 (a pure scale) so that N = 5 cannot tilt it wildly
        A = np.stack([np.ones(len(base)), np.log(base)], axis=1)
        W = self.weights_[:, None]  # the arch fit's Huber weights: the same noisy runs lose their pull here too
        ab = np.linalg.solve(A.T @ (A * W) + np.diag([0.0, 1.0]), A.T @ (W[:, 0] * y))
        self.onnx_coef_ = (float(ab[0]), float(1.0 + ab[1]))
        self.n_archs_ = len(data.archs)
        self.onnx_classes_ = self._fit_classes(profile, data)
        return self

    def _fit_classes(self, profile: Profile, data) -> "KernelClassTransfer | None":
        """The per-kernel-class transfer of the reference kernel predictor (None without one)."""
        from .transfer_onnx import KernelClassTransfer as KernelClassTransferCls

        ref = self.reference_onnx_
        self.n_onnx_models_ = 0
        self.onnx_choice_ = {"chosen": "power law", "reason": "the reference has no kernel predictor"}
        if ref is None or not hasattr(ref, "breakdown") or not hasattr(ref, "calibration_"):
            return None
        self.n_onnx_models_ = len(profile.table("zoo"))
        self.onnx_choice_ = {"chosen": "power law", "reason": "fewer than 3 zoo models measured"}
        if self.n_onnx_models_ < 3:  # (a few-shot profile made with --zoo-shots 0 or before them)
            return None
        T, rel = class_rows(ref, profile, data)
        self.n_onnx_models_ = n_zoo = len(rel) - len(data.archs)
        if n_zoo < 3:
            return None
        zoo_rows = np.arange(len(rel)) >= len(data.archs)
        classes = KernelClassTransferCls().fit(T, rel, tuple(ref.calibration_), judge_rows=zoo_rows)
        # the zoo models are out of sample for the power law (fitted on the architectures only);
        # for the class scales their leave-one-out residuals are: the same question, how well each
        # law carries to families it was not fitted on.  The per-class law must earn its place.
        c, e = ref.calibration_
        base = np.exp(c) * np.maximum(T[zoo_rows].sum(axis=1), 1e-12) ** e
        a, b = self.onnx_coef_
        r_pow = np.log(rel[zoo_rows]) - (a + b * np.log(base))
        w = classes.weights_[zoo_rows]
        rmse_pow = float(np.sqrt(w @ r_pow**2 / w.sum()))
        rmse_cls = classes.judge_loo_rmse_
        chosen = rmse_cls < rmse_pow
        self.onnx_choice_ = {"chosen": "per kernel class" if chosen else "power law",
                             "zoo_loo_log_rmse_per_class": rmse_cls, "zoo_log_rmse_power_law": rmse_pow,
                             "n_zoo_models": n_zoo}
        return classes if chosen else None

    def _features(self, X: np.ndarray, base: np.ndarray) -> np.ndarray:
        sp = self.space_
        cols = [np.log(base), (X[:, 0] - min(sp.resolutions)) / max(1, max(sp.resolutions) - min(sp.resolutions)),
                X[:, 1]]
        lut = _lut_of(self.reference_)
        if lut is not None:
            parts = lut.lut_parts(X)
            share = parts / parts.sum(axis=1, keepdims=True)
            cols.extend(share[:, i] for i in range(N_STAGES + 1))
        md = sp.max_depth
        blocks = X[:, 2 + N_STAGES:].reshape(len(X), N_STAGES, md, 2)
        present = blocks[..., 0] > 0
        n = np.maximum(present.sum(axis=(1, 2)), 1)
        cols.append(present.sum(axis=(1, 2)) / (N_STAGES * md))
        cols.append((blocks[..., 0] * present).sum(axis=(1, 2)) / n / max(sp.kernels))
        cols.append((blocks[..., 1] * present).sum(axis=(1, 2)) / n / max(sp.expands))
        return np.stack(cols, axis=1)

    def loo_intervals(self, reference_onnx_interval=None, reference_arch_interval=None) -> dict:
        """Prediction intervals of this transfer (``arch``, and ``onnx`` when the reference's ONNX
        predictor has one): conformal on the leave-one-out residuals of the N measured
        architectures; for ONNX models the reference's family-held-out bounds widened by them.

        ``reference_arch_interval``: the reference predictor's own held-out in-space interval.  The
        N measurements of a calibration are taken in one sitting, so their leave-one-out residuals
        cannot see how much a later measurement of the same machine moves (in canary units); an
        architecture measured another time fell outside the leave-one-out bounds 4-5 times in 10 at
        N = 100 (``benchmarks/results/new_device_repeats_n100.json``).  Each side is therefore
        combined in quadrature with the reference's: a transfer is never more certain than a
        full profile's own predictor on its own machine."""
        from .interval import MIN_RESIDUALS, PredictionInterval

        r = np.asarray(self.loo_residuals_, dtype=float)
        if len(r) < MIN_RESIDUALS:
            return {}
        arch = PredictionInterval.from_log_residuals(r, source=f"few-shot leave-one-out ({len(r)} architectures)")
        if reference_arch_interval is not None:
            arch = arch.in_quadrature_with(reference_arch_interval, f"{arch.source} (+) the reference's "
                                                                    f"{reference_arch_interval.source}, in quadrature")
        out = {"arch": arch}
        if reference_onnx_interval is not None:
            ref = reference_onnx_interval
            few, what = arch, "few-shot leave-one-out"
            oc = getattr(self, "onnx_classes_", None)
            if oc is not None and len(oc.loo_residuals_) >= MIN_RESIDUALS:
                few = PredictionInterval.from_log_residuals(oc.loo_residuals_)
                what = f"per-kernel-class transfer's leave-one-out ({len(oc.loo_residuals_)} models)"
            out["onnx"] = PredictionInterval(ref.coverage, ref.log_lo + few.log_lo, ref.log_hi + few.log_hi,
                                             min(ref.n_residuals, few.n_residuals),
                                             f"reference's {ref.source} + {what}")
        return out

    # -- prediction -------------------------------------------------------------------------
    def predict_encoded(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        base = self.reference_.predict_encoded(X)
        return base * np.exp(self._features(X, base) @ self.coef_ + self.intercept_)

    def _predict_relative(self, specs: Sequence[TargetSpec]) -> np.ndarray:
        out = np.empty(len(specs))
        arch_idx = [i for i, s in enumerate(specs) if s.arch is not None]
        if arch_idx:
            out[arch_idx] = super()._predict_relative([specs[i] for i in arch_idx])
        onnx_idx = [i for i, s in enumerate(specs) if s.arch is None]
        if onnx_idx:
            if self.reference_onnx_ is None:
                from ..errors import InputError

                raise InputError("this few-shot profile's reference had no ONNX predictor; it predicts architectures only")
            sub = [specs[i] for i in onnx_idx]
            if self.onnx_classes_ is not None:
                from .transfer_onnx import class_sums

                T = np.array([class_sums(self.reference_onnx_.breakdown(s)) for s in sub])
                out[onnx_idx] = self.onnx_classes_.predict(T, tuple(self.reference_onnx_.calibration_))
            else:
                base = self.reference_onnx_.predict_relative(sub)
                a, b = self.onnx_coef_
                out[onnx_idx] = np.exp(a) * base**b
        return out

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        self._check_fitted()
        return {"name": self.name, "params": {"alphas": list(self.alphas)}, "space": self.space_.to_dict(),
                "canary_reference_ms": self.canary_reference_ms_, "coef": self.coef_.tolist(),
                "intercept": self.intercept_, "alpha": self.alpha_, "loo_rmse": self.loo_rmse_,
                "onnx_coef": list(self.onnx_coef_), "n_archs": self.n_archs_,
                "onnx_classes": self.onnx_classes_.to_dict() if self.onnx_classes_ is not None else None,
                "n_onnx_models": self.n_onnx_models_, "onnx_choice": self.onnx_choice_,
                "loo_residuals": [float(x) for x in self.loo_residuals_],
                "reference": self.reference_.to_dict(),
                "reference_onnx": self.reference_onnx_.to_dict() if self.reference_onnx_ is not None else None}

    @classmethod
    def from_dict(cls, d: dict) -> "TransferPredictor":
        from ..space import SearchSpace
        from .registry import predictor_from_dict

        p = cls(alphas=tuple(d["params"]["alphas"]))
        p.space_ = SearchSpace.from_dict(d["space"])
        p.canary_reference_ms_ = saved_positive(d["canary_reference_ms"], "canary_reference_ms")
        p.coef_ = finite_array(d["coef"], "coef")
        p.intercept_ = float(finite_array(d["intercept"], "intercept"))
        p.alpha_ = float(d["alpha"])
        p.loo_rmse_ = float(d["loo_rmse"])
        p.onnx_coef_ = tuple(float(x) for x in finite_array(d["onnx_coef"], "onnx_coef"))
        p.n_archs_ = int(d["n_archs"])
        # saved before the per-class ONNX transfer: the power law
        oc = d.get("onnx_classes")
        if oc is not None:
            from .transfer_onnx import KernelClassTransfer

            p.onnx_classes_ = KernelClassTransfer.from_dict(oc)
        else:
            p.onnx_classes_ = None
        p.n_onnx_models_ = int(d.get("n_onnx_models", 0))
        p.onnx_choice_ = dict(d.get("onnx_choice") or {"chosen": "power law", "reason": "saved before the choice existed"})
        # saved before intervals existed: no residuals, no interval
        p.loo_residuals_ = np.asarray(d.get("loo_residuals", []), dtype=np.float64)
        p.reference_ = predictor_from_dict(d["reference"])
        p.reference_onnx_ = predictor_from_dict(d["reference_onnx"]) if d.get("reference_onnx") else None
        if len(p.coef_) != p._features(p.space_.encode([p.space_.smallest()]), np.ones(1)).shape[1]:
            raise ValueError("coefficients do not match the features")
        return p
