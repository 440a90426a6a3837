"""The ``hwnas`` command line.  Results go to stdout (``--json`` for machine-readable), logs and
progress to stderr.  User errors print ``error: <one line>`` and exit with status 2."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
import time
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


def _given(ctx: typer.Context, *params: str) -> list[str]:
    """The options among ``params`` (parameter names) that the command line set, as flags."""
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    # by name: typer may bring its own copy of click, whose ParameterSource is another enum
    given = ("COMMANDLINE", "ENVIRONMENT")
    return [flags[p] for p in params if getattr(ctx.get_parameter_source(p), "name", "DEFAULT") in given]


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
def profile(ctx: typer.Context,
            device: str = typer.Option(..., "--device", help="device name or .toml path"),
            out_dir: Path = typer.Option(..., "--out", help="profile directory"),
            time_budget_min: float = typer.Option(15.0, "--time-budget-min", help="minutes for all parts"),
            resume: bool = typer.Option(False, "--resume", help="continue an interrupted profile"),
            n_archs: int = typer.Option(400, "--n-archs", min=0, help="end-to-end architectures (at most)"),
            n_kernels: int = typer.Option(400, "--n-kernels", min=0, help="kernel-campaign ops (at most)"),
            n_kernel_profiles: int = typer.Option(30, "--n-kernel-profiles", min=0,
                                                  help="full models profiled per kernel (at most)"),
            zoo_per_family: int = typer.Option(6, "--zoo-per-family", min=0,
                                               help="models per out-of-space family (ResNet, VGG, ...)"),
            seed: int = typer.Option(0, "--seed"),
            resolutions: Optional[str] = typer.Option(None, "--resolutions",
                                                      help="comma-separated resolutions (default 128,160,192,224)"),
            width_mults: Optional[str] = typer.Option(None, "--width-mults", help="comma-separated (default 1.0,1.2)"),
            short_timing: bool = typer.Option(False, "--short-timing", help="shorter timing per measurement (noisier)"),
            from_profile: Optional[Path] = typer.Option(None, "--from-profile",
                                                        help="few-shot: adapt this trained reference profile"),
            quick: Optional[int] = typer.Option(None, "--quick", help="few-shot: architectures to measure "
                                                "(default 30; needs --from-profile)")) -> None:
    """Measure a device profile: block lookup table, kernel campaign, kernel records, end-to-end archs.

    With --from-profile REF [--quick N]: a few-shot profile, N architectures measured here and
    REF's predictors adapted to this device (minutes instead of a full profile)."""
    from .devices import load_device
    from .measure import MeasureConfig
    from .profile import ProfilePlan, build_profile
    from .profile.fewshot import DEFAULT_SHOTS

    dev = load_device(device)
    if quick is not None and from_profile is None:
        raise InputError("--quick N makes a few-shot profile and needs --from-profile REF (a trained profile)")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output path {out_dir} is a file, not a directory")
    if from_profile is not None:
        unused = _given(ctx, "time_budget_min", "n_archs", "n_kernels", "n_kernel_profiles", "zoo_per_family")
        if unused:
            raise InputError(f"{', '.join(unused)} size a full profile; a few-shot profile (--from-profile) measures "
                             f"--quick N architectures only: drop {'it' if len(unused) == 1 else 'them'}")
        _fewshot_profile(dev, out_dir, from_profile, DEFAULT_SHOTS if quick is None else quick, seed, resume,
                         _space_from_options(resolutions, width_mults) if (resolutions or width_mults) else None,
                         MeasureConfig.quick() if short_timing else None)
        return
    space = _space_from_options(resolutions, width_mults)
    pplan = ProfilePlan(n_archs=n_archs, n_kernels=n_kernels, n_kernel_profiles=n_kernel_profiles,
                        zoo_per_family=zoo_per_family,
                        time_budget_min=time_budget_min, seed=seed)
    with _measuring_into(out_dir) as bars:
        reports = build_profile(dev, out_dir, pplan, space=space, resume=resume,
                                config=MeasureConfig.quick() if short_timing else None, progress=bars)
    for r in reports:
        msg = f"{r.part:15s} {r.done_before + r.done_now:5d}/{r.planned:<5d} measured ({r.done_now} now) in {r.seconds:7.1f} s"
        if r.stopped_by_budget:
            msg += "  [time budget reached]"
        err.print(msg)
    err.print(f"profile written to {out_dir}")


@contextlib.contextmanager
def _measuring_into(out_dir: Path):
    """Progress bars for a profile being measured into ``out_dir`` (yields a ``ProgressFactory``,
    see ``hwnas.profile.campaign``); on Ctrl-C, says what is saved and exits 130."""
    from .profile.store import ProfileStore

    with _progress() as prog:

        class _Bar:
            def __init__(self, part: str, total: int, done: int) -> None:
                self.id = prog.add_task(part, total=total, completed=done)

            def advance(self, n: int = 1) -> None:
                prog.advance(self.id, n)

            def close(self) -> None:
                pass

        try:
            yield _Bar
        except KeyboardInterrupt:
            prog.stop()
            n = ProfileStore(out_dir).row_counts() if (out_dir / "profile.sqlite").exists() else {}
            err.print(f"interrupted: saved so far {n}; run again with --resume to continue")
            raise typer.Exit(130)


def _fewshot_profile(dev, out_dir: Path, ref: Path, n: int, seed: int, resume: bool, space, config) -> None:
    from .profile.fewshot import build_fewshot_profile

    t0 = time.perf_counter()
    with _measuring_into(out_dir) as bars:
        rep = build_fewshot_profile(dev, out_dir, ref, n, seed=seed, resume=resume, space=space, config=config,
                                    progress=bars, log=lambda m: err.print(m))
    err.print(f"few-shot profile: {rep.done_before + rep.done_now} architectures measured ({rep.done_now} now, "
              f"{rep.seconds:.1f} s), {time.perf_counter() - t0:.1f} s in all")
    err.print(f"profile written to {out_dir}")


def _profile_dir(profile: Optional[Path]) -> Path:
    from .paths import default_profile_dir

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
    from .profile.calibrate import calibrated_profile
    from .profile.fewshot import MIN_SHOTS

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


@app.command()
def train(profile: Path = typer.Option(..., "--profile", help="profile directory"),
          predictor: Optional[List[str]] = typer.Option(None, "--predictor", help="train only these (repeatable)")) -> None:
    """Fit every latency predictor on a profile and store them with it (JSON, no pickle)."""
    from .predictors import KNOWN_PREDICTORS, train_all

    d = _profile_dir(profile)
    for name in predictor or []:
        if name not in KNOWN_PREDICTORS:
            raise InputError(f"unknown predictor {name!r}; choose from {', '.join(KNOWN_PREDICTORS)}")
    index = train_all(d, list(predictor) if predictor else None, progress=lambda msg: err.print(msg))
    if index.get("few_shot"):
        err.print(f"saved to {d / 'predictors'}")
        return
    h = index["heldout"]
    err.print(f"held-out check ({h['n_train']} train / {h['n_test']} test architectures, canary units):")
    for name, m in h["predictors"].items():
        if "error" in m:
            err.print(f"  {name:8s} not evaluated: {m['error']}")
            continue
        err.print(f"  {name:8s} within ±10%: {100 * m['within_10pct']:5.1f}%  within ±5%: {100 * m['within_5pct']:5.1f}%"
                  f"  MAPE {m['mape_pct']:.2f}%")
    err.print(f"defaults: architectures -> {index['default']['arch']}, ONNX models -> {index['default']['onnx']}")
    err.print(f"saved to {d / 'predictors'}")


@app.command()
def predict(targets: List[str] = typer.Argument(..., help="architecture strings or .onnx paths"),
            profile: Optional[Path] = typer.Option(None, "--profile", help="profile directory (default: bundled)"),
            predictor: Optional[str] = typer.Option(None, "--predictor", help="predictor name (default per target type)"),
            input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help="NAME=1,3,224,224"),
            breakdown: bool = typer.Option(False, "--breakdown", help="per-kernel predictions (kernel predictor)"),
            calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help=_CALIBRATE_HELP),
            calibration_shots: int = typer.Option(30, "--calibration-shots", help="architectures a calibration measures"),
            json_out: bool = typer.Option(False, "--json")) -> None:
    """Predict latency (ms on the profile's device, and canary-relative) for architectures or ONNX models."""
    from .predictors import KNOWN_PREDICTORS, load_predictor
    from .predictors.base import TargetSpec
    from .profile import warn_if_other_machine

    if predictor is not None and predictor not in KNOWN_PREDICTORS:
        raise InputError(f"unknown predictor {predictor!r}; choose from {', '.join(KNOWN_PREDICTORS)}")
    shapes = _parse_shapes(input_shape)
    specs = []
    for t in targets:
        if _looks_like_onnx(t):
            from .onnx_io import check_path, load_onnx

            if shapes:
                specs.append(("onnx", TargetSpec(t, model=load_onnx(t, shapes).model)))
            else:  # read by whichever predictor needs it (the kernel predictor hands the file to ORT)
                check_path(Path(t))
                specs.append(("onnx", TargetSpec(t, path=t)))
        else:
            specs.append(("arch", TargetSpec(t, arch=parse_arch(t))))
    d = _on_this_machine(_profile_dir(profile), calibrate, calibration_shots)
    warn_if_other_machine(d)  # --no-calibrate on another machine's profile
    cache: dict = {}
    results = []
    for kind, spec in specs:
        name = predictor or None
        key = (name, kind)
        if key not in cache:
            cache[key] = load_predictor(d, name, target_kind=kind)
        pred = cache[key]
        rel = float(pred.predict_relative([spec])[0])
        r = {"target": spec.name, "kind": kind, "latency_ms": rel * pred.canary_reference_ms_,
             "relative_to_canary": rel, "predictor": pred.label,
             "profile": str(d), "canary_reference_ms": pred.canary_reference_ms_}
        iv = pred.interval(kind)
        if iv is not None:
            lo, hi = iv.bounds(r["latency_ms"])
            r.update(latency_ms_lo=float(lo), latency_ms_hi=float(hi), interval_coverage=iv.coverage,
                     interval_source=iv.source)
        if breakdown:
            if not hasattr(pred, "breakdown"):
                raise InputError(f"--breakdown needs the kernel predictor (use --predictor kernel)")
            kernels = pred.breakdown(spec)
            # share the calibrated end-to-end figure out in proportion to each kernel's prediction
            scale = rel / max(sum(k.relative for k in kernels), 1e-12)
            r["kernels"] = [{"node": k.node_name, "op_type": k.op_type, "family": k.family,
                             "latency_ms": scale * k.relative * pred.canary_reference_ms_, "fallback": k.fallback}
                            for k in kernels]
        results.append(r)
    if json_out:
        _emit_json(results)
        return
    t = Table("target", "predicted ms", "interval ms", "rel. to canary", "predictor")
    for r in results:
        iv = (f"{r['latency_ms_lo']:.3f}-{r['latency_ms_hi']:.3f} ({100 * r['interval_coverage']:.0f}%)"
              if "latency_ms_lo" in r else "-")
        t.add_row(r["target"], f"{r['latency_ms']:.3f}", iv, f"{r['relative_to_canary']:.3f}", r["predictor"])
    out.print(t)
    for r in results:
        if "kernels" in r:
            kt = Table("node", "op", "family", "ms", title=f"kernels of {r['target']}")
            for k in r["kernels"]:
                kt.add_row(k["node"], k["op_type"], k["family"] + (" (fallback)" if k["fallback"] else ""),
                           f"{k['latency_ms']:.4f}")
            out.print(kt)


@app.command()
def evaluate(profile: Optional[Path] = typer.Option(None, "--profile", help="profile directory (default: bundled)"),
             families: bool = typer.Option(True, "--families/--no-families", help="also hold out zoo families"),
             full_profile: Optional[Path] = typer.Option(
                 None, "--full-profile", help="few-shot profiles: judge on this full profile of the same device "
                 "(default: a sibling profile of the same device, if any)"),
             json_out: bool = typer.Option(False, "--json")) -> None:
    """Held-out accuracy of every predictor, next to the measurement noise floor.

    On a few-shot profile: its transfer predictor judged on a full profile of the same device."""
    from .predictors import PREDICTORS
    from .predictors.evaluate import evaluate_families, evaluate_in_space
    from .profile import Profile

    d = _profile_dir(profile)
    prof = Profile.load(d)
    if prof.meta.get("few_shot"):
        _evaluate_fewshot(prof, full_profile, json_out)
        return
    if full_profile is not None:
        raise InputError(f"--full-profile is for few-shot profiles; {d} is a full profile")
    from .predictors.base import require_archs

    require_archs("evaluate", len(prof.table("arch")), 20)
    res = {"profile": str(d), "in_space": evaluate_in_space(prof, list(PREDICTORS), progress=lambda m: err.print(m))}
    if families:
        res["out_of_space"] = evaluate_families(prof, progress=lambda m: err.print(m))
    if json_out:
        _emit_json(res)
        return
    ins = res["in_space"]
    t = Table("predictor", "MAPE %", "RMSPE %", "±5%", "±10%", "Spearman", "Kendall",
              title=f"in-space, {ins['n_test']} held-out architectures ({ins['n_train']} for fitting)")
    for name, m in ins["predictors"].items():
        if "error" in m:
            t.add_row(name, m["error"], "", "", "", "", "")
            continue
        t.add_row(name, f"{m['mape_pct']:.2f}", f"{m['rmspe_pct']:.2f}", f"{100 * m['within_5pct']:.1f}%",
                  f"{100 * m['within_10pct']:.1f}%", f"{m['spearman']:.4f}", f"{m['kendall']:.4f}")
    out.print(t)
    nf = ins["noise_floor"]
    out.print(f"noise floor: median per-measurement spread {100 * nf['median_noise_rel']:.1f}%, "
              f"median canary drift {100 * nf['median_abs_canary_drift']:.1f}%")
    oos = res.get("out_of_space") or {}
    sets = [("tuning families (each fitted without its own models)", oos)] if oos else []
    if oos.get("sealed"):
        sets.append(("sealed families (never tuned on; fitted without any sealed model)", oos["sealed"]))
    for title, fams in sets:
        t = Table("held-out family", "n", "kernel ±10%", "kernel MAPE %", "MACs ±10%", "MACs MAPE %", title=title)
        for fam, v in [*fams["families"].items(), ("all", fams["overall"])]:
            t.add_row(fam, str(v["kernel"]["n"]), f"{100 * v['kernel']['within_10pct']:.0f}%",
                      f"{v['kernel']['mape_pct']:.1f}", f"{100 * v['macs']['within_10pct']:.0f}%",
                      f"{v['macs']['mape_pct']:.1f}")
        out.print(t)


def _evaluate_fewshot(prof, full_profile: Optional[Path], json_out: bool) -> None:
    from .paths import profiles_dir
    from .predictors.evaluate import evaluate_fewshot, find_full_profile, full_profile_mismatch
    from .profile import Profile

    if full_profile is not None:
        full = Profile.load(_profile_dir(full_profile), check_machine=False)
        why = full_profile_mismatch(full.meta, prof)
        if why:
            raise InputError(f"--full-profile {full_profile} {why}")
    else:
        full = find_full_profile(prof, [prof.dir.parent, profiles_dir()])
    few = prof.meta["few_shot"]
    if full is None:
        msg = (f"few-shot profile of {prof.device.name!r}: {few['n']} architectures, adapted from "
               f"{few['reference']}; no full profile of this device found to judge it on "
               f"(pass --full-profile DIR)")
        if json_out:
            _emit_json({"profile": str(prof.dir), "few_shot": few, "full_profile": None})
        else:
            err.print(msg)
        return
    res = evaluate_fewshot(prof, full)
    res["profile"] = str(prof.dir)
    if json_out:
        _emit_json(res)
        return
    t = Table("predictor", "MAPE %", "RMSPE %", "±5%", "±10%", "Spearman", "Kendall",
              title=f"few-shot ({few['n']} measured on {prof.device.name}, from {few['reference_device']}), "
                    f"judged on {res['n_test']} architectures of {full.dir}")
    rows = [("transfer (few-shot)", res["transfer"]), (f"{few['reference_device']} as is", res["reference_as_is"])]
    if res["full_profile_default"]:
        f = res["full_profile_default"]
        rows.append((f"full profile: {f['predictor']} ({f['n_train']} archs, own held-out half)", f))
    for name, m in rows:
        t.add_row(name, f"{m['mape_pct']:.2f}", f"{m['rmspe_pct']:.2f}", f"{100 * m['within_5pct']:.1f}%",
                  f"{100 * m['within_10pct']:.1f}%", f"{m.get('spearman', float('nan')):.4f}",
                  f"{m.get('kendall', float('nan')):.4f}")
    out.print(t)
    nf = res["noise_floor"]
    out.print(f"noise floor of the judging measurements: median per-measurement spread "
              f"{100 * nf['median_noise_rel']:.1f}%")


# ---- MACs vs latency report and the one-command demo (issue #6) ----------------------------


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
                json_out: bool = typer.Option(False, "--json")) -> None:
    """MACs vs measured latency: correlations, misranked pairs, counterexamples, the predictor's fix."""
    from .compare import compare as run_compare
    from .compare import headline, report_breakdown

    dirs = [_profile_dir(p) for p in profile] if profile else [_profile_dir(None)]
    if out_dir is not None:
        from .report import prepare_out_dir

        prepare_out_dir(out_dir)  # fail on a bad --out before anything is measured
    shapes = _parse_shapes(input_shape)
    from .compare import check_budgets, load_models, open_profiles

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
            from .report import write_report

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
    from .compare import check_budgets, headline
    from .demo import Steps, run_demo

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


@app.command()
def search(ctx: typer.Context,
           budget_ms: List[str] = typer.Option(..., "--budget-ms", help="latency budget in ms (one per --profile)"),
           profile: Optional[List[Path]] = typer.Option(None, "--profile", help="profile directory (repeatable; default: bundled)"),
           strategy: str = typer.Option("evolution", "--strategy", help="evolution | random | grid | nsga2 | rl | gradient"),
           accuracy: Optional[str] = typer.Option(None, "--accuracy",
                                                  help="accuracy estimator (see `hwnas accuracy --help`; default "
                                                       "predictor, for --strategy gradient supernet)"),
           accuracy_dir: Optional[Path] = typer.Option(None, "--accuracy-dir",
                                                       help="trained supernet / accuracy predictor directory"),
           n_samples: Optional[int] = typer.Option(None, "--n-samples", min=1,
                                                   help="random / rl: architectures to score (default population x generations)"),
           rl_reward: str = typer.Option("soft", "--rl-reward", help="rl: MnasNet reward, soft | hard"),
           rl_controller: str = typer.Option("categorical", "--rl-controller", help="rl: categorical | lstm"),
           resolution: Optional[int] = typer.Option(None, "--resolution", help="gradient: fixed resolution (default: each)"),
           width_mult: Optional[float] = typer.Option(None, "--width-mult", help="gradient: fixed width (default: each)"),
           gradient_steps: int = typer.Option(300, "--gradient-steps", min=1, help="gradient: weight steps per run"),
           predictor: Optional[str] = typer.Option(None, "--predictor", help="latency predictor (default: the profile's)"),
           max_params: Optional[float] = typer.Option(None, "--max-params", help="maximum parameters"),
           max_model_mb: Optional[float] = typer.Option(None, "--max-model-mb", help="maximum fp32 model size, MB"),
           max_peak_mem_mb: Optional[float] = typer.Option(None, "--max-peak-mem-mb", help="maximum peak activation memory, MB"),
           population: int = typer.Option(100, "--population"),
           generations: int = typer.Option(500, "--generations"),
           seed: int = typer.Option(0, "--seed"),
           verify: int = typer.Option(0, "--verify", min=0, help="re-measure the best K on the device"),
           measured: bool = typer.Option(False, "--measured", help="measurement in the loop: the winner is an "
                                         "architecture measured here within the budget"),
           measure_margin: float = typer.Option(0.02, "--measure-margin", help="with --measured: the winner must "
                                                "measure this fraction under the budget (noise margin)"),
           calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help=_CALIBRATE_HELP),
           calibration_shots: int = typer.Option(30, "--calibration-shots", help="architectures a calibration measures"),
           json_out: bool = typer.Option(False, "--json"),
           out_dir: Optional[Path] = typer.Option(None, "--out", help="save every candidate (CSV) and plots (PNG)")) -> None:
    """Search the space for the most accurate architecture within a latency budget."""
    import math

    from .search import STRATEGIES, SearchConfig, run_search
    from .search import verify as verify_results

    unused = _given(ctx, *getattr(STRATEGIES.get(strategy), "unused_options", ()))
    if unused:
        raise InputError(f"--strategy {strategy} does not use {', '.join(unused)}: "
                         f"drop {'it' if len(unused) == 1 else 'them'}")

    budgets = []
    for b in budget_ms:
        try:
            v = float(b)
        except ValueError:
            raise InputError(f"--budget-ms must be a number of ms, got {b!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise InputError(f"--budget-ms must be a positive number of ms, got {b!r}")
        budgets.append(v)
    if out_dir is not None:
        from .report import prepare_out_dir

        prepare_out_dir(out_dir)  # a bad --out fails before the search, not after it
    if accuracy is None:
        accuracy = "supernet" if strategy == "gradient" else "predictor"
    dirs = [_on_this_machine(p, calibrate, calibration_shots) for p in (profile or [_profile_dir(None)])]
    cfg = SearchConfig(budgets_ms=tuple(budgets), profiles=tuple(str(p) for p in dirs), strategy=strategy,
                       accuracy=accuracy, accuracy_dir=str(accuracy_dir) if accuracy_dir is not None else None,
                       latency_predictor=predictor, n_samples=n_samples, rl_reward=rl_reward,
                       rl_controller=rl_controller, resolution=resolution, width_mult=width_mult,
                       gradient_steps=gradient_steps,
                       max_params=max_params, max_model_mb=max_model_mb,
                       max_peak_mem_mb=max_peak_mem_mb, population=population, generations=generations, seed=seed,
                       verify=verify)
    if measured and not (math.isfinite(measure_margin) and 0 <= measure_margin < 0.5):
        raise InputError(f"--measure-margin must be a fraction in [0, 0.5), got {measure_margin!r}")
    loop = []
    with _progress() as prog:
        task = prog.add_task(f"search ({strategy})", total=None)
        result = run_search(cfg, progress=lambda done, total: prog.update(task, completed=done, total=total))
        if measured:
            from .search.measured import measure_in_loop

            mt = prog.add_task("measure near the budget", total=None)
            loop = measure_in_loop(result, margin=measure_margin,
                                   progress=lambda done, total: prog.update(mt, completed=done, total=total))
        if verify:
            vt = prog.add_task("verify on device", total=None)
            verify_results(result, verify, progress=lambda done, total: prog.update(vt, completed=done, total=total))
    for n in result.notes:
        err.print(f"note: {n}", soft_wrap=True)
    err.print(f"{result.n_queries} candidates evaluated in {result.seconds:.2f} s; accuracy = {result.accuracy_meaning}",
              soft_wrap=True)
    for r in loop:
        err.print(f"measured {r.n_measured} of {r.n_plausible} candidates whose interval crossed {r.budget_ms:g} ms "
                  f"({r.seconds:.1f} s): winner measured {r.winner_measured_ms:.3f} ms (predicted "
                  f"{r.winner_predicted_ms:.3f} ms)", soft_wrap=True)
    rows = []
    for cands in result.top:
        for c in cands[: max(1, verify)]:
            rows.append(c.to_dict())
    if json_out:
        _emit_json(rows)
    else:
        t = Table("profile", "arch", "pred. ms", "budget ms", "accuracy", "MMACs", "M params", "measured ms")
        for r in rows:
            meas = r.get("measured_latency_ms")
            t.add_row(Path(r["profile"]).name, r["arch"], f"{r['predicted_latency_ms']:.3f}", f"{r['budget_ms']:g}",
                      f"{r['accuracy_estimate']:.4g}", f"{r['macs'] / 1e6:.1f}", f"{r['params'] / 1e6:.2f}",
                      "" if meas is None else f"{meas:.3f}" + ("" if r["within_budget_measured"] else " (over!)"))
        out.print(t)
    if out_dir is not None:  # after the result is printed: an output error cannot lose it
        from .search.output import save_outputs

        try:
            for path in save_outputs(result, out_dir):
                err.print(f"wrote {path}")
        except OSError as e:
            raise InputError(f"could not write the search's files to {out_dir}: {e.strerror or e}"
                             f"{f' ({e.filename})' if e.filename else ''}; the result above is complete") from None


# --------------------------------------------------------------------------------------------
# accuracy estimation: supernet, accuracy predictor, estimators (hwnas.accuracy)

supernet_app = typer.Typer(no_args_is_help=True, help="Weight-sharing supernet and accuracy predictor.")
app.add_typer(supernet_app, name="supernet")


def _torch_threads(threads: Optional[int]) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@supernet_app.command("train")
def supernet_train(data: str = typer.Option(..., "--data", help="ImageFolder-style directory, .npz file, or builtin:digits"),
                   out_dir: Path = typer.Option(..., "--out", help="output directory (supernet.pt + supernet.json)"),
                   epochs: Optional[int] = typer.Option(None, "--epochs", min=1,
                                                        help="total epochs (default 20; with --resume: the checkpoint's; "
                                                             "a new total stretches the cosine schedule)"),
                   resume: bool = typer.Option(False, "--resume", help="continue the checkpoint in --out"),
                   batch_size: int = typer.Option(64, "--batch-size", min=2),
                   seed: int = typer.Option(0, "--seed"),
                   threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                                         help="torch threads (default: torch's; 1 is faster on a busy machine)"),
                   time_budget_min: Optional[float] = typer.Option(None, "--time-budget-min",
                                                                   help="stop (with a checkpoint) after this many minutes")) -> None:
    """Train a weight-sharing supernet (sandwich rule) on a dataset; resumable."""
    from .accuracy.data import load_dataset
    from .accuracy.supernet import CHECKPOINT, TrainConfig, train_supernet

    from .validate import positive_number

    budget_s = None if time_budget_min is None else 60 * positive_number(time_budget_min, "--time-budget-min", "minutes")
    _torch_threads(threads)
    if epochs is None:
        epochs = TrainConfig.epochs
        if resume:
            from .accuracy.supernet import read_meta

            epochs = int(read_meta(out_dir)["config"]["epochs"])
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed)
    dataset = load_dataset(data)
    err.print(f"data: {dataset.description}")
    with _progress() as prog:
        task = prog.add_task("supernet", total=None)

        def on_step(done: int, total: int, info: dict) -> None:
            prog.update(task, completed=done, total=total,
                        description=f"supernet epoch {info['epoch'] + 1} loss {info['loss']:.3f}")

        try:
            r = train_supernet(dataset, out_dir, cfg, resume=resume, progress=on_step, time_budget_s=budget_s)
        except KeyboardInterrupt:
            prog.stop()
            err.print(f"interrupted: the last checkpoint in {out_dir} (saved every epoch and every minute) is kept; "
                      f"run again with --resume to continue")
            raise typer.Exit(130)
    size = (out_dir / CHECKPOINT).stat().st_size / 1e6
    msg = f"{r.epochs_done}/{r.epochs} epochs in {r.seconds:.0f} s; checkpoint {out_dir / CHECKPOINT} ({size:.0f} MB)"
    if r.stopped_by_budget:
        msg += " [time budget reached: --resume continues]"
    err.print(msg)
    if not r.stopped_by_budget:
        err.print(f"next: hwnas supernet fit-predictor --dir {out_dir}")


@supernet_app.command("fit-predictor")
def supernet_fit_predictor(acc_dir: Path = typer.Option(..., "--dir", help="supernet directory (from `supernet train`)"),
                           n: int = typer.Option(300, "--n", min=13, help="subnets to measure with inherited weights"),
                           csv_path: Optional[Path] = typer.Option(None, "--csv", help="fit on your own arch,accuracy CSV instead"),
                           model: str = typer.Option("auto", "--model", help="auto (cross-validated), gbm or mlp"),
                           features: str = typer.Option("auto", "--features",
                                                        help="auto, ordinal, onehot, ordinal+cost or onehot+cost"),
                           seed: int = typer.Option(1, "--seed", help="seed of the sampled subnets"),
                           threads: Optional[int] = typer.Option(None, "--threads", min=1)) -> None:
    """Fit the accuracy predictor on (subnet, inherited-weight accuracy) pairs or a CSV; held-out figures."""
    from .accuracy.predictor import PREDICTOR_FILE, fit_predictor, read_pairs_csv, supernet_pairs

    _torch_threads(threads)
    if acc_dir.exists() and not acc_dir.is_dir():
        raise InputError(f"--dir {acc_dir} is a file, not a directory")
    if csv_path is not None:
        archs, acc = read_pairs_csv(csv_path)
        source = f"pairs from {csv_path}"
        target = "accuracy (as in the CSV)"
    else:
        from .accuracy.supernet import load_supernet

        ls = load_supernet(acc_dir)
        with _progress() as prog:
            task = prog.add_task("inherited-weight accuracy", total=n)
            archs, acc = supernet_pairs(acc_dir, n, seed=seed, loaded=ls,
                                        progress=lambda done, total: prog.update(task, completed=done))
        source = f"supernet subnets ({acc_dir})"
        target = f"top-1 % with inherited weights on {ls.data.source}"
    pred, m = fit_predictor(archs, acc, model=model, features=features)
    pred.info.update({"source": source, "target": target, "n_pairs": len(archs)})
    acc_dir.mkdir(parents=True, exist_ok=True)
    path = pred.save(acc_dir / PREDICTOR_FILE)
    err.print(f"model: {pred.model} on '{pred.features}' features"
              + (f" (cross-validated Spearman {pred.info['cv'][pred.model + '/' + pred.features]:.3f})"
                 if "cv" in pred.info else ""))
    err.print(f"held-out ({m['n']} pairs, fitted on {m['n_train']}): RMSE {m['rmse']:.3f}  MAE {m['mae']:.3f}  "
              f"Spearman {m['spearman']:.3f}  Kendall {m['kendall']:.3f}")
    err.print(f"saved {path}")


@app.command("accuracy")
def accuracy_cmd(arch: List[str] = typer.Argument(..., help="architecture strings"),
                 estimator: str = typer.Option("predictor", "--estimator",
                                               help="predictor, supernet, naswot, params or macs"),
                 accuracy_dir: Optional[Path] = typer.Option(None, "--accuracy-dir",
                                                             help="trained supernet/predictor (default: profiles/accuracy)"),
                 json_out: bool = typer.Option(False, "--json")) -> None:
    """Estimate the accuracy of architectures (higher is better; the meaning is printed)."""
    from .accuracy import make_estimator

    archs = [parse_arch(a) for a in arch]
    est = make_estimator(estimator, accuracy_dir)
    if estimator in ("supernet", "naswot") and len(archs) > 1:
        with _progress() as prog:
            task = prog.add_task(estimator, total=len(set(map(str, archs))))
            values = est.estimate(archs, progress=lambda k: prog.advance(task, k))
    else:
        values = est.estimate(archs)
    d = est.describe()
    if json_out:
        _emit_json([{"arch": str(a), "value": float(v), **d} for a, v in zip(archs, values)])
        return
    t = Table("architecture", f"{est.name} ({est.unit})")
    for a, v in zip(archs, values):
        t.add_row(str(a), f"{v:.6g}" if abs(v) >= 1e4 else f"{v:.2f}")
    out.print(t)
    err.print(f"{est.name}: {est.meaning}", highlight=False, soft_wrap=True)


from .fleet.cli import fleet_app  # noqa: E402  (Ray is imported only when a fleet command runs)
app.add_typer(fleet_app, name="fleet")


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def main() -> None:
    warnings.showwarning = _showwarning
    from .allocator import allow_tuning

    allow_tuning()  # this process may keep the memory ORT frees (README: HWNAS_MALLOC_TUNING)
    try:
        app()
    except HwnasError as e:
        from rich.markup import escape

        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
