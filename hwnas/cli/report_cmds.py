"""MACs vs latency report and the one-command demo (issue #6): compare and demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import InputError
from rich.table import Table

from .common import _CALIBRATE_HELP, _emit_json, _on_this_machine, _parse_shapes, _profile_dir, _progress, app, err, out


@app.command("compare")
def compare_cmd(profile: Optional[List[Path]] = typer.Option(
                    None, "--profile", help="profile directory (default: bundled); repeat to compare devices"),
                models: Optional[List[Path]] = typer.Option(None, "--models", help="ONNX model to measure and add (repeat)"),
                out_dir: Optional[Path] = typer.Option(None, "--out", help="write report.html, PNGs and data to DIR"),
                budget_ms: Optional[List[float]] = typer.Option(
                    None, "--budget-ms", help="budget for MACs- vs latency-optimal picks (repeat; default: quartiles)"),
                input_shape: Optional[List[str]] = typer.Option(None, "--input-shape",
                                                                help="NAME=1,3,224,224 for dynamic ONNX inputs"),
                remeasure: int = typer.Option(0, "--remeasure", min=0, help="re-measure the budget rules' picks N times "
                                              "each, interleaved (0: judge them on the profile's measurements)"),
                json_out: bool = typer.Option(False, "--json"),
                space_name: str = typer.Option("mbv3", "--space", help="search space: mbv3 (default) | vit")) -> None:
    """MACs vs measured latency: correlations, misranked pairs, counterexamples, the predictor's fix."""
    from ..compare import compare as run_compare
    from ..compare import headline, report_breakdown
    from ..spaces import check_space_name
    from .vit_cmds import check_space_if_profile, profile_for

    if check_space_name(space_name) == "vit":
        from .vit_cmds import vit_compare

        if models or out_dir or budget_ms or input_shape or remeasure or (profile and len(profile) > 1):
            raise InputError("--space vit compares one --profile (MACs vs measured latency); drop --models, --out, "
                             "--budget-ms, --input-shape, --remeasure")
        vit_compare(profile_for(profile[0] if profile else None, "vit"), json_out)
        return
    for p in profile or []:
        check_space_if_profile(p, "mbv3")
    dirs = [_profile_dir(p) for p in profile] if profile else [_profile_dir(None)]
    if out_dir is not None:
        from ..report import prepare_out_dir

        prepare_out_dir(out_dir)  # fail on a bad --out before anything is measured
    shapes = _parse_shapes(input_shape)
    from ..compare import check_budgets, load_models, open_profiles

    check_budgets(budget_ms)
    # bad files and too-small profiles fail here, before any progress bar or measuring
    loaded = load_models(list(models or []), shapes)
    profiles, notes = open_profiles(dirs)
    with _progress() as prog:
        task = prog.add_task("compare", total=5 + len(loaded) + (2 + remeasure if remeasure else 0))
        comp = run_compare(profiles, loaded, list(budget_ms) if budget_ms else None, input_shapes=shapes,
                           progress=lambda msg: prog.advance(task), notes_in=notes, remeasure=remeasure)
        report = None
        if out_dir is not None:
            from ..report import write_report

            rtask = prog.add_task("report", total=2)
            bd = report_breakdown(comp.profile)
            if "missing" in bd:
                prog.console.print(f"note: no per-kernel breakdown in the report: {bd['missing']}", highlight=False,
                                   soft_wrap=True)
            prog.advance(rtask)
            cmd = "hwnas compare " + " ".join(f"--profile {d}" for d in dirs) + f" --out {out_dir}" \
                + (f" --remeasure {remeasure}" if remeasure else "")
            report = write_report(comp, out_dir, breakdown=bd, budgets_ms=comp.stats["devices"]["budgets_ms"],
                                  command=cmd)
            prog.advance(rtask)
    for w in comp.stats.get("warnings", []):
        err.print(f"[yellow]warning:[/yellow] {w}", highlight=False, soft_wrap=True)
    if json_out:
        _emit_json(comp.stats | ({"report": str(report)} if report else {}))
        return
    st = comp.stats
    t = Table("proxy", "n", "Pearson", "Spearman", "Kendall", "misranked", "near-equal spread med/p90/max",
              title=f"MACs vs measured latency on {st['device']} ({st['profile']})")

    def row(label: str, s: dict) -> None:
        ne = s["near_equal"]
        spread = "" if ne["median"] is None else \
            f"{100 * ne['median']:.1f}/{100 * ne['p90']:.1f}/{100 * ne['max']:.1f}%"
        t.add_row(label, str(s["n"]), f"{s['pearson']:.3f}", f"{s['spearman']:.3f}", f"{s['kendall']:.3f}",
                  f"{100 * s['misranked_share']:.1f}%", spread)

    row("MACs (all)", st["archs"]["macs"])
    row("params (all)", st["archs"]["params"])
    pr = st.get("predictor", {})
    if "heldout" in pr:
        row("MACs (held-out half)", pr["macs_same_split"])
        row(f"{pr['name']} (held-out half)", pr["heldout"])
    if st.get("families", {}).get("macs"):
        row("MACs (other families)", st["families"]["macs"])
    out.print(t)
    for line in headline(st):
        out.print(f"- {line}", highlight=False, soft_wrap=True)
    if "error" in pr:
        err.print(f"[yellow]warning:[/yellow] predictor {pr['name']} not evaluated: {pr['error']}", highlight=False)
    if report:
        sys.stdout.write(f"report: {report}\n")


@app.command("demo")
def demo_cmd(out_dir: Path = typer.Option(Path("hwnas-demo"), "--out", help="report directory"),
             profile: Optional[Path] = typer.Option(None, "--profile", help="profile directory (default: bundled)"),
             budget_ms: Optional[List[float]] = typer.Option(
                 None, "--budget-ms", help="search budget (repeat; default: the profile's latency quartiles)"),
             population: Optional[int] = typer.Option(None, "--population", min=2,
                                                      help="each search's population (default 100; smaller is faster)"),
             generations: Optional[int] = typer.Option(None, "--generations", min=1,
                                                       help="each search's generations (default 500)"),
             calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help=_CALIBRATE_HELP),
             calibration_shots: int = typer.Option(30, "--calibration-shots",
                                                   help="architectures a calibration measures")) -> None:
    """The main job in one command: check this machine, predict, search under 3 budgets, compare, report."""
    from ..compare import check_budgets, headline
    from ..demo import Steps, run_demo

    check_budgets(budget_ms)
    d = _on_this_machine(_profile_dir(profile), calibrate, calibration_shots)
    with _progress() as prog:

        class _Steps(Steps):
            def task(self, name: str, total: int):
                tid = prog.add_task(name, total=total)
                return lambda n=1: prog.advance(tid, n)

            def log(self, msg: str) -> None:
                prog.console.print(msg, highlight=False)

            def warn(self, msg: str) -> None:
                prog.console.print(f"[yellow]warning:[/yellow] {msg}", highlight=False, soft_wrap=True)

        size = {k: v for k, v in (("population", population), ("generations", generations)) if v is not None}
        res = run_demo(out_dir, d, _Steps(), budgets_ms=budget_ms, **size)
    m = res.machine
    out.print(f"this machine: canary {m['canary_now_ms']:.3f} ms now vs {m['canary_reference_ms']:.3f} ms in the "
              f"profile ({100 * m['difference']:+.1f}%)", highlight=False)
    t = Table("architecture", "MMACs", "predicted ms", "ms at today's canary", title="predictions")
    for r in res.predictions.itertuples():
        t.add_row(r.arch, f"{r.macs / 1e6:.0f}", f"{r.predicted_ms:.3f}", f"{r.predicted_ms_now:.3f}")
    out.print(t)
    if res.search["best"]:
        t = Table("budget ms", "best architecture", "predicted ms", "measured ms", "accuracy est.", title="search")
        for b in res.search["best"]:
            meas = b["measured_latency_ms"]
            t.add_row(f"{b['budget_ms']:g}", b["arch"], f"{b['predicted_latency_ms']:.3f}",
                      "" if meas is None else f"{meas:.3f}", f"{b['accuracy_estimate']:.4g}")
        out.print(t)
    for note in res.search["notes"]:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    for line in headline(res.stats):
        out.print(f"- {line}", highlight=False, soft_wrap=True)
    err.print(f"demo took {res.seconds:.0f} s")
    sys.stdout.write(f"report: {res.report}\n")
