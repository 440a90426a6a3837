"""Kernel-level predictor (nn-Meter's idea, with ONNX Runtime doing the fusion): any ONNX CNN.

1. ORT optimizes the model with the device's settings; its post-fusion kernels and shapes are
   read from one untimed run (:mod:`.kernel_features`).
2. Each kernel is featurized and predicted by the regressor of its family (conv, dwconv,
   pwconv, gconv, gemm, pool (with LRN), globalpool, activation, elementwise, concat, memory,
   reorder, batchnorm): gradient-boosted trees on log features, predicting log(duration / work) where
   work is the kernel's MACs (weighted kernels) or bytes moved (the rest).
3. The kernel sum is calibrated to measured end-to-end latency with a power law
   ``exp(c) * sum**k`` fitted on profiled full models (the profiler inflates small kernels).

Training data: the kernel campaign (standalone ops over real-CNN shape ranges) and the
kernel records of profiled full models, all in canary units.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..devices import DeviceSpec
from ..errors import HwnasError
from ..measure import KernelRecord
from ..profile import Profile
from ..space import Arch, SearchSpace
from .base import LatencyPredictor, TargetSpec, finite_array, saved_positive
from .data import kernel_data, model_end_to_end
from .kernel_features import (FAMILIES, FEATURE_NAMES, LATE_COVERED, N_FEATURES_V1, featurize_records,
                              optimized_kernels, records_from_frame)
from .serialize import StackedGBM, export_model, import_model


class UncoveredOpsWarning(UserWarning):
    """A model holds ops no kernel family covers; they were predicted by a fallback."""


@dataclass(frozen=True)
class KernelPrediction:
    node_name: str
    op_type: str
    family: str
    relative: float  # canary units, before end-to-end calibration
    fallback: bool


class KernelPredictor(LatencyPredictor):
    name = "kernel"
    handles_onnx = True
    validates_onnx = True
    min_archs = 3
    prices_quickly = False  # an ORT graph optimization per architecture (~30 a second here)

    def __init__(self, n_estimators: int = 200, max_depth: int = 4, learning_rate: float = 0.1,
                 min_family_rows: int = 30, campaign_weight: float = 0.2, model_context: bool = True,
                 op_base: bool = True, matrix_view: bool = True, seed: int = 0) -> None:
        self.n_estimators = n_estimators
        self.model_context = model_context
        self.campaign_weight = campaign_weight
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.min_family_rows = min_family_rows
        self.op_base = op_base
        self.matrix_view = matrix_view
        self.seed = seed

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, profile: Profile, archs: Sequence[str] | None = None,
            exclude_models: Sequence[str] = ()) -> "KernelPredictor":
        """Fit on ``profile``.  ``archs`` restricts which end-to-end architectures' kernel
        records and timings may be used (a held-out split stays unseen); ``exclude_models``
        removes more profiled models (e.g. a held-out model family).  Every other profiled model
        is fitted on, sealed families included: the predictor a user gets learns from every
        family measured, while the sealed figures come from fits that exclude them
        (:func:`hwnas.predictors.evaluate.evaluate_families`)."""
        from sklearn.ensemble import GradientBoostingRegressor

        exclude = set(exclude_models)
        kp = profile.kernel_profiles
        arch_keys = set(profile.table("arch")["key"])
        if archs is not None:
            allowed = set(archs)
            exclude |= {k for k in kp["arch"] if (k in arch_keys or _is_arch(k)) and k not in allowed}
        kd = kernel_data(profile, exclude)
        if len(kd.rows) == 0:
            raise HwnasError("profile holds no kernel records; re-run `hwnas profile` with kernel parts")
        fams = np.array([r.family for r in kd.rows])
        X = np.array([r.features for r in kd.rows])
        if not self.matrix_view:
            X = X[:, :N_FEATURES_V1]
        self.n_features_ = X.shape[1]
        campaign_keys = set(profile.table("kernel")["key"])
        standalone = np.isin(kd.model, list(campaign_keys)).astype(float)
        # a context flag: single-op campaign graph (1) or kernel inside a model (0); predictions
        # are made in the in-model context, trees learn the offset where both exist
        cols = [X]
        if self.model_context:
            cols.append(_context_by_model(X, kd.model))
        X = np.hstack(cols + [standalone[:, None]])
        # kernels seen inside real models are the better teachers; single-op campaign graphs
        # (colder caches, no neighbours) fill in the shapes models do not cover
        weight = np.where(standalone > 0, self.campaign_weight, 1.0)
        # ...except for op types the profiled models hardly run (QuickGelu, Gelu, LayerNorm in a
        # CNN-heavy profile): there the campaign is the only teacher and keeps full weight
        codes = X[:, FEATURE_NAMES.index("op_code")]
        in_model = pd.Series(codes[standalone == 0]).value_counts()
        self.model_op_codes_ = sorted(int(c) for c in in_model[in_model >= MIN_MODEL_ROWS].index)
        rare = np.isin(codes, self.model_op_codes_, invert=True)
        weight[(standalone > 0) & rare] = 1.0
        y = np.log(kd.relative / np.array([r.work for r in kd.rows]))
        # each op type's own base rate (median log time per unit of work, campaign and models
        # alike): the trees fit what is left, so an op type with few rows (QuickGelu next to a
        # thousand ReLUs) keeps its own level instead of borrowing its family's
        keys = np.array([_base_key(f, c) for f, c in zip(fams, codes)])
        self.op_base_ = {k: (float(np.median(y[keys == k])) if self.op_base and k.split(":")[0] not in WEIGHTED
                             else 0.0) for k in np.unique(keys)}
        y_raw, y = y, y - np.array([self.op_base_[k] for k in keys])
        self.families_: dict[str, dict] = {}
        for fam in FAMILIES:
            m = fams == fam
            n = int(m.sum())
            if n == 0:
                continue
            fam_base = float(np.median([self.op_base_[k] for k in np.unique(keys[m])]))
            if n >= self.min_family_rows:
                est = GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                                learning_rate=self.learning_rate, subsample=0.8,
                                                random_state=self.seed)
                est.fit(X[m], y[m], sample_weight=weight[m])
                self.families_[fam] = {"rows": n, "model": export_model(est), "base": fam_base}
            else:
                self.families_[fam] = {"rows": n, "constant": float(np.average(y[m], weights=weight[m])),
                                       "base": fam_base}
        mem = np.isin(fams, ["elementwise", "memory", "activation"])
        self.fallback_log_rate_ = float(np.median(y_raw[mem] if mem.any() else y_raw))
        self._compiled = {}
        self._stacked = None
        # calibration on profiled full models (not the campaign's single-op graphs)
        e2e = model_end_to_end(profile)
        e2e = e2e[~e2e["arch"].isin(campaign_keys | exclude)]
        kr = profile.kernel_records
        sel = kr[kr["arch"].isin(set(e2e["arch"]))]
        by_model: dict[str, list[KernelRecord]] = {}
        for key, r in zip(sel["arch"], records_from_frame(sel)):
            by_model.setdefault(key, []).append(r)
        sums = np.array([sum(p.relative for p in self._predict_records(by_model.get(k, []))) for k in e2e["arch"]])
        ys = e2e["relative"].to_numpy(float)
        if len(ys) >= 3:
            # a power law, latency = exp(c) * sum**k: always positive, and it absorbs the
            # profiler's inflation of small kernels (k < 1) as well as a constant factor
            k, c = np.polyfit(np.log(sums), np.log(ys), 1)
            self.calibration_ = (float(c), float(k))
        else:
            self.calibration_ = (0.0, 1.0)
        self.n_calibration_models_ = int(len(ys))
        self.device_ = profile.device.to_dict()
        self.space_ = profile.space
        self.canary_reference_ms_ = profile.canary_reference_ms
        return self

    # -- prediction -------------------------------------------------------------------------
    def _model(self, fam: str):
        if not hasattr(self, "_compiled"):
            self._compiled = {}
        if fam not in self._compiled:
            self._compiled[fam] = import_model(self.families_[fam]["model"])
        return self._compiled[fam]

    def _stack(self) -> tuple[StackedGBM | None, dict[str, int]]:
        """The families' gradient-boosted models as one :class:`StackedGBM` (one traversal for all
        of a model's kernels), and each family's index in it; built once."""
        if getattr(self, "_stacked", None) is None:
            fams = [f for f, info in self.families_.items() if "model" in info and self._model(f).kind == "gbm"]
            self._stacked = (StackedGBM([self._model(f) for f in fams]) if fams else None,
                             {f: i for i, f in enumerate(fams)})
        return self._stacked

    def _predict_records(self, records: Sequence[KernelRecord]) -> list[KernelPrediction]:
        rows, uncovered = featurize_records(records)
        n = len(rows)
        F = np.array([r.features for r in rows], dtype=np.float64).reshape(n, len(FEATURE_NAMES))
        F = F[:, : getattr(self, "n_features_", len(FEATURE_NAMES))]
        logs = np.zeros(n)
        fallback = np.zeros(n, dtype=bool)
        # an op type covered since this predictor was fitted (it never saw one, e.g. LRN before the
        # campaign measured it) keeps the bytes-moved fallback it had then, and its warning; it stays
        # out of the model's context too, as it was then
        late = _late_covered(rows, F, getattr(self, "op_base_", None))
        ctx = _context_of(F[~late]) if self.model_context else np.zeros(0)
        logs[late] = self.fallback_log_rate_
        fallback[late] = True
        by_fam: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            if not late[i]:
                by_fam.setdefault(r.family, []).append(i)
        stacked, index = self._stack()
        which = np.full(n, -1, dtype=np.int64)

        # the context flag: in-model (0), except for op types the fit saw only as single-op
        # campaign graphs, whose trees know them in that context only
        known = getattr(self, "model_op_codes_", None)
        single_op = (np.zeros(n) if known is None else
                     np.isin(F[:, FEATURE_NAMES.index("op_code")], known, invert=True).astype(float))

        def features(idx) -> np.ndarray:
            m = len(idx)
            return np.hstack([F[idx], np.tile(ctx, (m, 1)), single_op[idx][:, None]])

        for fam, idx in by_fam.items():
            info = self.families_.get(fam)
            if info is None:
                logs[idx] = self.fallback_log_rate_
                fallback[idx] = True
            elif "constant" in info:
                logs[idx] = info["constant"]
            elif fam in index:
                which[idx] = index[fam]
            else:
                logs[idx] = self._model(fam).predict(features(idx))
        sel = np.flatnonzero(which >= 0)
        if len(sel):
            logs[sel] = stacked.predict(features(sel), which[sel])
        base = getattr(self, "op_base_", None)
        if base:
            fitted = ~fallback
            code = FEATURE_NAMES.index("op_code")
            for i in np.flatnonzero(fitted):
                v = base.get(_base_key(rows[i].family, F[i, code]))
                logs[i] += self.families_[rows[i].family].get("base", 0.0) if v is None else v
        out: list[KernelPrediction] = []
        for i, r in enumerate(rows):
            out.append(KernelPrediction(r.name, r.op_type, "uncovered" if late[i] else r.family,
                                        math.exp(logs[i]) * r.work, bool(fallback[i])))
        for rec in uncovered:
            nbytes = 4.0 * (sum(int(np.prod(s)) for s in rec.input_shapes) + sum(int(np.prod(s)) for s in rec.output_shapes))
            out.append(KernelPrediction(rec.node_name, rec.op_type, "uncovered",
                                        float(np.exp(self.fallback_log_rate_) * max(nbytes, 1.0)), True))
        return out

    def kernels(self, target) -> list[KernelRecord]:
        """Post-fusion kernels of a target under the profile's device settings."""
        spec = target if isinstance(target, TargetSpec) else None
        if spec is None:
            from .base import resolve

            spec = resolve(target, self.space_, load=False)
        device = DeviceSpec.from_dict(self.device_)
        if spec.path is not None:
            model = spec.path
        elif spec.model is not None:
            model = spec.model
        else:
            from ..builders.onnx_graph import build_onnx

            model = build_onnx(spec.arch, batch=device.batch_size)
        try:
            return optimized_kernels(model, device)
        except HwnasError:
            if spec.path is not None:
                # ORT refused the file, or its inputs are dynamic: the loader and the ONNX checker
                # say why in their own words where they can
                from ..onnx_io import load_onnx

                load_onnx(spec.path)
            raise

    def breakdown(self, target) -> list[KernelPrediction]:
        """Per-kernel predictions (canary units, before calibration) for one target."""
        self._check_fitted()
        preds = self._predict_records(self.kernels(target))
        self._warn_uncovered(preds, target)
        return preds

    @staticmethod
    def _warn_uncovered(preds: Sequence[KernelPrediction], target) -> None:
        unc = [p for p in preds if p.family == "uncovered" or p.fallback]
        if unc:
            ops = sorted({p.op_type for p in unc})
            share = sum(p.relative for p in unc) / max(sum(p.relative for p in preds), 1e-12)
            name = target if isinstance(target, str) else getattr(target, "name", "model")
            warnings.warn(
                f"{name}: ops {', '.join(ops)} are not covered by any kernel family; predicted with a "
                f"bytes-moved fallback ({100 * share:.1f}% of the predicted kernel time, 0% of MACs counted)",
                UncoveredOpsWarning, stacklevel=3,
            )

    def _predict_relative(self, specs: Sequence[TargetSpec]) -> np.ndarray:
        out = []
        for s in specs:
            preds = self._predict_records(self.kernels(s))
            self._warn_uncovered(preds, s.name)
            # fsum: exact, so the figure does not depend on the order ORT lists the kernels in
            out.append(self.calibrate_sum(math.fsum(p.relative for p in preds)))
        return np.asarray(out)

    def calibrate_sum(self, kernel_sum_relative: float) -> float:
        """End-to-end canary units from a sum of kernel predictions: exp(c) * sum**k."""
        c, k = self.calibration_
        return float(np.exp(c) * max(kernel_sum_relative, 1e-9) ** k)

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        self._check_fitted()
        return {"name": self.name, "params": self.get_params(), "families": self.families_,
                "fallback_log_rate": self.fallback_log_rate_, "calibration": list(self.calibration_),
                "n_calibration_models": self.n_calibration_models_, "n_features": self.n_features_,
                "model_op_codes": list(self.model_op_codes_), "op_base": dict(self.op_base_),
                "device": self.device_,
                "space": self.space_.to_dict(), "canary_reference_ms": self.canary_reference_ms_}

    @classmethod
    def from_dict(cls, d: dict) -> "KernelPredictor":
        # predictors saved before the model-context features existed were fitted without them
        p = cls(**{"model_context": False, **d["params"]})
        p.families_ = dict(d["families"])
        unknown = set(p.families_) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown kernel families {sorted(unknown)}")
        p._compiled = {f: import_model(v["model"]) for f, v in p.families_.items() if "model" in v}
        p._stacked = None
        p.fallback_log_rate_ = float(finite_array(d["fallback_log_rate"], "fallback_log_rate"))
        p.calibration_ = tuple(float(x) for x in finite_array(d["calibration"], "calibration"))
        p.n_calibration_models_ = int(d.get("n_calibration_models", 0))
        p.n_features_ = int(d.get("n_features", N_FEATURES_V1))
        # saved before op types seen only in the campaign were told apart: all in-model context
        p.model_op_codes_ = [int(c) for c in d["model_op_codes"]] if "model_op_codes" in d else None
        # saved before per-op base rates: the trees hold the whole level
        p.op_base_ = {str(k): float(finite_array(v, f"op_base[{k}]")) for k, v in d.get("op_base", {}).items()}
        if not 0 < p.n_features_ <= len(FEATURE_NAMES):
            raise ValueError(f"n_features {p.n_features_} is not between 1 and {len(FEATURE_NAMES)}")
        p.device_ = DeviceSpec.from_dict(d["device"]).to_dict()
        p.space_ = SearchSpace.from_dict(d["space"])
        p.canary_reference_ms_ = saved_positive(d["canary_reference_ms"], "canary_reference_ms")
        return p


#: families whose kernels do MACs: their op types (Conv / FusedConv, Gemm / MatMul) share one rate
#: per MAC, and the trees keep the whole level (a base per op type cost them in-space accuracy)
WEIGHTED = ("conv", "dwconv", "pwconv", "gconv", "gemm")


def _base_key(family: str, op_code: float) -> str:
    """Key of an op type's base rate within a kernel family, e.g. ``activation:39``."""
    return f"{family}:{int(op_code)}"


def _late_covered(rows: Sequence, F: np.ndarray, op_base: dict | None) -> np.ndarray:
    """Which rows are of an op type in :data:`~.kernel_features.LATE_COVERED` that the fit never
    saw: every (family, op type) fitted on has a base rate key, so a missing key means unseen."""
    seen = op_base or {}
    code = FEATURE_NAMES.index("op_code")
    return np.array([r.op_type in LATE_COVERED and _base_key(r.family, F[i, code]) not in seen
                     for i, r in enumerate(rows)], dtype=bool)


#: in-model kernels of an op type needed to predict it in the in-model context
MIN_MODEL_ROWS = 10

#: weight bytes and bytes moved by the whole model, per kernel: a kernel of a small model
#: runs with its weights and activations cache-resident, the same kernel in a big one does not
CONTEXT_FEATURES = ("log_model_weight_bytes", "log_model_bytes")
_W, _B = FEATURE_NAMES.index("log_weight_elems"), FEATURE_NAMES.index("log_bytes")


def _context_of(f: np.ndarray) -> np.ndarray:
    """The context features of one model, from its kernels' feature matrix."""
    if not len(f):
        return np.zeros(len(CONTEXT_FEATURES))
    weight_bytes = 4.0 * np.sum(np.exp2(f[:, _W]) - 1.0)
    moved = np.sum(np.exp2(f[:, _B]) - 1.0)
    return np.log2(np.array([weight_bytes, moved]) + 1.0)


def _context_by_model(F: np.ndarray, models: np.ndarray) -> np.ndarray:
    """Per-row context features (``F``: the rows' kernel features), each row getting its own model's."""
    out = np.zeros((len(F), len(CONTEXT_FEATURES)))
    for m in np.unique(models):
        idx = np.flatnonzero(models == m)
        out[idx] = _context_of(F[idx])
    return out


def _is_arch(key: str) -> bool:
    try:
        Arch.parse(key)
    except ValueError:
        return False
    return True
