"""Saving a search: every evaluated candidate (CSV) and plots (PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError


DPI = 120


def pareto_mask(latency, accuracy) -> np.ndarray:
    """Candidates no other one beats: lower or equal latency and strictly higher accuracy."""
    lat = np.asarray(latency, dtype=float)
    acc = np.asarray(accuracy, dtype=float)
    order = np.lexsort((-acc, lat))
    keep = np.zeros(len(lat), dtype=bool)
    best = -np.inf
    for i in order:
        if acc[i] > best:
            keep[i] = True
            best = acc[i]
    return keep


def save_outputs(result, out_dir: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..figures import save_figure

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    df = result.history()
    df["evaluation"] = np.arange(len(df))
    df["pareto"] = pareto_mask(df["predicted_latency_ms"].to_numpy(), df["accuracy_estimate"].to_numpy())
    csv = out / "candidates.csv"
    df.to_csv(csv, index=False)
    paths = [csv]

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=DPI)
    budget = result.config.budgets_ms[0]
    feas = df["feasible_0"].to_numpy()
    ax.scatter(df.loc[~feas, "predicted_latency_ms"], df.loc[~feas, "accuracy_estimate"], s=4, c="0.75",
               label="over budget / limits", rasterized=True)
    ax.scatter(df.loc[feas, "predicted_latency_ms"], df.loc[feas, "accuracy_estimate"], s=4, c="tab:blue",
               label="feasible", rasterized=True)
    front = df[df["pareto"]].sort_values("predicted_latency_ms")
    ax.plot(front["predicted_latency_ms"], front["accuracy_estimate"], "-", c="tab:orange", lw=1.5, label="Pareto front")
    ax.axvline(budget, ls="--", c="tab:red", lw=1, label=f"budget {budget:g} ms")
    b = result.best[0]
    ax.scatter([b.predicted_latency_ms], [b.accuracy_estimate], marker="*", s=160, c="tab:red", zorder=5, label="chosen")
    ax.set_xlabel(f"predicted latency (ms, {Path(b.profile).name})")
    unit = f" ({result.accuracy_unit})" if result.accuracy_unit else ""
    ax.set_ylabel(f"accuracy estimate: {result.config.accuracy}{unit}")
    ax.set_title(f"search: {result.config.strategy}, {result.n_queries} candidates")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    paths.append(save_figure(fig, out / "pareto.png", dpi=DPI))

    fig, ax = plt.subplots(figsize=(7, 4), dpi=DPI)
    acc = df["accuracy_estimate"].to_numpy()
    best_so_far = np.maximum.accumulate(np.where(feas, acc, -np.inf))
    ok = np.isfinite(best_so_far)
    ax.plot(df["evaluation"][ok], best_so_far[ok], c="tab:blue")
    ax.set_xlabel("candidates evaluated")
    ax.set_ylabel(f"best feasible {result.config.accuracy}" + (f" ({result.accuracy_unit})" if result.accuracy_unit else ""))
    ax.set_title("search progress")
    ax.grid(alpha=0.3)
    paths.append(save_figure(fig, out / "progress.png", dpi=DPI))
    return paths
