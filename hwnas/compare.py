"""MACs versus measured latency: how well does a cost proxy rank architectures on a device?

Everything here works on a device profile's measured data (``Profile.table("arch")``: the
end-to-end architectures, drift-corrected ms = canary-relative x the profile's canary
reference) plus, optionally, the profile's zoo models of other CNN families and ONNX models
measured right now.  For a *proxy* (MACs, params, a latency predictor's output) against
measured latency it computes:

* Pearson, Spearman and Kendall correlation;
* the share of **misranked pairs**: pairs the proxy orders one way and latency the other
  (pairs tied in either are left out);
* the **spread among near-equals**: for every pair whose proxy values are within ±5% of each
  other (larger / smaller <= 1.05), how much their latencies differ (slower / faster - 1);
* the **worst counterexamples**: A has a lower proxy than B, yet A is slower; largest
  latency ratio first, each model used in at most one pair so the list shows different cases.

The default latency predictor is judged the same way, but fairly: a fresh one is fitted on
one half of the architectures (``holdout_split``) and scored on the other half, next to MACs
on that same half.

Across devices (one profile per device), under one latency budget T: the **MACs-optimal**
architecture is what a MACs-constrained choice makes (T turned into a MACs budget with the
device's own linear fit latency ~ a*MACs + b, then the architecture with the most MACs under
it), the **latency-optimal** one is the architecture with the most MACs whose *measured*
latency is within T.  Both are taken from architectures measured on every device given, and
"most MACs" stands in for capacity; ``hwnas search`` optimizes an accuracy estimate instead.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from .errors import HwnasError, InputError

#: fewest measured architectures a profile needs for the statistics
MIN_ARCHS = 20
#: "near-equal" proxy values: larger / smaller within 1 + this
NEAR_EQUAL_TOL = 0.05
#: quantiles of the first profile's measured latencies used as default budgets
BUDGET_QUANTILES = (0.25, 0.5, 0.75)

Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# statistics of a proxy against measured latency


def misranked_pairs(proxy: Sequence[float], latency: Sequence[float]) -> tuple[int, int]:
    """(pairs ordered one way by the proxy and the other by latency, pairs tied in neither)."""
    x = np.asarray(proxy, dtype=float)
    y = np.asarray(latency, dtype=float)
    if len(x) != len(y):
        raise ValueError("proxy and latency differ in length")
    i, j = np.triu_indices(len(x), 1)
    dx = np.sign(x[i] - x[j])
    dy = np.sign(y[i] - y[j])
    comparable = (dx != 0) & (dy != 0)
    return int((comparable & (dx != dy)).sum()), int(comparable.sum())


def near_equal_spread(names: Sequence[str], proxy: Sequence[float], latency: Sequence[float],
                      tol: float = NEAR_EQUAL_TOL) -> dict:
    """Latency spread among pairs whose proxy values are within ``tol`` of each other.

    A pair (i, j) is near-equal when max(proxy) / min(proxy) <= 1 + tol; its spread is
    slower / faster - 1.  Returns the number of such pairs, the median, 90th percentile and
    largest spread (fractions), and the pair with the largest one.
    """
    x = np.asarray(proxy, dtype=float)
    y = np.asarray(latency, dtype=float)
    i, j = np.triu_indices(len(x), 1)
    lo, hi = np.minimum(x[i], x[j]), np.maximum(x[i], x[j])
    near = (lo > 0) & (hi <= lo * (1 + tol))
    out: dict = {"tolerance": tol, "pairs": int(near.sum())}
    if not near.any():
        return out | {"median": None, "p90": None, "max": None, "worst": None}
    ii, jj = i[near], j[near]
    spread = np.maximum(y[ii], y[jj]) / np.minimum(y[ii], y[jj]) - 1.0
    w = int(np.argmax(spread))
    fast, slow = (ii[w], jj[w]) if y[ii[w]] <= y[jj[w]] else (jj[w], ii[w])
    out |= {"median": float(np.median(spread)), "p90": float(np.quantile(spread, 0.9)), "max": float(spread[w]),
            "worst": {"fast": str(names[fast]), "fast_proxy": float(x[fast]), "fast_latency_ms": float(y[fast]),
                      "slow": str(names[slow]), "slow_proxy": float(x[slow]), "slow_latency_ms": float(y[slow])}}
    return out


def _wrong_way(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (a, b) where a has the lower proxy yet the higher latency."""
    return np.nonzero((x[:, None] < x[None, :]) & (y[:, None] > y[None, :]))


def _pair(names: Sequence[str], x: np.ndarray, y: np.ndarray, ia: int, ib: int) -> dict:
    return {"a": str(names[ia]), "a_proxy": float(x[ia]), "a_latency_ms": float(y[ia]),
            "b": str(names[ib]), "b_proxy": float(x[ib]), "b_latency_ms": float(y[ib]),
            "latency_ratio": float(y[ia] / y[ib]), "proxy_ratio": float(x[ia] / x[ib])}


def _counterexamples(names: Sequence[str], x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray,
                     k: int) -> list[dict]:
    if len(a) == 0:
        return []
    order = np.argsort(-(y[a] / y[b]), kind="stable")
    used: set[int] = set()
    out = []
    for o in order:
        ia, ib = int(a[o]), int(b[o])
        if ia in used or ib in used:
            continue
        used |= {ia, ib}
        out.append(_pair(names, x, y, ia, ib))
        if len(out) >= k:
            break
    return out


def _largest_gap(names: Sequence[str], x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict | None:
    if len(a) == 0:
        return None
    o = int(np.argmin(x[a] / x[b]))
    return _pair(names, x, y, int(a[o]), int(b[o]))


def counterexamples(names: Sequence[str], proxy: Sequence[float], latency: Sequence[float], k: int = 5) -> list[dict]:
    """Pairs where A has a lower proxy than B yet is slower, largest latency ratio A/B first.

    Each model appears in at most one pair, so the list shows ``k`` different cases rather
    than one slow model against its k neighbours.
    """
    x = np.asarray(proxy, dtype=float)
    y = np.asarray(latency, dtype=float)
    return _counterexamples(names, x, y, *_wrong_way(x, y), k)


def largest_gap(names: Sequence[str], proxy: Sequence[float], latency: Sequence[float]) -> dict | None:
    """The pair where A is slower than B despite the largest proxy gap (smallest proxy_A / proxy_B)."""
    x = np.asarray(proxy, dtype=float)
    y = np.asarray(latency, dtype=float)
    return _largest_gap(names, x, y, *_wrong_way(x, y))


def proxy_stats(names: Sequence[str], proxy: Sequence[float], latency: Sequence[float], k: int = 5) -> dict:
    """Every statistic of a proxy against measured latency (see the module docstring)."""
    x = np.asarray(proxy, dtype=float)
    y = np.asarray(latency, dtype=float)
    if len(x) < 3:
        raise HwnasError(f"need at least 3 models for correlation statistics, got {len(x)}")
    mis, comp = misranked_pairs(x, y)
    a, b = _wrong_way(x, y)
    return {
        "n": int(len(x)),
        "pearson": float(sps.pearsonr(x, y).statistic),
        "spearman": float(sps.spearmanr(x, y).statistic),
        "kendall": float(sps.kendalltau(x, y).statistic),
        "misranked_pairs": mis,
        "comparable_pairs": comp,
        "misranked_share": mis / comp if comp else float("nan"),
        "near_equal": near_equal_spread(names, x, y),
        "counterexamples": _counterexamples(names, x, y, a, b, k),
        "largest_gap": _largest_gap(names, x, y, a, b),
    }


# --------------------------------------------------------------------------------------------
# MACs-optimal vs latency-optimal under a budget, on one or more devices


def default_budgets(latency_ms: Sequence[float]) -> list[float]:
    """The default budgets: the ``BUDGET_QUANTILES`` of the given latencies, rounded to 0.1 ms."""
    return [round(float(np.quantile(latency_ms, q)), 1) for q in BUDGET_QUANTILES]


def budget_picks(keys: Sequence[str], macs: Sequence[float], latency_ms: Sequence[float], budget_ms: float,
                 fit: tuple[float, float] | None = None) -> dict:
    """The MACs-optimal and the latency-optimal architecture under ``budget_ms`` on one device.

    ``fit`` = (a, b) of latency ~ a*MACs + b on this device (default: least squares on the
    given points).  MACs budget = (budget - b) / a; MACs pick = most MACs within it;
    latency pick = most MACs with measured latency <= budget.
    """
    k = np.asarray(keys, dtype=object)
    m = np.asarray(macs, dtype=float)
    y = np.asarray(latency_ms, dtype=float)
    a, b = fit if fit is not None else np.polyfit(m, y, 1)
    macs_budget = (budget_ms - b) / a if a > 0 else float("inf")

    def pick(mask: np.ndarray) -> dict | None:
        if not mask.any():
            return None
        idx = np.flatnonzero(mask)
        i = int(idx[np.argmax(m[idx])])
        return {"key": str(k[i]), "macs": float(m[i]), "latency_ms": float(y[i]), "fits": bool(y[i] <= budget_ms)}

    mp = pick(m <= macs_budget)
    lp = pick(y <= budget_ms)
    out = {"budget_ms": float(budget_ms), "macs_budget": float(macs_budget), "fit": [float(a), float(b)],
           "macs_pick": mp, "latency_pick": lp, "same": bool(mp and lp and mp["key"] == lp["key"])}
    if mp and lp:
        out["latency_diff"] = mp["latency_ms"] / lp["latency_ms"] - 1.0  # MACs pick vs latency pick
        out["macs_diff"] = mp["macs"] / lp["macs"] - 1.0
        out["budget_overshoot"] = mp["latency_ms"] / budget_ms - 1.0  # > 0: the MACs pick misses the budget
    return out


def check_budgets(budgets_ms: Sequence[float] | None) -> None:
    from .validate import positive_number

    for b in budgets_ms or ():
        positive_number(b, "budget", "ms")


def compare_devices(profiles: Sequence, budgets_ms: Sequence[float] | None = None) -> dict:
    """MACs-optimal vs latency-optimal per budget and per device (profile).

    Only architectures measured on every device are used, so the picks are comparable; each
    device's MACs fit uses all of its own measured architectures.  Default budgets: the 25th,
    50th and 75th percentile of the first profile's latencies over those architectures.
    """
    tables = [p.table("arch").set_index("key") for p in profiles]
    predicted = [False] * len(profiles)
    for i, p in enumerate(profiles[1:], start=1):
        if getattr(p, "meta", {}).get("few_shot"):
            # a few-shot device measured only a handful: price the first profile's architectures
            # with its (transfer) predictor instead
            from .predictors import load_predictor

            t = tables[0][["macs"]].copy()
            t["corrected_ms"] = load_predictor(p.dir).predict(list(t.index))
            tables[i], predicted[i] = t, True
    common = set(tables[0].index)
    for t in tables[1:]:
        common &= set(t.index)
    keys = sorted(common)
    if len(keys) < 3:
        raise InputError(f"the profiles share only {len(keys)} measured architectures; comparing devices needs "
                         f"at least 3 (profile them with the same --seed and space)")
    if budgets_ms is None:
        budgets_ms = default_budgets(tables[0].loc[keys, "corrected_ms"].to_numpy(float))
    check_budgets(budgets_ms)
    names = [p.device.name for p in profiles]
    labels = [n if names.count(n) == 1 else f"{n} ({p.dir})" for n, p in zip(names, profiles)]
    # each device's linear MACs -> latency fit, on all of its own architectures
    fits = [tuple(np.polyfit(t["macs"].to_numpy(float), t["corrected_ms"].to_numpy(float), 1)) for t in tables]
    # the common architectures' MACs and latency on each device
    common_pts = [(sub["macs"].to_numpy(float), sub["corrected_ms"].to_numpy(float))
                  for sub in (t.loc[keys] for t in tables)]
    rows = []
    for budget in budgets_ms:
        for p, t, label, fit, pred, (m, ms) in zip(profiles, tables, labels, fits, predicted, common_pts):
            r = budget_picks(keys, m, ms, budget, fit)
            r["device"] = label
            r["profile"] = str(p.dir)
            r["predicted"] = pred
            # what each pick costs on the other devices
            for side in ("macs_pick", "latency_pick"):
                if r[side]:
                    r[side]["on_devices"] = {lab: float(u.loc[r[side]["key"], "corrected_ms"])
                                             for lab, u in zip(labels, tables)}
            rows.append(r)
    return {"n_common_archs": len(keys), "devices": labels,
            "predicted_devices": [lab for lab, f in zip(labels, predicted) if f],
            "budgets_ms": [float(b) for b in budgets_ms], "rows": rows,
            "objective": "most MACs (a capacity proxy); MACs budget from each device's linear MACs->latency fit"}


# --------------------------------------------------------------------------------------------
# int8 vs fp32 on the same machine settings


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

    df = pd.DataFrame({"resolution": [_resolution(x) for x in keys], "width": [float(x.split("_")[1][1:]) for x in keys],
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


# --------------------------------------------------------------------------------------------
# the whole comparison of one profile


@dataclass
class Comparison:
    """What ``hwnas compare`` found: statistics (JSON-able) and the data behind them."""

    stats: dict
    points: pd.DataFrame  # source, name, family, resolution, macs, params, latency_ms
    heldout: pd.DataFrame  # key, resolution, macs, measured_ms, predicted_ms, macs_linear_ms
    profile: object = None  # the primary Profile
    profiles: list = field(default_factory=list)


def _resolution(key: str) -> int | None:
    from .space import Arch

    try:
        return Arch.parse(key).resolution
    except ValueError:
        return None


def _zoo_points(profile) -> pd.DataFrame:
    df = profile.table("zoo")
    if df.empty:
        return pd.DataFrame(columns=["source", "name", "family", "resolution", "macs", "params", "latency_ms"])
    return pd.DataFrame({
        "source": "zoo",
        "name": df["target"].map(lambda t: t.get("name")),
        "family": df["target"].map(lambda t: t.get("family")),
        "resolution": df["target"].map(lambda t: t.get("resolution")),
        "macs": df["macs"].astype(float),
        "params": df["params"].astype(float),
        "latency_ms": df["corrected_ms"].astype(float),
    })


def load_models(paths: Sequence, input_shapes: dict[str, list[int]] | None = None) -> list:
    """Load and check every ONNX file up front (``InputError`` naming the file on any problem).
    Already loaded models (``LoadedModel``) pass through."""
    from .onnx_io import LoadedModel, load_onnx

    loaded = []
    for p in paths:
        if isinstance(p, LoadedModel):
            loaded.append(p)
            continue
        p = Path(p)
        try:
            loaded.append(load_onnx(p, input_shapes or None))
        except InputError as e:
            raise InputError(f"--models {p}: {e}") from None
    return loaded


def measure_models(profile, loaded: Sequence, progress: Progress | None = None, config=None) -> pd.DataFrame:
    """MACs, params and measured latency (ms on the profile's device) of ONNX models.

    Latency = canary-relative measurement x the profile's canary reference, so it is
    comparable with the profile's own (drift-corrected) figures.
    """
    from .measure import Measurer
    from .onnx_io import onnx_macs, onnx_params

    rows = []
    with Measurer(profile.device, config) as m:
        for lm in loaded:
            r = m.measure(lm.model, lm.path.name)
            shape = lm.inputs[0].shape if lm.inputs else ()
            rows.append({"source": "onnx", "name": lm.path.name, "family": f"onnx: {lm.path.stem}",
                         "resolution": int(shape[-1]) if len(shape) == 4 else None,
                         "macs": float(onnx_macs(lm.model)), "params": float(onnx_params(lm.model)),
                         "latency_ms": r.relative_to_canary * profile.canary_reference_ms,
                         "relative_to_canary": r.relative_to_canary, "noise_rel": r.noise_rel,
                         "measured_now_ms": r.latency_ms, "path": str(lm.path)})
            if progress:
                progress(f"measured {lm.path.name}")
    return pd.DataFrame(rows)


def default_arch_predictor(profile_dir: Path) -> str:
    """The profile's default predictor for architectures (``learned`` if none is trained)."""
    from .predictors import read_index

    try:
        return read_index(profile_dir)["default"]["arch"]
    except HwnasError:
        return "learned"


def heldout_predictions(profile, name: str) -> pd.DataFrame:
    """Fit ``name`` and the MACs-linear baseline on one half of the architectures; predict the other."""
    from .predictors import make_predictor
    from .predictors.data import arch_data, holdout_split

    arch = profile.table("arch")
    train, test = holdout_split(list(arch["key"]))
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


def require_enough_archs(profile) -> int:
    n = len(profile.table("arch"))
    if n < MIN_ARCHS:
        raise InputError(
            f"profile {profile.dir} has {n} measured architectures; MACs-vs-latency statistics need at least "
            f"{MIN_ARCHS} (make a larger one: `hwnas profile --device {profile.device.name} --out NEW_DIR --n-archs 100`)"
        )
    return n


def load_profile(directory: str | Path):
    """``Profile.load`` with its machine-mismatch warning turned into a returned message."""
    from .profile import DeviceMismatchWarning, Profile

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeviceMismatchWarning)
        prof = Profile.load(directory)
    msgs = [str(w.message) for w in caught if issubclass(w.category, DeviceMismatchWarning)]
    for w in caught:
        if not issubclass(w.category, DeviceMismatchWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return prof, msgs


def open_profiles(profile_dirs: Sequence) -> tuple[list, list[str]]:
    """Load profiles (directories, or ``Profile`` objects passed through), each with enough
    measured architectures for the statistics; returns them and any machine-mismatch notes."""
    from .profile import Profile

    if not profile_dirs:
        raise InputError("give at least one profile")
    profiles, notes = [], []
    for d in profile_dirs:
        if isinstance(d, Profile):
            p = d
        else:
            p, msgs = load_profile(d)
            notes += msgs
        if not (profiles and p.meta.get("few_shot")):  # a later few-shot device is priced by its predictor
            require_enough_archs(p)
        profiles.append(p)
    return profiles, notes


def compare(profile_dirs: Sequence[str | Path], models: Sequence = (), budgets_ms: Sequence[float] | None = None,
            predictor: str | None = None, input_shapes: dict[str, list[int]] | None = None,
            progress: Progress | None = None, notes_in: Sequence[str] = (), measure_config=None) -> Comparison:
    """MACs vs measured latency on the first profile (plus ONNX ``models``), the default
    predictor's held-out statistics, and MACs- vs latency-optimal picks on every profile.

    ``profile_dirs`` may hold ``Profile`` objects already opened (``open_profiles``; pass
    their machine notes as ``notes_in``).  ``measure_config``: how to time the ONNX models
    (``MeasureConfig``; default the engine's)."""
    from .predictors import make_predictor

    say = progress or (lambda msg: None)
    loaded = load_models(models, input_shapes)  # fail on a bad file before any long step
    profiles, notes = open_profiles(profile_dirs)
    notes = list(notes_in) + notes
    prof = profiles[0]
    arch = prof.table("arch")
    say(f"loaded {len(profiles)} profile(s)")

    keys = list(arch["key"])
    resolutions = [_resolution(k) for k in keys]
    lat = arch["corrected_ms"].to_numpy(float)
    stats: dict = {
        "profile": str(prof.dir), "device": prof.device.name, "canary_reference_ms": prof.canary_reference_ms,
        "n_archs": len(keys), "warnings": notes,
        "noise": prof.noise_summary().get("arch", {}),
        "latency": "drift-corrected ms: canary-relative measurement x the profile's canary reference",
        "archs": {"macs": proxy_stats(keys, arch["macs"].to_numpy(float), lat),
                  "params": proxy_stats(keys, arch["params"].to_numpy(float), lat)},
    }
    per_gmac = arch.assign(resolution=resolutions,
                           width=[k.split("_")[1][1:] for k in keys], ms_per_gmac=lat / (arch["macs"] / 1e9))
    stats["archs"]["ms_per_gmac"] = [
        {"resolution": int(r), "width_mult": float(w), "n": len(g), "median": float(g["ms_per_gmac"].median()),
         "min": float(g["ms_per_gmac"].min()), "max": float(g["ms_per_gmac"].max())}
        for (r, w), g in per_gmac.groupby(["resolution", "width"])]
    arch_points = pd.DataFrame({"source": "space", "name": keys, "family": "MobileNetV3 space",
                                "resolution": resolutions, "macs": arch["macs"].astype(float),
                                "params": arch["params"].astype(float), "latency_ms": lat})
    say("MACs vs latency statistics")

    # the default predictor, held out
    name = predictor or default_arch_predictor(prof.dir)
    from .predictors import KNOWN_PREDICTORS

    if name not in KNOWN_PREDICTORS:
        make_predictor(name)  # unknown name -> InputError
    try:
        if prof.meta.get("few_shot") or name == "transfer":
            raise HwnasError(f"{prof.dir} is a few-shot profile; judge its predictor on a full profile of the "
                             f"device with `hwnas evaluate --profile {prof.dir}`")
        ho = heldout_predictions(prof, name)
    except HwnasError as e:
        ho = pd.DataFrame(columns=["key", "resolution", "macs", "measured_ms", "predicted_ms", "macs_linear_ms"])
        stats["predictor"] = {"name": name, "error": str(e)}
    else:
        from .predictors.evaluate import metrics

        y = ho["measured_ms"].to_numpy(float)
        stats["predictor"] = {
            "name": name, "n_train": int(ho["n_train"].iloc[0]), "n_test": len(ho),
            "heldout": proxy_stats(list(ho["key"]), ho["predicted_ms"].to_numpy(float), y),
            "macs_same_split": proxy_stats(list(ho["key"]), ho["macs"].to_numpy(float), y),
            "accuracy": metrics(ho["predicted_ms"].to_numpy(float), y),
            "macs_linear_accuracy": metrics(ho["macs_linear_ms"].to_numpy(float), y),
        }
        ho = ho.drop(columns="n_train")
    say(f"held-out {name} predictor")

    # other CNN families (the profile's zoo) and the given ONNX models
    zoo = _zoo_points(prof)
    onnx_pts = measure_models(prof, loaded, progress, measure_config) if loaded else pd.DataFrame()
    fam = pd.concat([zoo, onnx_pts], ignore_index=True) if len(onnx_pts) else zoo
    if len(fam):
        per_gmac = fam["latency_ms"] / (fam["macs"] / 1e9)
        i_lo, i_hi = int(np.argmin(per_gmac)), int(np.argmax(per_gmac))
        stats["families"] = {
            "n": len(fam),
            "ms_per_gmac": {"min": float(per_gmac.iloc[i_lo]), "min_model": str(fam["name"].iloc[i_lo]),
                            "max": float(per_gmac.iloc[i_hi]), "max_model": str(fam["name"].iloc[i_hi]),
                            "ratio": float(per_gmac.iloc[i_hi] / per_gmac.iloc[i_lo]),
                            "by_family": {f: float(v) for f, v in per_gmac.groupby(fam["family"]).median().items()}},
            "macs": proxy_stats(list(fam["name"]), fam["macs"].to_numpy(float), fam["latency_ms"].to_numpy(float))
            if len(fam) >= 3 else None,
        }
    if len(onnx_pts):
        stats["models"] = onnx_pts.drop(columns=["source"]).to_dict(orient="records")
    say("other model families")

    stats["devices"] = compare_devices(profiles, budgets_ms)
    say("MACs-optimal vs latency-optimal")
    pair = precision_pair(profiles)
    if pair is not None:
        try:
            stats["int8"] = compare_precisions(*pair)
        except InputError as e:  # e.g. a few-shot int8 profile measured other architectures
            stats["warnings"].append(f"no int8-vs-fp32 section: {e}")
        say("int8 vs fp32")
    points = pd.concat([arch_points, fam], ignore_index=True) if len(fam) else arch_points
    return Comparison(stats=_jsonable(stats), points=points, heldout=ho, profile=prof, profiles=profiles)


def profiled_archs(profile) -> list[str]:
    """Architectures of the profile whose kernels were profiled (measured per-kernel records)."""
    arch_keys = set(profile.table("arch")["key"])
    return [k for k in profile.kernel_profiles["arch"] if k in arch_keys]


def report_breakdown(profile) -> dict:
    """The per-kernel breakdown a report shows: :func:`kernel_breakdown` of the median profiled
    architecture, or ``{"arch": None, "missing": why}`` when the profile holds no per-kernel records
    (measured with ``--n-kernel-profiles 0``, like ``profiles/cpu-2t``): the report then says so
    and the rest of it is written as usual."""
    if not profiled_archs(profile):
        return {"arch": None, "missing": f"profile {profile.dir} holds no per-kernel records of an architecture "
                                         f"(measured with --n-kernel-profiles 0 or stopped before that part)"}
    return kernel_breakdown(profile)


def kernel_breakdown(profile, arch: str | None = None, with_prediction: bool = True) -> dict:
    """Per-kernel-family latency of one architecture, in ms on the profile's device.

    Measured (when the architecture's kernels were profiled): ORT profiler kernel times,
    scaled so they add up to the architecture's canary-bracketed end-to-end latency (the
    profiler inflates kernel times).  Predicted: the kernel predictor's per-kernel figures,
    scaled to its calibrated end-to-end prediction.  ``arch=None`` picks the profiled
    architecture with the median latency.
    """
    from .predictors.kernel_features import kernel_family, records_from_frame

    table = profile.table("arch").set_index("key")
    profiled = profiled_archs(profile)
    if arch is None:
        if not profiled:
            raise HwnasError(f"profile {profile.dir} holds no per-kernel records of an architecture")
        lat = table.loc[profiled, "corrected_ms"]
        arch = str(lat.index[int(np.argsort(lat.to_numpy())[len(lat) // 2])])
    out: dict = {"arch": arch, "profiled": arch in profiled}
    if arch in profiled:
        kr = profile.kernel_records[profile.kernel_records["arch"] == arch]
        recs = records_from_frame(kr)
        total_raw = sum(r.duration_ms for r in recs)
        e2e = float(table.loc[arch, "corrected_ms"])
        scale = e2e / total_raw if total_raw > 0 else 0.0
        meas: dict[str, float] = {}
        for r in recs:
            f = kernel_family(r.op_type, r.input_shapes, r.output_shapes, r.attributes) or "other"
            meas[f] = meas.get(f, 0.0) + r.duration_ms * scale
        out["measured"] = meas
        out["measured_ms"] = e2e
        out["measured_kernels"] = len(recs)
    if with_prediction:
        from .predictors import load_predictor

        try:
            kp = load_predictor(profile.dir, "kernel")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                preds = kp.breakdown(arch)
        except HwnasError as e:
            out["prediction_error"] = str(e)
        else:
            # exact sums in a fixed family order: ORT does not always list the kernels in the same order
            s = math.fsum(p.relative for p in preds)
            e2e_rel = kp.calibrate_sum(s)
            scale = e2e_rel / max(s, 1e-12) * kp.canary_reference_ms_
            by_family: dict[str, list[float]] = {}
            for p in preds:
                by_family.setdefault("other" if p.family == "uncovered" else p.family, []).append(p.relative * scale)
            out["predicted"] = {f: math.fsum(by_family[f]) for f in sorted(by_family)}
            out["predicted_ms"] = e2e_rel * kp.canary_reference_ms_
    return out


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return o


def headline(stats: dict) -> list[str]:
    """The lesson in a few lines of plain text."""
    a = stats["archs"]["macs"]
    lines = [
        f"{stats['n_archs']} measured architectures on {stats['device']}: MACs vs latency Pearson {a['pearson']:.3f}, "
        f"Spearman {a['spearman']:.3f}, Kendall {a['kendall']:.3f}; MACs misrank {100 * a['misranked_share']:.1f}% "
        f"of {a['comparable_pairs']} pairs",
    ]
    ne = a["near_equal"]
    if ne.get("max") is not None:
        w = ne["worst"]
        lines.append(f"among {ne['pairs']} pairs with MACs within ±{100 * ne['tolerance']:.0f}%: latency differs by "
                     f"{100 * ne['median']:.1f}% at the median, {100 * ne['p90']:.1f}% at p90, up to "
                     f"{100 * ne['max']:.1f}% ({w['fast_latency_ms']:.2f} vs {w['slow_latency_ms']:.2f} ms at "
                     f"{w['fast_proxy'] / 1e6:.0f} / {w['slow_proxy'] / 1e6:.0f} MMACs)")
    if a["counterexamples"]:
        c = a["counterexamples"][0]
        lines.append(f"worst counterexample: {c['a_proxy'] / 1e6:.1f} MMACs runs {c['a_latency_ms']:.2f} ms, "
                     f"{c['b_proxy'] / 1e6:.1f} MMACs runs {c['b_latency_ms']:.2f} ms ({c['latency_ratio']:.2f}x the "
                     f"latency with fewer MACs)")
    g = a.get("largest_gap")
    if g:
        lines.append(f"largest MACs gap the wrong way: {g['a_proxy'] / 1e6:.0f} MMACs runs {g['a_latency_ms']:.2f} ms, "
                     f"slower than {g['b_proxy'] / 1e6:.0f} MMACs at {g['b_latency_ms']:.2f} ms "
                     f"({100 * (1 - g['proxy_ratio']):.0f}% fewer MACs)")
    groups = stats["archs"].get("ms_per_gmac") or []
    if groups:
        lo = min(groups, key=lambda r: r["median"])
        hi = max(groups, key=lambda r: r["median"])
        lines.append(f"median latency per GMAC by resolution/width: {lo['median']:.1f} ms (r{lo['resolution']} "
                     f"w{lo['width_mult']}) to {hi['median']:.1f} ms (r{hi['resolution']} w{hi['width_mult']})")
    p = stats.get("predictor", {})
    if "heldout" in p:
        h, mm = p["heldout"], p["macs_same_split"]
        lines.append(f"{p['name']} predictor on {p['n_test']} held-out architectures: Spearman {h['spearman']:.3f} "
                     f"(MACs {mm['spearman']:.3f}), misranked pairs {100 * h['misranked_share']:.1f}% "
                     f"(MACs {100 * mm['misranked_share']:.1f}%), within ±10% {100 * p['accuracy']['within_10pct']:.1f}% "
                     f"(MACs-linear fit {100 * p['macs_linear_accuracy']['within_10pct']:.1f}%)")
    f = stats.get("families")
    if f:
        g = f["ms_per_gmac"]
        lines.append(f"{f['n']} models of other families: latency per GMAC from {g['min']:.1f} ms ({g['min_model']}) "
                     f"to {g['max']:.1f} ms ({g['max_model']}), {g['ratio']:.1f}x")
    for r in stats.get("devices", {}).get("rows", []):
        mp, lp = r["macs_pick"], r["latency_pick"]
        if mp and lp:
            lines.append(f"budget {r['budget_ms']:.1f} ms on {r['device']}: MACs pick {mp['macs'] / 1e6:.0f} MMACs at "
                         f"{mp['latency_ms']:.2f} ms ({'fits' if mp['fits'] else 'misses the budget'}), latency pick "
                         f"{lp['macs'] / 1e6:.0f} MMACs at {lp['latency_ms']:.2f} ms"
                         + (" (same architecture)" if r["same"] else ""))
    q = stats.get("int8")
    if q:
        sp, rk = q["speedup"], q["ranking"]
        lines.append(f"int8 vs fp32 on {q['n_common_archs']} architectures: median speed-up {sp['median']:.2f}x "
                     f"({sp['min']:.2f}x to {sp['max']:.2f}x); latency ranking Spearman {rk['spearman']:.3f}, "
                     f"{100 * rk['misranked_share']:.1f}% of pairs change order")
    return lines
