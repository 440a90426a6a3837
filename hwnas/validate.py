"""Numbers taken from the user (CLI options, device files, configs): one rule, one one-line error.

NaN passes every comparison (``nan <= 0`` is false) and infinity passes every lower bound, so a
plain ``x <= 0`` check lets both through: a NaN time budget was ignored, a NaN width multiplier
reached the graph builder.  Every such number goes through :func:`positive_number`.
"""

from __future__ import annotations

import math
import numbers

from .errors import InputError


def positive_number(value, what: str, unit: str = "", allow_zero: bool = False) -> float:
    """``value`` as a float if it is a finite number > 0 (>= 0 with ``allow_zero``; a number, or a
    string that parses as one), else an ``InputError`` naming ``what`` and the value."""
    v = value
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            v = None
    if (isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
            or v < 0 or (v == 0 and not allow_zero)):
        sign = "non-negative" if allow_zero else "positive"
        raise InputError(f"{what} must be a {sign}, finite number{f' of {unit}' if unit else ''}, got {value!r}")
    return float(v)
