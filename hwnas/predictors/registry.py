"""The latency predictors fitted from a profile, by name, and their saved-file format version.

The few-shot ``transfer`` predictor is not here: it wraps one of these (its reference) and is
read from disk by :mod:`hwnas.predictors.saved`, which knows every class."""

from __future__ import annotations

from typing import Callable

from ..errors import InputError
from .base import LatencyPredictor
from .kernel import KernelPredictor
from .learned import LearnedPredictor
from .lut import LutPredictor
from .macs import MacsPredictor

FORMAT_VERSION = 1

PREDICTORS: dict[str, Callable[[], LatencyPredictor]] = {
    "macs": lambda: MacsPredictor("macs"),
    "macs+": lambda: MacsPredictor("macs+"),
    "lut": LutPredictor,
    "learned": LearnedPredictor,
    "kernel": KernelPredictor,
}
#: the classes of the fitted-from-scratch predictors, by saved ``name`` (``macs+`` saves as ``macs``)
FITTED_CLASSES = {"macs": MacsPredictor, "lut": LutPredictor, "learned": LearnedPredictor, "kernel": KernelPredictor}
#: predictors of any ONNX model, judged on whole zoo families held out
ONNX_PREDICTORS = ("kernel", "macs")
#: every name ``--predictor`` accepts: the fitted-from-scratch ones, and ``transfer`` (few-shot profiles)
KNOWN_PREDICTORS = (*PREDICTORS, "transfer")


def predictor_from_dict(d: dict) -> LatencyPredictor:
    """A fitted-from-scratch predictor from its saved dict (``to_dict``); ValueError when it names
    no such class."""
    cls = FITTED_CLASSES.get(d.get("name"))
    if cls is None:
        raise ValueError(f"unknown predictor {d.get('name')!r}")
    return cls.from_dict(d)


def make_predictor(name: str) -> LatencyPredictor:
    if name not in PREDICTORS:
        raise InputError(f"unknown predictor {name!r}; choose from {', '.join(PREDICTORS)}")
    return PREDICTORS[name]()
