"""glibc allocator tuning for repeated ONNX Runtime graph optimizations: opt-in, per process.

Optimizing a 50 MB model allocates and frees ~150 MB in pieces of up to a few MB.  With glibc's
defaults those pieces come from fresh ``mmap``s or are trimmed back to the system, so every kernel
prediction page-faults them in again: here that made a 65 ms prediction take 100-120 ms one time
in three.  Serving allocations under 32 MB from the heap and keeping up to 512 MB of freed heap
removes those spikes (``benchmarks/predictor_speed.py``).  The cost: the process keeps its peak
heap (a few hundred MB at most) instead of returning it.

This changes the whole process, so a library call never does it unasked: the kernel predictor
applies it on its first prediction only after :func:`allow_tuning` (the ``hwnas`` command line
calls it).  ``HWNAS_MALLOC_TUNING=0`` keeps it off even then; ``=1`` opts in without code.
"""

from __future__ import annotations

import os
import sys

_STATE = {"wanted": False, "tuned": False}

#: glibc's <malloc.h> parameter numbers
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def allow_tuning(on: bool = True) -> None:
    """Opt in (or out again) to :func:`keep_freed_memory` at the next kernel prediction."""
    _STATE["wanted"] = bool(on)


def tuning_wanted() -> bool:
    env = os.environ.get("HWNAS_MALLOC_TUNING")
    if env == "0":
        return False
    return _STATE["wanted"] or env == "1"


def is_tuned() -> bool:
    """Whether this process's allocator has been tuned (by :func:`keep_freed_memory`)."""
    return _STATE["tuned"]


def keep_freed_memory() -> bool:
    """Tune this process's glibc allocator now (once per process; nothing on other C libraries
    or with ``HWNAS_MALLOC_TUNING=0``).  True when the tuning is in effect."""
    if _STATE["tuned"]:
        return True
    if os.environ.get("HWNAS_MALLOC_TUNING") == "0" or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only (musl has other mallopt semantics)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)  # glibc's maximum on 64-bit
    mallopt(_M_TRIM_THRESHOLD, 512 * 2**20)
    _STATE["tuned"] = True
    return True


def tune_if_wanted() -> bool:
    """What the kernel predictor calls before optimizing a graph."""
    return keep_freed_memory() if tuning_wanted() else _STATE["tuned"]
