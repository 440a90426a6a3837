"""What the command modules share: the Typer app, the consoles, progress bars, JSON output and
the parsing of arguments common to several commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help="Hardware-aware NAS on real ONNX Runtime latency.")
space_app = typer.Typer(no_args_is_help=True, help="The search space.")
app.add_typer(space_app, name="space")

err = Console(stderr=True)
out = Console()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err, transient=False,
    )


def _emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def parse_arch(text: str):
    from ..space import DEFAULT_SPACE

    try:
        return DEFAULT_SPACE.parse(text)
    except ValueError as e:
        raise InputError(str(e)) from None


def _looks_like_onnx(target: str) -> bool:
    return target.endswith(".onnx") or Path(target).exists() or "/" in target


def _parse_shapes(items: Optional[List[str]]) -> dict[str, list[int]]:
    from ..onnx_io import parse_input_shape

    shapes = {}
    for s in items or []:
        name, dims = parse_input_shape(s)
        shapes[name] = dims
    return shapes


def load_target(target: str, batch: int, input_shapes: dict[str, list[int]]):
    """(kind, model) for an architecture string or an .onnx path."""
    if _looks_like_onnx(target):
        from ..onnx_io import load_onnx

        return "onnx", load_onnx(target, input_shapes or None).model
    from ..builders.onnx_graph import build_onnx

    return "arch", build_onnx(parse_arch(target), batch=batch)


def _check_out_file(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"output path {path} is a directory; give a file name like model.onnx")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist")
    import os

    if not os.access(parent, os.W_OK):
        raise InputError(f"output directory {parent} is not writable")


def _given(ctx: typer.Context, *params: str) -> list[str]:
    """The options among ``params`` (parameter names) that the command line set, as flags."""
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    # by name: typer may bring its own copy of click, whose ParameterSource is another enum
    given = ("COMMANDLINE", "ENVIRONMENT")
    return [flags[p] for p in params if getattr(ctx.get_parameter_source(p), "name", "DEFAULT") in given]


def _space_from_options(resolutions: Optional[str], width_mults: Optional[str]):
    from ..space import SearchSpace

    kw = {}
    try:
        if resolutions:
            kw["resolutions"] = tuple(int(x) for x in resolutions.split(","))
        if width_mults:
            kw["width_mults"] = tuple(float(x) for x in width_mults.split(","))
        return SearchSpace(**kw)
    except ValueError as e:
        raise InputError(f"bad --resolutions/--width-mults: {e}") from None


def _profile_dir(profile: Optional[Path]) -> Path:
    from ..paths import default_profile_dir

    d = profile or default_profile_dir()
    if d.exists() and not d.is_dir():
        raise InputError(f"profile path {d} is a file; a profile is a directory")
    if not (d / "profile.sqlite").is_file():
        raise InputError(f"no device profile at {d} (make one with `hwnas profile --device D --out {d}`)")
    return d


_CALIBRATE_HELP = ("when the profile was made on another machine, first make (once, cached) a few-shot profile "
                   "of this machine from it and use that")


def _on_this_machine(d: Path, calibrate: bool, shots: int) -> Path:
    """The profile to use here for ``d``: ``d`` itself, or this machine's calibration of it."""
    if not calibrate:
        return d
    from ..profile.calibrate import calibrated_profile
    from ..profile.fewshot import MIN_SHOTS

    if shots < MIN_SHOTS:
        raise InputError(f"--calibration-shots must be at least {MIN_SHOTS}, got {shots}")
    with _progress() as prog:

        class _Bar:
            def __init__(self, part: str, total: int, done: int) -> None:
                self.id = prog.add_task(f"calibrating this machine: {part}", total=total, completed=done)

            def advance(self, n: int = 1) -> None:
                prog.advance(self.id, n)

            def close(self) -> None:
                pass

        try:
            cal = calibrated_profile(d, shots, progress=_Bar, log=lambda m: prog.console.print(m, highlight=False,
                                                                                               soft_wrap=True))
        except KeyboardInterrupt:
            prog.stop()
            err.print("calibration interrupted: what was measured is kept; run the command again to resume it")
            raise typer.Exit(130)
    if cal.reason != "same machine":
        err.print(f"profile {d} was made on another machine ({cal.differences[0]}): using {cal.reason} "
                  f"{cal.profile_dir} (--no-calibrate to use {d} as is)", highlight=False, soft_wrap=True)
    return cal.profile_dir


def print_kernel_tables(results: list[dict], title: str) -> None:
    """One table per result that has ``kernels`` (``predict --breakdown``, ``measure --kernels``)."""
    for r in results:
        if "kernels" in r:
            kt = Table("node", "op", "family", "ms", title=f"{title} of {r['target']}")
            for k in r["kernels"]:
                kt.add_row(k["node"], k["op_type"], k["family"] + (" (fallback)" if k.get("fallback") else ""),
                           f"{k['latency_ms']:.4f}")
            out.print(kt)


def print_heldout(h: dict, what: str = "architectures", spearman: bool = False) -> None:
    """The held-out check ``hwnas train`` prints (``index["heldout"]``): one line per predictor,
    or why it was not evaluated; with ``spearman``, its rank correlation too."""
    err.print(f"held-out check ({h['n_train']} train / {h['n_test']} test {what}, canary units):")
    for name, m in h["predictors"].items():
        if "error" in m:
            err.print(f"  {name:8s} not evaluated: {m['error']}")
            continue
        err.print(f"  {name:8s} within ±10%: {100 * m['within_10pct']:5.1f}%  within ±5%: {100 * m['within_5pct']:5.1f}%"
                  f"  MAPE {m['mape_pct']:.2f}%" + (f"  Spearman {m.get('spearman', float('nan')):.3f}" if spearman else ""))
