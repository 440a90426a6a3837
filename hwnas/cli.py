"""The ``hwnas`` command line.  Results go to stdout (``--json`` for machine-readable), logs and
progress to stderr.  User errors print ``error: <one line>`` and exit with status 2."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .errors import HwnasError, InputError

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
    from .space import DEFAULT_SPACE

    try:
        return DEFAULT_SPACE.parse(text)
    except ValueError as e:
        raise InputError(str(e)) from None


def _looks_like_onnx(target: str) -> bool:
    return target.endswith(".onnx") or Path(target).exists() or "/" in target


def _parse_shapes(items: Optional[List[str]]) -> dict[str, list[int]]:
    from .onnx_io import parse_input_shape

    shapes = {}
    for s in items or []:
        name, dims = parse_input_shape(s)
        shapes[name] = dims
    return shapes


def load_target(target: str, batch: int, input_shapes: dict[str, list[int]]):
    """(kind, model) for an architecture string or an .onnx path."""
    if _looks_like_onnx(target):
        from .onnx_io import load_onnx

        return "onnx", load_onnx(target, input_shapes or None).model
    from .builders.onnx_graph import build_onnx

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


def _space_from_options(resolutions: Optional[str], width_mults: Optional[str]):
    from .space import SearchSpace

    kw = {}
    try:
        if resolutions:
            kw["resolutions"] = tuple(int(x) for x in resolutions.split(","))
        if width_mults:
            kw["width_mults"] = tuple(float(x) for x in width_mults.split(","))
        return SearchSpace(**kw)
    except ValueError as e:
        raise InputError(f"bad --resolutions/--width-mults: {e}") from None


# --------------------------------------------------------------------------------------------


@app.command()
def devices(json_out: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List the bundled device specs (devices/*.toml)."""
    from .devices import list_devices

    devs = list_devices()
    if json_out:
        _emit_json([d.to_dict() for d in devs])
        return
    t = Table("name", "provider", "threads (intra/inter)", "mode", "opt", "precision", "batch", "cores")
    for d in devs:
        t.add_row(d.name, d.execution_provider.replace("ExecutionProvider", ""), f"{d.intra_op_threads}/{d.inter_op_threads}",
                  d.execution_mode, d.graph_optimization_level, d.precision, str(d.batch_size),
                  ",".join(map(str, d.core_affinity)) or "any")
    out.print(t)


@space_app.command("sample")
def space_sample(n: int = typer.Option(10, "--n", min=1, help="how many architectures"),
                 seed: int = typer.Option(0, "--seed", help="random seed")) -> None:
    """Print N seeded, distinct architectures of the space, one string per line."""
    from .space import DEFAULT_SPACE

    for a in DEFAULT_SPACE.sample_many(n, seed=seed):
        sys.stdout.write(f"{a}\n")


@space_app.command("info")
def space_info(arch: Optional[List[str]] = typer.Argument(None, help="architecture strings"),
               json_out: bool = typer.Option(False, "--json")) -> None:
    """The space's choices and size, or MACs and params of given architectures."""
    from .cost import arch_cost
    from .space import DEFAULT_SPACE

    if not arch:
        d = DEFAULT_SPACE.to_dict() | {"size": DEFAULT_SPACE.size}
        _emit_json(d) if json_out else out.print(d)
        return
    rows = []
    for s in arch:
        c = arch_cost(parse_arch(s))
        rows.append({"arch": s, "macs": c.macs, "params": c.params})
    if json_out:
        _emit_json(rows)
    else:
        for r in rows:
            out.print(f"{r['arch']}  macs={r['macs'] / 1e6:.1f}M  params={r['params'] / 1e6:.2f}M")


@app.command()
def export(arch: str = typer.Argument(..., help="architecture string"),
           out_path: Path = typer.Option(..., "--out", help="output .onnx file"),
           device: Optional[str] = typer.Option(None, "--device", help="device whose batch size to use")) -> None:
    """Write the ONNX graph of an architecture."""
    import onnx

    from .builders.onnx_graph import build_onnx
    from .devices import load_device

    a = parse_arch(arch)
    batch = load_device(device).batch_size if device else 1
    _check_out_file(out_path)
    model = build_onnx(a, batch=batch)
    tmp = out_path.with_name(out_path.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out_path)
    err.print(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB, batch {batch})")


@app.command()
def measure(targets: List[str] = typer.Argument(..., help="architecture strings or .onnx paths"),
            device: str = typer.Option(..., "--device", help="device name (devices/*.toml) or .toml path"),
            input_shape: Optional[List[str]] = typer.Option(None, "--input-shape",
                                                            help="NAME=1,3,224,224 for dynamic ONNX inputs"),
            quick: bool = typer.Option(False, "--quick", help="shorter timing (noisier)"),
            json_out: bool = typer.Option(False, "--json")) -> None:
    """Measure real ONNX Runtime latency, bracketed by the canary model."""
    from .devices import load_device
    from .measure import MeasureConfig, Measurer

    dev = load_device(device)
    shapes = _parse_shapes(input_shape)
    models = [(t, *load_target(t, dev.batch_size, shapes)) for t in targets]
    results = []
    with Measurer(dev, MeasureConfig.quick() if quick else None) as m:
        with _progress() as prog:
            task = prog.add_task("measure", total=len(models))
            for name, kind, model in models:
                r = m.measure(model, name).to_dict()
                r["kind"] = kind
                r["device"] = dev.name
                results.append(r)
                prog.advance(task)
    if json_out:
        _emit_json(results)
        return
    t = Table("target", "latency ms (p10-p90)", "rel. to canary", "canary ms", "noise")
    for r in results:
        t.add_row(r["target"], f"{r['latency_ms']:.3f} ({r['latency_p10_ms']:.3f}-{r['latency_p90_ms']:.3f})",
                  f"{r['relative_to_canary']:.3f}", f"{r['canary_ms']:.3f}", f"{100 * r['noise_rel']:.1f}%")
    out.print(t)


@app.command()
def profile(device: str = typer.Option(..., "--device", help="device name or .toml path"),
            out_dir: Path = typer.Option(..., "--out", help="profile directory"),
            time_budget_min: float = typer.Option(15.0, "--time-budget-min", help="minutes for all parts"),
            resume: bool = typer.Option(False, "--resume", help="continue an interrupted profile"),
            n_archs: int = typer.Option(400, "--n-archs", min=0, help="end-to-end architectures (at most)"),
            n_kernels: int = typer.Option(400, "--n-kernels", min=0, help="kernel-campaign ops (at most)"),
            n_kernel_profiles: int = typer.Option(30, "--n-kernel-profiles", min=0,
                                                  help="full models profiled per kernel (at most)"),
            seed: int = typer.Option(0, "--seed"),
            resolutions: Optional[str] = typer.Option(None, "--resolutions",
                                                      help="comma-separated resolutions (default 128,160,192,224)"),
            width_mults: Optional[str] = typer.Option(None, "--width-mults", help="comma-separated (default 1.0,1.2)"),
            quick: bool = typer.Option(False, "--quick", help="shorter timing per measurement (noisier)")) -> None:
    """Measure a device profile: block lookup table, kernel campaign, kernel records, end-to-end archs."""
    from .devices import load_device
    from .measure import MeasureConfig
    from .profile import ProfilePlan, build_profile
    from .profile.store import ProfileStore

    dev = load_device(device)
    space = _space_from_options(resolutions, width_mults)
    pplan = ProfilePlan(n_archs=n_archs, n_kernels=n_kernels, n_kernel_profiles=n_kernel_profiles,
                        time_budget_min=time_budget_min, seed=seed)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output path {out_dir} is a file, not a directory")
    with _progress() as prog:

        class _Bar:
            def __init__(self, part: str, total: int, done: int) -> None:
                self.id = prog.add_task(part, total=total, completed=done)

            def advance(self, n: int = 1) -> None:
                prog.advance(self.id, n)

            def close(self) -> None:
                pass

        try:
            reports = build_profile(dev, out_dir, pplan, space=space, resume=resume,
                                    config=MeasureConfig.quick() if quick else None, progress=_Bar)
        except KeyboardInterrupt:
            prog.stop()
            n = ProfileStore(out_dir).row_counts() if (out_dir / "profile.sqlite").exists() else {}
            err.print(f"interrupted: saved so far {n}; run again with --resume to continue")
            raise typer.Exit(130)
    for r in reports:
        msg = f"{r.part:15s} {r.done_before + r.done_now:5d}/{r.planned:<5d} measured ({r.done_now} now) in {r.seconds:7.1f} s"
        if r.stopped_by_budget:
            msg += "  [time budget reached]"
        err.print(msg)
    err.print(f"profile written to {out_dir}")


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def main() -> None:
    warnings.showwarning = _showwarning
    try:
        app()
    except HwnasError as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
