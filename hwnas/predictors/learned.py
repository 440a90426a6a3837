"""Learned end-to-end predictor for the space: the lookup-table prediction corrected by
gradient-boosted trees on the architecture encoding (learning the residual in log space).

latency = lut(arch) * exp(gbm([encoding, log lut(arch)])).  Both parts are vectorized, so
batches of encoded architectures go through the search's fast path.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..profile import Profile
from .base import EncodedPredictor, require_archs, saved_positive
from .data import arch_data
from .lut import LutPredictor
from .serialize import export_model, import_model


class LearnedPredictor(EncodedPredictor):
    name = "learned"
    min_archs = 30

    def __init__(self, n_estimators: int = 100, max_depth: int = 3, learning_rate: float = 0.1,
                 subsample: float = 0.8, seed: int = 0) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.seed = seed

    def fit(self, profile: Profile, archs: Sequence[str] | None = None) -> "LearnedPredictor":
        from sklearn.ensemble import GradientBoostingRegressor

        data = arch_data(profile, archs)
        require_archs(self.name, len(data.archs), self.min_archs)
        lut = LutPredictor().fit(profile, archs)
        X = profile.space.encode(data.archs)
        base = lut.predict_encoded(X)
        est = GradientBoostingRegressor(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                        learning_rate=self.learning_rate, subsample=self.subsample,
                                        random_state=self.seed)
        est.fit(self._features(X, base), np.log(data.relative) - np.log(base))
        self.lut_ = lut
        self.residual_ = export_model(est)
        self._residual = import_model(self.residual_)
        self.space_ = profile.space
        self.canary_reference_ms_ = profile.canary_reference_ms
        return self

    @staticmethod
    def _features(X: np.ndarray, base: np.ndarray) -> np.ndarray:
        return np.hstack([X, np.log(base)[:, None]])

    def predict_encoded(self, X: np.ndarray) -> np.ndarray:
        """Canary units for ordinal-encoded architectures (vectorized fast path)."""
        self._check_fitted()
        base = self.lut_.predict_encoded(X)
        with np.errstate(over="ignore"):  # an overflow (a tampered residual) is inf, reported by the caller
            return base * np.exp(self._residual.predict(self._features(X, base)))

    def to_dict(self) -> dict:
        self._check_fitted()
        return {"name": self.name, "params": self.get_params(), "lut": self.lut_.to_dict(),
                "residual": self.residual_, "space": self.space_.to_dict(),
                "canary_reference_ms": self.canary_reference_ms_}

    @classmethod
    def from_dict(cls, d: dict) -> "LearnedPredictor":
        from ..space import SearchSpace

        p = cls(**d["params"])
        p.lut_ = LutPredictor.from_dict(d["lut"])
        p.residual_ = d["residual"]
        p._residual = import_model(p.residual_)
        p.space_ = SearchSpace.from_dict(d["space"])
        p.canary_reference_ms_ = saved_positive(d["canary_reference_ms"], "canary_reference_ms")
        return p
