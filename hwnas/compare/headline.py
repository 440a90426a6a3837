"""The lesson of a comparison in a few lines of plain text."""

from __future__ import annotations

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
    lines += budget_rules_lines(stats.get("budget_rules") or {})
    for r in stats.get("devices", {}).get("rows", []):
        mp, lp = r["macs_pick"], r["latency_pick"]
        if mp and lp:
            lines.append(f"budget {r['budget_ms']:.1f} ms on {r['device']}: MACs pick {mp['macs'] / 1e6:.0f} MMACs at "
                         f"{mp['latency_ms']:.2f} ms ({'fits' if mp['fits'] else 'misses the budget'}); in hindsight, "
                         f"the most MACs measured within it: {lp['macs'] / 1e6:.0f} MMACs at {lp['latency_ms']:.2f} ms"
                         + (" (same architecture)" if r["same"] else ""))
    q = stats.get("int8")
    if q:
        sp, rk = q["speedup"], q["ranking"]
        lines.append(f"int8 vs fp32 on {q['n_common_archs']} architectures: median speed-up {sp['median']:.2f}x "
                     f"({sp['min']:.2f}x to {sp['max']:.2f}x); latency ranking Spearman {rk['spearman']:.3f}, "
                     f"{100 * rk['misranked_share']:.1f}% of pairs change order")
    return lines


def budget_rules_lines(br: dict) -> list[str]:
    """The MACs rule against the predictor rule (``budget_rules``), judged on fresh measurements
    when there are any, else on the profile's."""
    sm = br.get("remeasured") or br.get("profile")
    if not sm or not sm.get("n"):
        return []
    m, p, g = sm["macs_rule"], sm["predictor_rule"], sm["macs_gain"]
    on = (f"re-measured {br['repeats']}x interleaved" if sm["judged_on"] == "remeasured_ms"
          else "the profile's single measurements")
    ci = g["mean_ci95"] or [float("nan")] * 2
    return [f"budget rules fitted on one half, picking from the other ({sm['n']} budget x half pairs, judged on {on}): "
            f"the MACs rule misses the budget {m['misses']}/{sm['n']} times ({100 * m['miss_ci95'][0]:.0f}-"
            f"{100 * m['miss_ci95'][1]:.0f}%), the {br['predictor']} predictor rule {p['misses']}/{sm['n']} "
            f"({100 * p['miss_ci95'][0]:.0f}-{100 * p['miss_ci95'][1]:.0f}%); the predictor's pick has "
            f"{100 * g['mean']:+.1f}% MACs on average (95% CI {100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}%)"]
