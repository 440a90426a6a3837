"""A fingerprint of the machine, captured whenever something is measured.

Fields that decide whether two measurements are comparable (CPU model, core counts, ISA
flags, ONNX Runtime version) are listed in :data:`COMPARABLE_KEYS`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "sve",
)
COMPARABLE_KEYS = ("cpu_model", "logical_cores", "physical_cores", "isa_flags", "onnxruntime_version")


def _cpuinfo() -> list[dict[str, str]]:
    p = Path("/proc/cpuinfo")
    if not p.exists():
        return []
    procs, cur = [], {}
    for line in p.read_text(errors="replace").splitlines():
        if not line.strip():
            if cur:
                procs.append(cur)
            cur = {}
            continue
        k, _, v = line.partition(":")
        cur[k.strip()] = v.strip()
    if cur:
        procs.append(cur)
    return procs


def _mem_total_gib() -> float | None:
    p = Path("/proc/meminfo")
    if not p.exists():
        return None
    for line in p.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 2)
    return None


def capture() -> dict:
    """The fingerprint of this machine as a JSON-ready dict."""
    import numpy
    import onnxruntime as ort

    procs = _cpuinfo()
    first = procs[0] if procs else {}
    flags = set((first.get("flags") or first.get("Features") or "").split())
    physical = {(p.get("physical id", "0"), p.get("core id", str(i))) for i, p in enumerate(procs)}
    return {
        "cpu_model": first.get("model name") or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(physical) or None,
        "isa_flags": sorted(f for f in ISA_FLAGS if f in flags),
        "memory_gib": _mem_total_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime_version": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "numpy_version": numpy.__version__,
    }


def differences(recorded: dict, current: dict) -> list[str]:
    """Human-readable differences on the keys that make latencies incomparable."""
    out = []
    for k in COMPARABLE_KEYS:
        if recorded.get(k) != current.get(k):
            out.append(f"{k}: profile has {recorded.get(k)!r}, this machine has {current.get(k)!r}")
    return out
