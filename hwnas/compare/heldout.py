"""A latency predictor judged fairly: fitted on one half of a profile's measured architectures,
predicting the other half, next to the MACs-linear baseline fitted on the same half."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import HwnasError


def default_arch_predictor(profile_dir: Path) -> str:
    """The profile's default predictor for architectures (``learned`` if none is trained)."""
    from ..predictors import read_index

    try:
        return read_index(profile_dir)["default"]["arch"]
    except HwnasError:
        return "learned"


def heldout_predictions(profile, name: str, split: tuple[Sequence[str], Sequence[str]] | None = None) -> pd.DataFrame:
    """Fit ``name`` and the MACs-linear baseline on one half of the architectures; predict the other.

    ``split`` = (fit keys, predicted keys); default ``holdout_split`` of the measured architectures."""
    from ..predictors import make_predictor
    from ..predictors.data import arch_data, holdout_split

    arch = profile.table("arch")
    train, test = split if split is not None else holdout_split(list(arch["key"]))
    pred = make_predictor(name).fit(profile, train)
    macs = make_predictor("macs").fit(profile, train)
    data = arch_data(profile, test)
    ref = profile.canary_reference_ms
    sub = arch.set_index("key").loc[[str(a) for a in data.archs]]
    return pd.DataFrame({
        "key": [str(a) for a in data.archs],
        "resolution": [a.resolution for a in data.archs],
        "macs": sub["macs"].to_numpy(float),
        "measured_ms": data.relative * ref,
        "predicted_ms": pred.predict_relative(data.archs) * ref,
        "macs_linear_ms": macs.predict_relative(data.archs) * ref,
    }).assign(n_train=len(train))
