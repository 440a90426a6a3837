"""int8 vs fp32 on the same machine settings: speed-ups and whether latency rankings change."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..errors import InputError
from .inputs import resolution_of
from .stats import misranked_pairs

def precision_pair(profiles: Sequence) -> tuple | None:
    """(fp32 profile, int8 profile) among ``profiles`` whose devices differ only in precision."""
    def settings(p) -> dict:
        d = p.device.to_dict()
        return {k: v for k, v in d.items() if k not in ("name", "description", "precision")}

    for a in profiles:
        for b in profiles:
            if a.device.precision == "fp32" and b.device.precision == "int8" and settings(a) == settings(b):
                return a, b
    return None


def compare_precisions(fp32, int8, k: int = 5) -> dict:
    """Which architectures int8 quantization speeds up, by how much, and whether rankings change.

    Uses the architectures measured on both profiles (drift-corrected ms)."""
    a = fp32.table("arch").set_index("key")
    b = int8.table("arch").set_index("key")
    keys = sorted(set(a.index) & set(b.index))
    if len(keys) < 3:
        raise InputError(f"the fp32 and int8 profiles share only {len(keys)} measured architectures; "
                         f"need at least 3")
    f = a.loc[keys, "corrected_ms"].to_numpy(float)
    q = b.loc[keys, "corrected_ms"].to_numpy(float)
    speedup = f / q
    order = np.argsort(speedup)
    bad, total = misranked_pairs(f, q)

    def row(i: int) -> dict:
        return {"key": keys[i], "fp32_ms": float(f[i]), "int8_ms": float(q[i]), "speedup": float(speedup[i])}

    df = pd.DataFrame({"resolution": [resolution_of(x) for x in keys], "width": [float(x.split("_")[1][1:]) for x in keys],
                       "speedup": speedup})
    return {
        "fp32_profile": str(fp32.dir), "int8_profile": str(int8.dir), "n_common_archs": len(keys),
        "speedup": {"median": float(np.median(speedup)), "min": float(speedup.min()), "max": float(speedup.max()),
                    "p10": float(np.quantile(speedup, 0.1)), "p90": float(np.quantile(speedup, 0.9)),
                    "share_slower_in_int8": float(np.mean(speedup < 1.0))},
        "by_resolution": {int(r): float(g.median()) for r, g in df.groupby("resolution")["speedup"]},
        "by_width": {float(w): float(g.median()) for w, g in df.groupby("width")["speedup"]},
        "most_helped": [row(int(i)) for i in order[::-1][:k]],
        "least_helped": [row(int(i)) for i in order[:k]],
        "ranking": {"spearman": float(sps.spearmanr(f, q).statistic), "kendall": float(sps.kendalltau(f, q).statistic),
                    "misranked_pairs": bad, "pairs": total, "misranked_share": bad / total if total else 0.0},
        "points": [{"key": x, "fp32_ms": float(u), "int8_ms": float(v)} for x, u, v in zip(keys, f, q)],
    }
