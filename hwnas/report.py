"""Plots (matplotlib, PNG) and an offline HTML report of a MACs-vs-latency comparison.

``write_report(comparison, DIR)`` writes ``DIR/report.html`` with every table and figure (PNGs
embedded as base64 data URIs, also saved beside it), plus the data behind them:
``points.csv`` (every model: MACs, params, measured ms), ``heldout.csv`` (held-out predictions),
``compare.json`` (all statistics).  A search's candidates table (columns
``predicted_latency_ms`` and ``accuracy_estimate``) adds the Pareto-front figure.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import InputError
from .figures import FIG_DPI, save_figure
from .search.output import pareto_mask

_RES_MARKERS = {1.0: "o", 1.2: "^"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9.5,
                         "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": FIG_DPI})
    return plt


def _res_colors(resolutions: Sequence[int]) -> dict:
    import matplotlib

    res = sorted({int(r) for r in resolutions if r is not None and not pd.isna(r)})
    cmap = matplotlib.colormaps["viridis"]
    return {r: cmap(0.1 + 0.8 * i / max(len(res) - 1, 1)) for i, r in enumerate(res)}


def _width(name: str) -> float | None:
    parts = str(name).split("_")
    try:
        return float(parts[1][1:]) if len(parts) > 1 and parts[1].startswith("w") else None
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# figures


def plot_macs_vs_latency(points: pd.DataFrame, path: Path, device: str = "") -> Path:
    """Left: the space's architectures coloured by resolution (marker = width).  Right: other
    CNN families (profile zoo, ONNX models) coloured by family, log-log, space in grey."""
    plt = _plt()
    space = points[points["source"] == "space"]
    other = points[points["source"] != "space"]
    ncols = 2 if len(other) else 1
    fig, axes = plt.subplots(1, ncols, figsize=(13 if ncols == 2 else 7.5, 5.6), squeeze=False)
    ax = axes[0, 0]
    colors = _res_colors(space["resolution"])
    widths = space["name"].map(_width)
    for r, c in colors.items():
        for w, mk in _RES_MARKERS.items():
            sel = (space["resolution"] == r) & (widths == w)
            if sel.any():
                ax.scatter(space.loc[sel, "macs"] / 1e6, space.loc[sel, "latency_ms"], s=16, color=c, marker=mk,
                           alpha=0.75, edgecolors="none", label=f"r{r}, width {w}")
    if len(space) >= 2:
        a, b = np.polyfit(space["macs"].to_numpy(float), space["latency_ms"].to_numpy(float), 1)
        xs = np.linspace(space["macs"].min(), space["macs"].max(), 50)
        ax.plot(xs / 1e6, a * xs + b, color="black", lw=1, ls="--", label="linear fit on MACs")
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel("measured latency (ms, drift-corrected)")
    ax.set_title(f"{len(space)} architectures of the search space" + (f" on {device}" if device else ""))
    ax.legend(title="resolution, width", ncol=2, loc="upper left", frameon=True)
    if ncols == 2:
        import matplotlib

        ax = axes[0, 1]
        ax.scatter(space["macs"] / 1e6, space["latency_ms"], s=8, color="0.8", label="search space", zorder=1)
        fams = sorted(f for f in other["family"].unique() if not f.startswith("onnx"))
        onnx_fams = sorted(f for f in other["family"].unique() if f.startswith("onnx"))
        cmap, ocmap = matplotlib.colormaps["tab10"], matplotlib.colormaps["Dark2"]
        for i, f in enumerate(fams + onnx_fams):
            g = other[other["family"] == f]
            onnx = f.startswith("onnx")
            color = ocmap((i - len(fams)) % 8) if onnx else cmap(i % 10)
            ax.scatter(g["macs"] / 1e6, g["latency_ms"], s=160 if onnx else 40, marker="*" if onnx else "o",
                       color=color, edgecolors="black", linewidths=0.5, label=f, zorder=3 + onnx)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax)
        ax.set_xlabel("MACs (millions, log scale)")
        ax.set_ylabel("measured latency (ms, log scale)")
        n_onnx = int((other["source"] == "onnx").sum())
        n_fam = other.loc[other["source"] != "onnx", "family"].nunique()
        ax.set_title(f"{len(other) - n_onnx} models of {n_fam} other CNN families (profile)"
                     + (f"\n+ {n_onnx} ONNX model(s) measured now" if n_onnx else ""))
        ax.legend(title="family", loc="upper left", frameon=True)
    return save_figure(fig, path)


def _plain_log_ticks(ax) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(NullFormatter())


def plot_macs_residual(points: pd.DataFrame, path: Path, device: str = "") -> Path:
    """How far each architecture's measured latency is from the best linear fit on MACs (%),
    coloured by resolution: what a MACs-only model cannot see."""
    plt = _plt()
    space = points[points["source"] == "space"]
    m = space["macs"].to_numpy(float)
    y = space["latency_ms"].to_numpy(float)
    a, b = np.polyfit(m, y, 1)
    resid = 100 * (y / (a * m + b) - 1)
    fig, ax = plt.subplots(figsize=(10, 5.4))
    ax.axhspan(-10, 10, color="tab:green", alpha=0.1, label="within ±10% of the fit")
    ax.axhline(0, color="black", lw=1, ls="--", label="linear fit on MACs")
    colors = _res_colors(space["resolution"])
    widths = space["name"].map(_width).to_numpy()
    for r, c in colors.items():
        for w, mk in _RES_MARKERS.items():
            sel = (space["resolution"].to_numpy() == r) & (widths == w)
            if sel.any():
                ax.scatter(m[sel] / 1e6, resid[sel], s=18, color=c, marker=mk, alpha=0.8, edgecolors="none",
                           label=f"r{r}, width {w}")
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel("measured latency vs the MACs fit (%)")
    ax.set_title(f"What MACs miss: {len(space)} architectures" + (f" on {device}" if device else "")
                 + f", residuals from {resid.min():+.0f}% to {resid.max():+.0f}%")
    ax.legend(ncol=3, loc="upper right", fontsize=9)
    lim = max(abs(resid).max() * 1.15, 12)
    ax.set_ylim(-lim, lim * 1.35)  # room for the legend above the points
    return save_figure(fig, path)


def plot_predicted_vs_measured(heldout: pd.DataFrame, predictor: str, path: Path) -> Path:
    """Held-out architectures: the predictor and a MACs-linear fit against measured latency,
    with the ±10% band."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), sharex=True, sharey=True)
    y = heldout["measured_ms"].to_numpy(float)
    lo, hi = 0.9 * min(y.min(), heldout[["predicted_ms", "macs_linear_ms"]].min().min()), 1.05 * max(
        y.max(), heldout[["predicted_ms", "macs_linear_ms"]].max().max())
    colors = _res_colors(heldout["resolution"])
    for ax, col, title in ((axes[0], "predicted_ms", f"{predictor} predictor"),
                           (axes[1], "macs_linear_ms", "linear fit on MACs")):
        xs = np.linspace(lo, hi, 10)
        ax.fill_between(xs, xs * 0.9, xs * 1.1, color="tab:green", alpha=0.15, label="±10% of measured")
        ax.plot(xs, xs, color="black", lw=1, label="predicted = measured")
        for r, c in colors.items():
            sel = heldout["resolution"] == r
            ax.scatter(y[sel], heldout.loc[sel, col], s=16, color=c, alpha=0.8, edgecolors="none", label=f"r{r}")
        p = heldout[col].to_numpy(float)
        within = float(np.mean(np.abs(p / y - 1) <= 0.10))
        ax.set_title(f"{title}: {100 * within:.1f}% of {len(y)} within ±10%")
        ax.set_xlabel("measured latency (ms)")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.legend(loc="upper left")
    axes[0].set_ylabel("predicted latency (ms)")
    fig.suptitle("held-out architectures (never seen by the fitted predictors)", fontsize=11)
    return save_figure(fig, path)


def plot_kernel_breakdown(bd: dict, path: Path) -> Path:
    """Per-kernel-family latency of one architecture: measured (and predicted), ms."""
    plt = _plt()
    fams = sorted(set(bd.get("measured", {})) | set(bd.get("predicted", {})),
                  key=lambda f: -(bd.get("measured", {}).get(f) or bd.get("predicted", {}).get(f) or 0))
    fig, ax = plt.subplots(figsize=(9.5, 0.42 * len(fams) + 2.2))
    yy = np.arange(len(fams))
    series = [(k, lab, c) for k, lab, c in (
        ("measured", "measured (ORT profiler, scaled to end-to-end)", "tab:blue"),
        ("predicted", "predicted (kernel predictor)", "tab:orange")) if k in bd]
    h = 0.8 / max(len(series), 1)
    for i, (k, lab, c) in enumerate(series):
        vals = [bd[k].get(f, 0.0) for f in fams]
        total = bd.get(f"{k}_ms", sum(vals))
        ax.barh(yy + (i - (len(series) - 1) / 2) * h, vals, height=h, color=c, label=f"{lab}: {total:.2f} ms total")
        for y0, v in zip(yy + (i - (len(series) - 1) / 2) * h, vals):
            ax.text(v, y0, f" {v:.2f}", va="center", fontsize=8.5)
    ax.set_yticks(yy)
    ax.set_yticklabels(fams)
    ax.invert_yaxis()
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("kernel type (post-fusion)")
    ax.set_xlim(0, 1.15 * max([max(bd[k].values()) for k, _, _ in series] + [1e-3]))
    arch = bd["arch"]
    lines = [arch[i:i + 80] for i in range(0, len(arch), 80)]
    ax.set_title("per-kernel-type latency of\n" + "\n".join(lines), fontsize=9.5)
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def plot_int8_speedup(int8: dict, path: Path) -> Path:
    """fp32 latency vs int8 speedup per architecture, colour = resolution."""
    plt = _plt()
    pts = pd.DataFrame(int8["points"])
    pts["resolution"] = [int(k.split("_")[0][1:]) for k in pts["key"]]
    pts["speedup"] = pts["fp32_ms"] / pts["int8_ms"]
    colors = _res_colors(pts["resolution"])
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    for r, g in pts.groupby("resolution"):
        ax.scatter(g["fp32_ms"], g["speedup"], s=16, color=colors[int(r)], label=f"r{r}", alpha=0.85)
    ax.axhline(1.0, color="black", lw=1, ls="--", label="no speed-up")
    ax.set_xlabel("fp32 latency (ms, drift-corrected)")
    ax.set_ylabel("int8 speed-up (fp32 ms / int8 ms)")
    ax.set_title(f"int8 vs fp32 on {int8['n_common_archs']} architectures measured both ways")
    ax.legend(title="resolution", loc="best")
    return save_figure(fig, path)


def read_candidates(candidates) -> pd.DataFrame:
    """A search's candidates: a DataFrame or a CSV path, with predicted_latency_ms and accuracy_estimate."""
    if isinstance(candidates, (str, os.PathLike)):
        p = Path(candidates)
        if not p.is_file():
            raise InputError(f"candidates file {p} not found")
        try:
            candidates = pd.read_csv(p)
        except (ValueError, pd.errors.ParserError) as e:
            raise InputError(f"candidates file {p} is not a CSV table ({e})") from None
    df = pd.DataFrame(candidates)
    missing = [c for c in ("predicted_latency_ms", "accuracy_estimate") if c not in df.columns]
    if missing:
        raise InputError(f"search candidates lack column(s) {', '.join(missing)}")
    return df


def _measured_col(df: pd.DataFrame) -> str | None:
    for c in ("measured_latency_ms", "measured_ms", "verified_latency_ms"):
        if c in df.columns and df[c].notna().any():
            return c
    return None


def plot_pareto(candidates, path: Path, budgets_ms: Sequence[float] = (), accuracy_label: str = "accuracy estimate",
                front: np.ndarray | None = None) -> Path:
    """Search candidates (predicted latency vs accuracy estimate), the Pareto front, verified
    measurements where the table has them, and the budgets.

    ``front``: the candidates' ``pareto_mask`` when the caller has it already (computed here
    otherwise)."""
    plt = _plt()
    df = read_candidates(candidates)
    lat = df["predicted_latency_ms"].to_numpy(float)
    acc = df["accuracy_estimate"].to_numpy(float)
    if front is None:
        front = pareto_mask(lat, acc)
    if np.nanmax(np.abs(acc)) >= 1e5:  # a count (MACs, params) as the objective: show millions
        acc = acc / 1e6
        accuracy_label = accuracy_label[:-1] + ", millions)" if accuracy_label.endswith(")") \
            else accuracy_label + " (millions)"
    fig, ax = plt.subplots(figsize=(9, 5.6))
    ax.scatter(lat[~front], acc[~front], s=10, color="0.65", alpha=0.6, label=f"candidates ({len(df)})")
    o = np.argsort(lat[front])
    ax.step(lat[front][o], acc[front][o], where="post", color="tab:red", lw=1.3)
    ax.scatter(lat[front], acc[front], s=28, color="tab:red", zorder=3, label=f"Pareto front ({int(front.sum())})")
    mc = _measured_col(df)
    if mc:
        sel = df[mc].notna().to_numpy()
        ax.scatter(df.loc[sel, mc], acc[sel], s=70, marker="D", facecolors="none", edgecolors="tab:blue", lw=1.5,
                   zorder=4, label="verified: measured latency")
        for x0, x1, yv in zip(lat[sel], df.loc[sel, mc], acc[sel]):
            ax.annotate("", (x1, yv), (x0, yv), arrowprops={"arrowstyle": "->", "color": "tab:blue", "lw": 0.8})
    top = ax.get_ylim()[1]
    for i, b in enumerate(sorted(budgets_ms)):
        ax.axvline(b, color="black", ls=":", lw=1, label="budgets" if i == 0 else None)
        ax.text(b, top, f"budget {b:g} ms ", rotation=90, va="top", ha="right", fontsize=8.5,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel(accuracy_label)
    ax.set_title("search: latency vs accuracy estimate")
    ax.legend(loc="lower right")
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# HTML


_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
code { font-size: 0.85em; word-break: break-all; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; font-size: 0.92em; } .warn { color: #a15c00; }
ul.head li { margin: 0.25em 0; }
"""


def _esc(x) -> str:
    return html.escape(str(x))


def _table(headers: Sequence[str], rows: Sequence[Sequence], left: Sequence[int] = (0,), table_id: str = "") -> str:
    h = "".join(f'<th class="{"l" if i in left else ""}">{_esc(c)}</th>' for i, c in enumerate(headers))
    body = []
    for r in rows:
        body.append("<tr>" + "".join(f'<td class="{"l" if i in left else ""}">{c}</td>' for i, c in enumerate(r)) + "</tr>")
    tid = f' id="{table_id}"' if table_id else ""
    return f"<table{tid}><tr>{h}</tr>{''.join(body)}</table>"


def _f(v, nd: int = 3) -> str:
    return "" if v is None else f"{v:.{nd}f}"


def _pct(v, nd: int = 1) -> str:
    return "" if v is None else f"{100 * v:.{nd}f}%"


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(path.name)}">'
            f'<figcaption class="note">{caption} (<a href="{_esc(path.name)}">{_esc(path.name)}</a>)</figcaption></figure>')


def _proxy_row(label: str, s: dict, acc: dict | None = None) -> list:
    ne = s["near_equal"]
    return [_esc(label), str(s["n"]), _f(s["pearson"]), _f(s["spearman"]), _f(s["kendall"]),
            f"{_pct(s['misranked_share'])} ({s['misranked_pairs']}/{s['comparable_pairs']})",
            str(ne["pairs"]), _pct(ne["median"]), _pct(ne["p90"]), _pct(ne["max"]),
            _f(acc["mape_pct"], 2) + "%" if acc else "", _pct(acc["within_10pct"]) if acc else ""]


def _counter_rows(cs: Sequence[dict], scale: float | None = None, decimals: int = 1) -> list:
    """Table rows of counterexample pairs; proxy values divided by ``scale`` (``None``: as they are)."""
    def proxy(v) -> str:
        return _f(v if scale is None else v / scale, decimals)

    return [[f"<code>{_esc(c['a'])}</code>", proxy(c["a_proxy"]), _f(c["a_latency_ms"], 2),
             f"<code>{_esc(c['b'])}</code>", proxy(c["b_proxy"]), _f(c["b_latency_ms"], 2),
             f"{c['latency_ratio']:.2f}x"] for c in cs]


def write_report(comparison, out_dir: str | Path, candidates=None, breakdown: dict | None = None,
                 sections: Sequence[tuple[str, str]] = (), budgets_ms: Sequence[float] = (),
                 title: str = "MACs vs measured latency", command: str = "",
                 accuracy_label: str = "accuracy estimate") -> Path:
    """Write ``out_dir/report.html`` (+ PNGs, CSV and JSON data) and return its path.

    ``breakdown``: a :func:`hwnas.compare.report_breakdown` (a ``"missing"`` one is named in a note).

    ``sections``: extra (title, HTML) blocks placed first (the demo's machine check, predictions,
    search summary).  ``candidates``: a search's candidates table for the Pareto figure.
    """
    from .compare import headline

    out = prepare_out_dir(out_dir)
    st = comparison.stats
    comparison.points.to_csv(out / "points.csv", index=False)
    comparison.heldout.to_csv(out / "heldout.csv", index=False)
    figs: list[tuple[Path, str]] = []
    figs.append((plot_macs_vs_latency(comparison.points, out / "macs_vs_latency.png", st["device"]),
                 "MACs vs measured latency. Left: the search space's measured architectures, colour = input resolution, "
                 "marker = width multiplier; the dashed line is the best linear fit on MACs. Right: the profile's models "
                 "of other CNN families (and any ONNX models given), log-log."))
    figs.append((plot_macs_residual(comparison.points, out / "macs_residual.png", st["device"]),
                 "Each architecture's measured latency relative to the best linear fit on MACs: the part of latency "
                 "MACs cannot explain, by resolution and width."))
    pred = st.get("predictor", {})
    if len(comparison.heldout):
        figs.append((plot_predicted_vs_measured(comparison.heldout, pred.get("name", "default"),
                                                out / "predicted_vs_measured.png"),
                     f"Predicted vs measured latency on {len(comparison.heldout)} held-out architectures; the green band "
                     f"is ±10% of measured. Both predictors were fitted on the other half only."))
    if breakdown is not None:
        st = dict(st, kernel_breakdown=breakdown)
    if breakdown is not None and "missing" not in breakdown:
        src = "measured kernel records (ORT profiler, scaled to the canary-bracketed end-to-end latency)" \
            if "measured" in breakdown else "kernel-predictor figures only (this architecture's kernels were not profiled)"
        extra = " The saved kernel predictor was fitted on this profile, this model's kernels included." \
            if breakdown.get("profiled") and "predicted" in breakdown else ""
        figs.append((plot_kernel_breakdown(breakdown, out / "kernel_breakdown.png"),
                     f"Per-kernel-type latency of one architecture, from {src}.{extra}"))
    cand = on_front = mc = None
    if candidates is not None:
        cand = read_candidates(candidates)
        on_front = pareto_mask(cand["predicted_latency_ms"], cand["accuracy_estimate"])
        mc = _measured_col(cand)
        keep = on_front | cand[mc].notna().to_numpy() if mc else on_front
        cand[keep].sort_values("predicted_latency_ms").to_csv(out / "pareto_front.csv", index=False)
        figs.append((plot_pareto(cand, out / "pareto.png", budgets_ms, accuracy_label, front=on_front),
                     "Search candidates, predicted latency vs accuracy estimate; red: the Pareto front; blue diamonds: "
                     "latency measured when the search verified its picks; dotted: the budgets."))
    (out / "compare.json").write_text(json.dumps(st, indent=2) + "\n")

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_esc(title)}</h1>"]
    parts.append(f"<p class='note'>profile <code>{_esc(st['profile'])}</code>, device <b>{_esc(st['device'])}</b>, "
                 f"canary reference {st['canary_reference_ms']:.3f} ms. Latency: {_esc(st['latency'])}."
                 + (f" Median measurement noise of the architectures: {_pct(st['noise'].get('median_noise_rel'))}."
                    if st.get("noise") else "") + "</p>")
    for w in st.get("warnings", []):
        parts.append(f"<p class='warn'>warning: {_esc(w)}</p>")
    for sec_title, sec_html in sections:
        parts.append(f"<h2>{_esc(sec_title)}</h2>{sec_html}")
    parts.append("<h2>The lesson in numbers</h2><ul class='head'>"
                 + "".join(f"<li>{_esc(line)}</li>" for line in headline(comparison.stats)) + "</ul>")

    # proxy statistics
    a = st["archs"]
    rows = [_proxy_row(f"MACs, all {a['macs']['n']} architectures", a["macs"]),
            _proxy_row(f"params, all {a['params']['n']} architectures", a["params"])]
    if "heldout" in pred:
        rows.append(_proxy_row("MACs (linear fit), held-out half", pred["macs_same_split"], pred["macs_linear_accuracy"]))
        rows.append(_proxy_row(f"{pred['name']} predictor, held-out half", pred["heldout"], pred["accuracy"]))
    f = st.get("families")
    if f and f.get("macs"):
        rows.append(_proxy_row(f"MACs, {f['n']} models of other families", f["macs"]))
    parts.append("<h2>How well each proxy ranks measured latency</h2>" + _table(
        ["proxy", "n", "Pearson", "Spearman", "Kendall", "misranked pairs", "near-equal pairs (±5%)",
         "spread median", "spread p90", "spread max", "MAPE", "within ±10%"], rows, table_id="proxy-stats"))
    parts.append("<p class='note'>Misranked pairs: the proxy orders the two one way, measured latency the other (pairs "
                 "tied in either left out). Near-equal pairs: proxy values within ±5% of each other; spread = slower / "
                 "faster − 1. MAPE and ±10% are for the MACs-linear fit and the predictor, fitted on the other half "
                 f"({pred.get('n_train', '?')} architectures).</p>")
    if "error" in pred:
        parts.append(f"<p class='warn'>predictor {_esc(pred['name'])} not evaluated: {_esc(pred['error'])}</p>")

    hdr = ["A (fewer MACs)", "A MMACs", "A ms", "B", "B MMACs", "B ms", "A / B latency"]
    parts.append("<h2>Worst counterexamples: fewer MACs, yet slower</h2>"
                 + _table(hdr, _counter_rows(a["macs"]["counterexamples"], 1e6), left=(0, 3),
                          table_id="counterexamples"))
    g = a["macs"].get("largest_gap")
    if g:
        parts.append(f"<p class='note'>Largest MACs gap the wrong way: <code>{_esc(g['a'])}</code> has "
                     f"{100 * (1 - g['proxy_ratio']):.0f}% fewer MACs than <code>{_esc(g['b'])}</code> and runs "
                     f"{g['a_latency_ms']:.2f} ms against {g['b_latency_ms']:.2f} ms.</p>")
    if "heldout" in pred and pred["heldout"]["counterexamples"]:
        rows = _counter_rows(pred["heldout"]["counterexamples"], decimals=2)
        parts.append(f"<p>The {_esc(pred['name'])} predictor's worst held-out misrankings (A predicted faster, measured "
                     "slower):</p>" + _table(["A", "A predicted ms", "A ms", "B", "B predicted ms", "B ms",
                                              "A / B latency"], rows, left=(0, 3)))
    if a.get("ms_per_gmac"):
        rows = [[f"r{r['resolution']}", f"{r['width_mult']}", str(r["n"]), _f(r["median"], 1), _f(r["min"], 1),
                 _f(r["max"], 1)] for r in a["ms_per_gmac"]]
        parts.append("<h2>Latency per GMAC by resolution and width</h2>"
                     + _table(["resolution", "width", "n", "median ms/GMAC", "min", "max"], rows))
    if f:
        gm = f["ms_per_gmac"]
        rows = [[_esc(k), _f(v, 1)] for k, v in sorted(gm["by_family"].items(), key=lambda kv: kv[1])]
        parts.append("<h2>Other CNN families</h2>" + f"<p>Latency per GMAC ranges {gm['ratio']:.1f}x: from "
                     f"{gm['min']:.1f} ms ({_esc(gm['min_model'])}) to {gm['max']:.1f} ms ({_esc(gm['max_model'])}).</p>"
                     + _table(["family", "median ms per GMAC"], rows))
        if f.get("macs") and f["macs"]["counterexamples"]:
            parts.append(_table(hdr, _counter_rows(f["macs"]["counterexamples"], 1e6), left=(0, 3)))
    if st.get("models"):
        rows = [[_esc(m["name"]), _f(m["macs"] / 1e6, 1), _f(m["params"] / 1e6, 2), _f(m["latency_ms"], 3),
                 _f(m["relative_to_canary"], 3), _pct(m["noise_rel"])] for m in st["models"]]
        parts.append("<h2>ONNX models measured now</h2>" + _table(
            ["model", "MMACs", "M params", "latency ms (profile scale)", "rel. to canary", "noise"], rows))

    br = st.get("budget_rules") or {}
    for sm in (br.get("remeasured"), br.get("profile")):
        if not sm or not sm.get("n"):
            continue
        on = (f"re-measured {br['repeats']}x, interleaved" if sm["judged_on"] == "remeasured_ms"
              else "the profile's measurement")
        rows = [[label, f"{sm[k]['misses']}/{sm['n']}",
                 f"{_pct(sm[k]['miss_ci95'][0], 0)} to {_pct(sm[k]['miss_ci95'][1], 0)}",
                 _pct(sm[k]["within_tolerance_share"], 0), _f(sm[k]["latency_over_budget_median"], 3)]
                for label, k in (("MACs rule", "macs_rule"), (f"{br['predictor']} predictor rule", "predictor_rule"))]
        g, ci = sm["macs_gain"], sm["macs_gain"]["mean_ci95"] or [None, None]
        parts.append(f"<h2>Budget rules, judged on {on}</h2>" + _table(
            ["rule", "misses the budget", "95% interval", "within budget x 1.05", "median latency / budget"], rows,
            table_id=f"budget-rules-{sm['judged_on']}")
            + f"<p>The predictor rule's pick has {100 * g['mean']:+.1f}% MACs against the MACs rule's on average (95% "
            f"bootstrap interval {_pct(ci[0])} to {_pct(ci[1])}; same pick in {sm['same_pick']} of {sm['n']}).</p>")
        rm = br.get("remeasure") if sm["judged_on"] == "remeasured_ms" else None
        if rm:
            parts.append(f"<p class='note'>{rm['n_archs']} distinct picks, {rm['measurements']} measurements; spread of a "
                         f"pick's repeats: median {_pct(rm['repeat_spread_median'])}, max {_pct(rm['repeat_spread_max'])}; "
                         f"re-measured / profile's figure: median {_f(rm['remeasured_over_profile_median'])}.</p>")
    if br.get("rows"):
        parts.append(f"<p class='note'>Each rule is fitted on one half of the measured architectures ({br['halves'][0]} / "
                     f"{br['halves'][1]}) and picks, among the other half, the architecture with the most MACs whose "
                     f"estimated latency fits ({len(br['budgets_ms'])} budgets, each half in both roles): the MACs rule "
                     "estimates latency with a linear fit on MACs, the predictor rule with the latency predictor. Neither "
                     "sees the measurements its picks are judged on. Neighbouring budgets can share a pick, so the "
                     "intervals are approximate.</p>")

    dv = st["devices"]
    rows = []
    for r in dv["rows"]:
        mp, lp = r["macs_pick"], r["latency_pick"]
        rows.append([_esc(r["device"]), _f(r["budget_ms"], 1), _f(r["macs_budget"] / 1e6, 0),
                     f"<code>{_esc(mp['key'])}</code>" if mp else "none", _f(mp["macs"] / 1e6, 0) if mp else "",
                     (_f(mp["latency_ms"], 2) + ("" if mp["fits"] else " (over)")) if mp else "",
                     f"<code>{_esc(lp['key'])}</code>" if lp else "none", _f(lp["macs"] / 1e6, 0) if lp else "",
                     _f(lp["latency_ms"], 2) if lp else "",
                     f"{100 * r['latency_diff']:+.1f}%" if "latency_diff" in r else ""])
    parts.append("<h2>MACs pick vs the best measured in hindsight, per device</h2>" + _table(
        ["device", "budget ms", "MACs budget (M)", "MACs pick", "MMACs", "ms", "best measured (hindsight)", "MMACs",
         "ms", "MACs pick vs hindsight (latency)"], rows, left=(0, 3, 6), table_id="budget-picks"))
    pdv = dv.get("predicted_devices") or []
    if pdv:
        parts.append(f"<p class='note'>Few-shot device(s) {', '.join(map(_esc, pdv))}: their latencies here are "
                     "predicted by the profile's transfer predictor, not measured.</p>")
    parts.append(f"<p class='note'>{dv['n_common_archs']} architectures measured on {', '.join(map(_esc, dv['devices']))}. "
                 "MACs pick: the budget turned into MACs with the device's linear fit of latency on MACs, then the "
                 "architecture with the most MACs under it; best measured (hindsight): the architecture with the most "
                 "MACs whose measured latency fits, chosen on the very measurements shown, so it fits by construction "
                 "and rides single noisy measurements (the budget rules above are the fair test). More MACs stand in "
                 "for capacity here. With one profile this compares the two "
                 "on one device; to compare devices, make a second profile (e.g. <code>hwnas profile --device cpu-2t "
                 "--out profiles/cpu-2t</code>) and pass <code>--profile profiles/cpu-1t --profile profiles/cpu-2t"
                 "</code>.</p>")
    q = st.get("int8")
    if q:
        figs.append((plot_int8_speedup(q, out / "int8_speedup.png"),
                     "int8 (static QDQ) speed-up over fp32 per architecture, same machine settings; above the dashed "
                     "line int8 is faster."))
        sp, rk = q["speedup"], q["ranking"]
        rows = [[f"<code>{_esc(r['key'])}</code>", _f(r["fp32_ms"], 2), _f(r["int8_ms"], 2), f"{r['speedup']:.2f}x"]
                for r in q["most_helped"] + q["least_helped"]]
        parts.append(
            "<h2>int8 vs fp32</h2>"
            f"<p>{q['n_common_archs']} architectures measured in both precisions (<code>{_esc(q['fp32_profile'])}</code>, "
            f"<code>{_esc(q['int8_profile'])}</code>). int8 speed-up: median {sp['median']:.2f}x (p10 {sp['p10']:.2f}x, "
            f"p90 {sp['p90']:.2f}x, range {sp['min']:.2f}x to {sp['max']:.2f}x); {_pct(sp['share_slower_in_int8'])} of "
            f"the architectures are slower in int8. Ranking by latency: Spearman {rk['spearman']:.3f}, Kendall "
            f"{rk['kendall']:.3f}, {_pct(rk['misranked_share'])} of pairs change order.</p>"
            + _table(["resolution", "median speed-up"], [[f"r{r}", f"{v:.2f}x"] for r, v in q["by_resolution"].items()])
            + _table(["width", "median speed-up"], [[f"{w}", f"{v:.2f}x"] for w, v in q["by_width"].items()])
            + "<p>Most and least helped:</p>"
            + _table(["architecture", "fp32 ms", "int8 ms", "speed-up"], rows, table_id="int8-picks"))
    if cand is not None:
        front = cand[on_front].sort_values("predicted_latency_ms")
        shown = front.iloc[np.unique(np.linspace(0, len(front) - 1, min(len(front), 15)).round().astype(int))]
        if mc:  # the verified picks too, front or not
            shown = pd.concat([shown, cand[cand[mc].notna()]]).drop_duplicates("arch" if "arch" in cand else None)
        shown = shown.sort_values("predicted_latency_ms")
        cols = [c for c in ("arch", "predicted_latency_ms", mc, "accuracy_estimate", "macs") if c and c in cand.columns]

        def cell(c, v):
            if c == "arch":
                return f"<code>{_esc(v)}</code>"
            if v is None or (isinstance(v, float) and np.isnan(v)):
                return ""
            return _esc(f"{v:.4g}" if isinstance(v, float) else v)

        rows = [[cell(c, v) for c, v in zip(cols, r)] for r in shown[cols].itertuples(index=False)]
        parts.append(f"<h2>Search: Pareto front ({len(front)} of {len(cand)} candidates)</h2>"
                     f"<p class='note'>{len(shown)} rows: the front at evenly spaced latencies"
                     + (", and every pick the search verified by measuring it" if mc else "") + ".</p>"
                     + _table(cols, rows))

    parts.append("<h2>Figures</h2>" + "".join(_img(p, cap) for p, cap in figs))
    if breakdown is not None and "missing" in breakdown:
        parts.append(f"<p class='note'>No per-kernel breakdown: {_esc(breakdown['missing'])}.</p>")
    parts.append("<p class='note'>Data: <a href='points.csv'>points.csv</a> (every model: MACs, params, measured ms), "
                 "<a href='heldout.csv'>heldout.csv</a> (held-out predictions), <a href='compare.json'>compare.json</a> "
                 "(every statistic)" + ("; <a href='pareto_front.csv'>pareto_front.csv</a> (the search's Pareto front "
                                         "and verified picks)" if cand is not None else "") + "." + (f" Reproduce: <code>{_esc(command)}</code>" if command else "") + "</p>")
    parts.append("</body></html>\n")
    path = out / "report.html"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(parts), encoding="utf-8")
    tmp.replace(path)
    return path


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output directory; ``InputError`` if it is a file or cannot be made."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} is a file; --out takes a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create output directory {out}: {e.strerror or e}") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"output directory {out} is not writable")
    return out
