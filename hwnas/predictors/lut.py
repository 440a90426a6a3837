"""Block lookup-table predictor (Once-for-All / ProxylessNAS style), vectorized.

latency = a * (stem + first block + sum of block entries + head) + b, in canary units.  The
table is dense over (resolution, width, stage, first-or-later, kernel, expand), so a batch of
encoded architectures is predicted with array indexing alone (the search's fast path).
Entries the profile lacks are interpolated from a log-log fit on measured blocks and flagged.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..cost import block_cost, head_cost, stem_cost
from ..errors import HwnasError
from ..layers import BlockSpec, table_slots
from ..profile import Profile
from ..space import N_STAGES, SearchSpace
from .base import EncodedPredictor, finite_array, require_archs, saved_positive
from .data import arch_data, block_relative


def _spec_features(spec) -> list[float]:
    if isinstance(spec, BlockSpec):
        c = block_cost(spec)
        return [math.log(c.macs), math.log(c.params), math.log(spec.in_res), spec.stride, float(spec.se),
                float(spec.act == "hswish"), math.log(spec.mid_ch * spec.out_res**2), 1.0]
    c = stem_cost(spec) if hasattr(spec, "out_ch") and not hasattr(spec, "final_expand") else head_cost(spec)
    return [math.log(c.macs), math.log(c.params), math.log(spec.in_res), 2.0, 0.0, 1.0, 0.0, 1.0]


class LutPredictor(EncodedPredictor):
    name = "lut"

    def __init__(self, overhead: bool = True) -> None:
        self.overhead = overhead

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, profile: Profile, archs: Sequence[str] | None = None) -> "LutPredictor":
        space = profile.space
        data = arch_data(profile, archs)
        require_archs(self.name, len(data.archs), 3 if self.overhead else 0)
        table = block_relative(profile)
        self.space_ = space
        self.canary_reference_ms_ = profile.canary_reference_ms
        self._build_tables(space, table)
        raw = self.lut_sum(space.encode(data.archs)) if data.archs else np.zeros(0)
        if self.overhead and len(raw) >= 3:
            # least squares on relative error: weight rows by 1/y
            w = 1.0 / data.relative
            A = np.stack([raw * w, w], axis=1)
            coef, *_ = np.linalg.lstsq(A, data.relative * w, rcond=None)
            self.coef_ = (float(coef[0]), float(coef[1]))
        else:
            self.coef_ = (1.0, 0.0)
        return self

    def _build_tables(self, space: SearchSpace, table: dict[str, float]) -> None:
        R, W, K, E = len(space.resolutions), len(space.width_mults), len(space.kernels), len(space.expands)
        fixed = np.zeros((R, W))
        stage = np.zeros((R, W, N_STAGES, 2, K, E))
        missing: list[tuple[tuple, object]] = []
        measured_x, measured_y = [], []
        for at, spec in table_slots(space):
            slot = ("fixed", *at) if len(at) == 2 else ("stage", *at)
            self._place(spec, slot, table, stage, fixed, missing, measured_x, measured_y)
        self.interpolated_keys_: list[str] = []
        if missing and not measured_y:
            raise HwnasError("profile holds no block measurements to build a lookup table from "
                             "(a time budget reached before its block part?); resume it with `hwnas profile --resume`")
        if missing:
            X = np.asarray(measured_x)
            coef, *_ = np.linalg.lstsq(X, np.log(np.asarray(measured_y)), rcond=None)
            for slot, spec in missing:
                v = float(np.exp(np.asarray(_spec_features(spec)) @ coef))
                self._add(slot, v, stage, fixed)
                self.interpolated_keys_.append(spec.key)
        self.fixed_ = fixed
        self.stage_ = stage
        self.n_table_entries_ = len(measured_y)

    @staticmethod
    def _add(slot, v, stage, fixed) -> None:
        if slot[0] == "fixed":
            fixed[slot[1], slot[2]] += v
        else:
            stage[slot[1:]] = v

    def _place(self, spec, slot, table, stage, fixed, missing, mx, my) -> None:
        v = table.get(spec.key)
        if v is None:
            missing.append((slot, spec))
            return
        self._add(slot, v, stage, fixed)
        mx.append(_spec_features(spec))
        my.append(v)

    # -- prediction -------------------------------------------------------------------------
    def lut_parts(self, X: np.ndarray) -> np.ndarray:
        """Raw table entries summed per part: column 0 stem + head, then one column per stage."""
        fixed, vals = self._entries(X)
        return np.concatenate([fixed[:, None], vals.sum(axis=2)], axis=1)

    def lut_sum(self, X: np.ndarray) -> np.ndarray:
        """Raw table sum (canary units) for ordinal-encoded architectures ``X`` (N x F)."""
        fixed, vals = self._entries(X)
        return fixed + vals.sum(axis=(1, 2))

    def _entries(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(stem + head entry (N,), block entries (N, stages, max depth), zero where absent)."""
        sp = self.space_
        X = np.asarray(X)
        ri = np.searchsorted(np.asarray(sp.resolutions), X[:, 0])
        wi = np.abs(X[:, 1:2] - np.asarray(sp.width_mults)[None, :]).argmin(axis=1)
        md = sp.max_depth
        K = X[:, 2 + N_STAGES:].reshape(len(X), N_STAGES, md, 2)[..., 0].astype(np.int64)
        E = X[:, 2 + N_STAGES:].reshape(len(X), N_STAGES, md, 2)[..., 1].astype(np.int64)
        kmap = np.zeros(max(sp.kernels) + 1, dtype=np.int64)
        kmap[list(sp.kernels)] = np.arange(len(sp.kernels))
        emap = np.zeros(max(sp.expands) + 1, dtype=np.int64)
        emap[list(sp.expands)] = np.arange(len(sp.expands))
        present = K > 0
        pos = np.minimum(np.arange(md), 1)[None, None, :]
        st = np.arange(N_STAGES)[None, :, None]
        vals = self.stage_[ri[:, None, None], wi[:, None, None], st, pos, kmap[K], emap[E]]
        return self.fixed_[ri, wi], vals * present

    def predict_encoded(self, X: np.ndarray) -> np.ndarray:
        """Canary units for ordinal-encoded architectures (the vectorized fast path)."""
        self._check_fitted()
        a, b = self.coef_
        return a * self.lut_sum(X) + b

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        self._check_fitted()
        return {"name": self.name, "params": self.get_params(), "space": self.space_.to_dict(),
                "canary_reference_ms": self.canary_reference_ms_, "coef": list(self.coef_),
                "fixed": self.fixed_.tolist(), "stage": self.stage_.tolist(),
                "interpolated_keys": self.interpolated_keys_, "n_table_entries": self.n_table_entries_}

    @classmethod
    def from_dict(cls, d: dict) -> "LutPredictor":
        p = cls(**d["params"])
        p.space_ = SearchSpace.from_dict(d["space"])
        p.canary_reference_ms_ = saved_positive(d["canary_reference_ms"], "canary_reference_ms")
        p.coef_ = tuple(float(x) for x in finite_array(d["coef"], "coef"))
        # table entries are latencies (canary units): never negative
        p.fixed_ = finite_array(d["fixed"], "lookup table 'fixed'", min_value=0.0)
        p.stage_ = finite_array(d["stage"], "lookup table 'stage'", min_value=0.0)
        sp = p.space_
        want = (len(sp.resolutions), len(sp.width_mults), N_STAGES, 2, len(sp.kernels), len(sp.expands))
        if p.stage_.shape != want or p.fixed_.shape != want[:2]:
            raise ValueError(f"lookup table has shape {p.stage_.shape}, expected {want}")
        p.interpolated_keys_ = list(d.get("interpolated_keys", []))
        p.n_table_entries_ = int(d.get("n_table_entries", 0))
        return p
