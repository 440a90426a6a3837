"""The latency-predictor interface (scikit-learn style) and what predictors are fitted on.

Every predictor works in **canary units** internally (latency / the canary's latency, measured
right before and after), which survive the machine's drift; ``predict`` multiplies by the
profile's canary reference to give milliseconds on the profile's device, and
``predict_relative`` gives the canary-relative figure a user can rescale to today's machine
(``hwnas measure`` of the canary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Sequence, Union

import numpy as np
import onnx

from ..errors import HwnasError, InputError
from ..space import Arch, SearchSpace

Target = Union[Arch, str, onnx.ModelProto]


class NotTrainedError(HwnasError):
    """A predictor was used before ``fit`` (or a profile holds no trained predictor)."""


@dataclass(frozen=True)
class TargetSpec:
    """A resolved prediction target: an architecture of the space, or any ONNX model."""

    name: str
    arch: Arch | None = None
    model: onnx.ModelProto | None = None
    path: str | None = None  # the ONNX file, when the model came from one (ORT reads it directly)


def in_space(space: SearchSpace, arch: Arch) -> Arch:
    """``arch`` if it lies in ``space`` (a profile's, possibly restricted, search space), else an
    ``InputError`` naming the architecture, the value and the space."""
    try:
        return space.validate(arch)
    except ValueError as e:
        raise InputError(f"{arch} is outside this profile's search space: {e} (a predictor of the space's blocks "
                         f"cannot price it; use --predictor macs or kernel, or a profile of that space)") from None


def resolve(target: Target, space: SearchSpace | None = None, load: bool = True) -> TargetSpec:
    """A target as a spec.  ``load=False`` leaves an ONNX file unread (only its path is checked):
    for predictors that hand the path to ORT, which reads and validates it, and read the file
    themselves only to word an error (reading and checking a 50 MB model in Python costs
    10-40 ms and more here)."""
    if isinstance(target, TargetSpec):
        if load and target.arch is None and target.model is None and target.path is not None:
            # a file handed over unread: this predictor needs the model itself
            from ..onnx_io import load_onnx

            return TargetSpec(target.name, model=load_onnx(target.path).model, path=target.path)
        return target
    if isinstance(target, Arch):
        return TargetSpec(str(target), arch=target)
    if isinstance(target, onnx.ModelProto):
        return TargetSpec(target.graph.name or "model", model=target)
    if isinstance(target, str):
        if target.endswith(".onnx"):
            from ..onnx_io import check_path, load_onnx

            if not load:
                check_path(Path(target))
                return TargetSpec(target, path=target)
            return TargetSpec(target, model=load_onnx(target).model, path=target)
        try:
            a = Arch.parse(target)
        except ValueError as e:
            raise InputError(str(e)) from None
        return TargetSpec(target, arch=in_space(space, a) if space else a)
    raise InputError(f"cannot predict a {type(target).__name__}; give an architecture or an ONNX model")


class LatencyPredictor:
    """Base class.  Subclasses set ``name``, implement ``fit`` and ``_predict_relative``.

    ``__init__`` only stores parameters; learned state ends in ``_``; ``fit`` returns self.
    """

    name: ClassVar[str] = "base"
    handles_onnx: ClassVar[bool] = False
    #: builds an ORT session from every ONNX file it is given, so ORT reads and validates it
    #: (the file is read in Python only to word an error)
    validates_onnx: ClassVar[bool] = False
    #: fewest end-to-end architectures needed to fit
    min_archs: ClassVar[int] = 10
    #: the file a saved predictor was read from (None: fitted in this process); errors name it
    loaded_from: str | None = None
    #: prices thousands of architectures a second (False: each one is built and optimized by ORT)
    prices_quickly: ClassVar[bool] = True

    @property
    def label(self) -> str:
        """The registry name this predictor is known by (``hwnas predict --predictor``)."""
        return self.name

    # -- scikit-learn protocol --------------------------------------------------------------
    def get_params(self) -> dict:
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self"}

    def is_fitted(self) -> bool:
        return any(k.endswith("_") and not k.startswith("__") for k in vars(self))

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotTrainedError(f"predictor {self.name!r} is not trained; run `hwnas train --profile DIR` first")

    # -- prediction -------------------------------------------------------------------------
    def predict_relative(self, targets: Sequence[Target]) -> np.ndarray:
        """Latency in canary units, one per target, in order."""
        self._check_fitted()
        specs = [resolve(t, getattr(self, "space_", None), load=not self.validates_onnx) for t in targets]
        if not self.handles_onnx:
            bad = [s.name for s in specs if s.arch is None]
            if bad:
                raise InputError(
                    f"predictor {self.name!r} handles architectures of the space only, not ONNX models "
                    f"({bad[0]}); use --predictor kernel"
                )
        rel = np.asarray(self._predict_relative(specs), dtype=np.float64)
        return check_finite_latency(self, rel, lambda i: specs[i].name)

    def interval(self, kind: str = "arch"):
        """The prediction interval saved with this predictor for ``kind`` (``arch``: architectures
        of the space, ``onnx``: any ONNX model), a :class:`~hwnas.predictors.interval.PredictionInterval`,
        or None where the profile had too few held-out measurements to compute one."""
        return getattr(self, "intervals_", {}).get(kind)

    def predict(self, targets: Sequence[Target]) -> np.ndarray:
        """Latency in ms on the profile's device (canary units x the profile's canary reference)."""
        return self.predict_relative(targets) * self.canary_reference_ms_

    def _predict_relative(self, specs: Sequence[TargetSpec]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyPredictor":  # pragma: no cover - abstract
        raise NotImplementedError


def check_finite_latency(pred: LatencyPredictor, rel: np.ndarray, name_of: Callable[[int], str]) -> np.ndarray:
    """``rel`` (a predictor's canary units for a batch), or a one-line HwnasError naming the first
    target it gives no finite latency for: a saved predictor whose values were tampered with or
    overflow (a leaf of 1e6 in the log-space residual is ``inf`` ms)."""
    bad = ~np.isfinite(rel)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        src = f" (read from {pred.loaded_from})" if getattr(pred, "loaded_from", None) else ""
        raise HwnasError(f"predictor {pred.label!r}{src} gives a non-finite latency ({rel[i]}) for {name_of(i)}: "
                         "its saved values are corrupt or out of range; re-run `hwnas train`")
    return rel


def saved_positive(x, key: str) -> float:
    """A saved positive, finite number (``canary_reference_ms``): ValueError naming ``key`` for
    anything else, which the loader reports as a corrupt file."""
    v = float(x)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{key} must be a positive, finite number, got {x!r}")
    return v


def finite_array(x, key: str, min_value: float | None = None) -> np.ndarray:
    """Saved numbers as a float array, all finite (and >= ``min_value``): ValueError naming ``key``."""
    a = np.asarray(x, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{key} holds a non-finite value")
    if min_value is not None and a.size and a.min() < min_value:
        raise ValueError(f"{key} must be >= {min_value:g}, holds {a.min():g}")
    return a


def _fit_error(name: str, have: int, need: int) -> HwnasError:
    return HwnasError(
        f"profile too small to fit predictor {name!r}: it has {have} measured architectures, needs at least {need}"
    )


def require_archs(name: str, n: int, need: int) -> None:
    if n < need:
        raise _fit_error(name, n, need)



class EncodedPredictor(LatencyPredictor):
    """A predictor of the space's architectures with a vectorized ``predict_encoded`` (the
    search's fast path); per-target prediction validates and encodes, then goes through it."""

    def predict_encoded(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict_relative(self, specs: Sequence[TargetSpec]) -> np.ndarray:
        archs = [in_space(self.space_, s.arch) for s in specs]
        return self.predict_encoded(self.space_.encode(archs))
