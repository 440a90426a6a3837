"""Commands that measure: devices, export, measure, profile, and train (fits a profile's predictors)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..errors import InputError
from .common import (_check_out_file, _emit_json, _given, _parse_shapes, _progress, _space_from_options,
                     app, err, load_target, out, parse_arch, print_heldout, print_kernel_tables)


@app.command()
def devices(json_out: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List the bundled device specs (devices/*.toml)."""
    from ..devices import list_devices

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



@app.command()
def export(arch: str = typer.Argument(..., help="architecture string"),
           out_path: Path = typer.Option(..., "--out", help="output .onnx file"),
           device: Optional[str] = typer.Option(None, "--device", help="device whose batch size to use"),
           space_name: str = typer.Option("mbv3", "--space", help="search space: mbv3 (default) | vit")) -> None:
    """Write the ONNX graph of an architecture."""
    import onnx

    from ..builders.onnx_graph import build_onnx
    from ..devices import load_device
    from .vit_cmds import check_targets_space

    check_targets_space([arch], space_name)
    if space_name == "vit":
        from .vit_cmds import vit_export

        batch = load_device(device).batch_size if device else 1
        _check_out_file(out_path)
        vit_export(arch, out_path, batch)
        return
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
            kernels: bool = typer.Option(False, "--kernels", help="also each post-fusion kernel's time (ORT's "
                                         "profiler, scaled to the measured latency): compare with "
                                         "`hwnas predict --breakdown`"),
            json_out: bool = typer.Option(False, "--json")) -> None:
    """Measure real ONNX Runtime latency, bracketed by the canary model."""
    from ..devices import load_device
    from ..measure import MeasureConfig, Measurer

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
                if kernels:
                    r["kernels"] = _measured_kernels(m.profile_kernels(model), r["latency_ms"])
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
    print_kernel_tables(results, "measured kernels")


def _measured_kernels(kp, latency_ms: float) -> list[dict]:
    """Each kernel's median profiled time, scaled so the kernels add up to the unprofiled latency
    (the profiler inflates every kernel; the shares are what it sees), with its kernel family as
    the predictor's breakdown names it."""
    from ..predictors.kernel_features import featurize

    scale = latency_ms / max(kp.kernel_sum_ms, 1e-12)
    out = []
    for rec in kp.records:
        row = featurize(rec.op_type, rec.input_shapes, rec.output_shapes, rec.attributes, rec.node_name)
        out.append({"node": rec.node_name, "op_type": rec.op_type, "family": row.family if row else "uncovered",
                    "latency_ms": rec.duration_ms * scale})
    return out


@app.command()
def profile(ctx: typer.Context,
            device: str = typer.Option(..., "--device", help="device name or .toml path"),
            out_dir: Path = typer.Option(..., "--out", help="profile directory"),
            time_budget_min: float = typer.Option(15.0, "--time-budget-min", help="minutes for all parts"),
            resume: bool = typer.Option(False, "--resume", help="continue an interrupted profile"),
            n_archs: int = typer.Option(400, "--n-archs", min=0, help="end-to-end architectures (at most)"),
            n_kernels: int = typer.Option(400, "--n-kernels", min=0, help="kernel-campaign ops, CNN shapes (at most)"),
            n_token_kernels: int = typer.Option(150, "--n-token-kernels", min=0,
                                                help="kernel-campaign ops, transformer shapes (at most)"),
            n_lrn_kernels: int = typer.Option(24, "--n-lrn-kernels", min=0,
                                              help="kernel-campaign LRN ops, shapes of AlexNet / GoogLeNet-era CNNs "
                                              "(at most)"),
            n_patch_kernels: int = typer.Option(32, "--n-patch-kernels", min=0,
                                                help="kernel-campaign patch convolutions (stride = kernel: ViT "
                                                "patch embeddings, ConvNeXt / Swin stems and downsampling; at most)"),
            n_fc_kernels: int = typer.Option(12, "--n-fc-kernels", min=0,
                                             help="kernel-campaign classifier-head gemms of VGG / AlexNet size "
                                             "(4096-25088 features in; at most)"),
            n_attention_kernels: int = typer.Option(40, "--n-attention-kernels", min=0,
                                                    help="kernel-campaign fused self-attention ops (ORT's Attention / "
                                                    "MultiHeadAttention; at most)"),
            n_fused_act_kernels: int = typer.Option(60, "--n-fused-act-kernels", min=0,
                                                    help="kernel-campaign convolutions with a fused ReLU6 / "
                                                    "LeakyReLU / Sigmoid (at most)"),
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
                                                "(default 30; needs --from-profile)"),
            zoo_shots: Optional[int] = typer.Option(None, "--zoo-shots", min=0,
                                                    help="few-shot: zoo models of other families to measure too "
                                                    "(default: one per tuning family; 0: none)"),
            space_name: str = typer.Option("mbv3", "--space", help="search space: mbv3 | vit")) -> None:
    """Measure a device profile: block lookup table, kernel campaign, kernel records, end-to-end archs.

    With --from-profile REF [--quick N]: a few-shot profile, N architectures measured here and
    REF's predictors adapted to this device (minutes instead of a full profile)."""
    from ..devices import load_device
    from ..measure import MeasureConfig
    from ..profile import ProfilePlan, build_profile
    from ..profile.campaign import SIZE_FIELDS
    from ..profile.fewshot import DEFAULT_SHOTS

    from ..spaces import check_space_name

    check_space_name(space_name)
    dev = load_device(device)
    if space_name == "vit":
        _vit_profile(ctx, dev, out_dir, time_budget_min, n_archs, seed, resume, short_timing)
        return
    if quick is not None and from_profile is None:
        raise InputError("--quick N makes a few-shot profile and needs --from-profile REF (a trained profile)")
    if zoo_shots is not None and from_profile is None:
        raise InputError("--zoo-shots K belongs to a few-shot profile and needs --from-profile REF (a trained profile)")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output path {out_dir} is a file, not a directory")
    if from_profile is not None:
        unused = _given(ctx, "time_budget_min", *SIZE_FIELDS)
        if unused:
            raise InputError(f"{', '.join(unused)} size a full profile; a few-shot profile (--from-profile) measures "
                             f"--quick N architectures only: drop {'it' if len(unused) == 1 else 'them'}")
        _fewshot_profile(dev, out_dir, from_profile, DEFAULT_SHOTS if quick is None else quick, zoo_shots, seed, resume,
                         _space_from_options(resolutions, width_mults) if (resolutions or width_mults) else None,
                         MeasureConfig.quick() if short_timing else None)
        return
    space = _space_from_options(resolutions, width_mults)
    pplan = ProfilePlan(n_archs=n_archs, n_kernels=n_kernels, n_token_kernels=n_token_kernels,
                        n_lrn_kernels=n_lrn_kernels, n_patch_kernels=n_patch_kernels, n_fc_kernels=n_fc_kernels,
                        n_attention_kernels=n_attention_kernels, n_fused_act_kernels=n_fused_act_kernels,
                        n_kernel_profiles=n_kernel_profiles,
                        zoo_per_family=zoo_per_family,
                        time_budget_min=time_budget_min, seed=seed)
    with _measuring_into(out_dir) as bars:
        reports = build_profile(dev, out_dir, pplan, space=space, resume=resume,
                                config=MeasureConfig.quick() if short_timing else None, progress=bars)
    _print_reports(reports)
    err.print(f"profile written to {out_dir}")


def _vit_profile(ctx: typer.Context, dev, out_dir: Path, time_budget_min: float, n_archs: int, seed: int,
                 resume: bool, short_timing: bool) -> None:
    """``hwnas profile --space vit``: the vit space's block table and end-to-end architectures."""
    from ..measure import MeasureConfig
    from ..profile.campaign import SIZE_FIELDS
    from ..spaces.vit_profile import VitProfilePlan, build_vit_profile

    unused = _given(ctx, *(f for f in SIZE_FIELDS if f != "n_archs"), "resolutions", "width_mults", "from_profile",
                    "quick", "zoo_shots")
    if unused:
        raise InputError(f"--space vit does not use {', '.join(unused)}: drop {'it' if len(unused) == 1 else 'them'}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output path {out_dir} is a file, not a directory")
    n = n_archs if _given(ctx, "n_archs") else VitProfilePlan.n_archs
    pplan = VitProfilePlan(n_archs=n, time_budget_min=time_budget_min, seed=seed)
    with _measuring_into(out_dir) as bars:
        reports = build_vit_profile(dev, out_dir, pplan, resume=resume,
                                    config=MeasureConfig.quick() if short_timing else None, progress=bars)
    _print_reports(reports)
    err.print(f"vit-space profile written to {out_dir}")


def _print_reports(reports) -> None:
    """One line per measured part: how many, how many now, how long, stopped by the budget."""
    for r in reports:
        msg = f"{r.part:15s} {r.done_before + r.done_now:5d}/{r.planned:<5d} measured ({r.done_now} now) in {r.seconds:7.1f} s"
        if r.stopped_by_budget:
            msg += r"  \[time budget reached]"  # \[: rich markup would swallow the brackets
        err.print(msg)


@contextlib.contextmanager
def _measuring_into(out_dir: Path):
    """Progress bars for a profile being measured into ``out_dir`` (yields a ``ProgressFactory``,
    see ``hwnas.profile.campaign``); on Ctrl-C, says what is saved and exits 130."""
    from ..profile.store import ProfileStore

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


def _fewshot_profile(dev, out_dir: Path, ref: Path, n: int, zoo_shots: int | None, seed: int, resume: bool, space,
                     config) -> None:
    from ..profile.fewshot import build_fewshot_profile

    t0 = time.perf_counter()
    with _measuring_into(out_dir) as bars:
        rep = build_fewshot_profile(dev, out_dir, ref, n, seed=seed, resume=resume, zoo_shots=zoo_shots, space=space,
                                    config=config,
                                    progress=bars, log=lambda m: err.print(m))
    err.print(f"few-shot profile: {rep.done_before + rep.done_now} architectures and zoo models measured ({rep.done_now} now, "
              f"{rep.seconds:.1f} s), {time.perf_counter() - t0:.1f} s in all")
    err.print(f"profile written to {out_dir}")



@app.command()
def train(profile: Path = typer.Option(..., "--profile", help="profile directory"),
          predictor: Optional[List[str]] = typer.Option(None, "--predictor", help="train only these (repeatable)"),
          space_name: str = typer.Option("mbv3", "--space", help="search space: mbv3 (default) | vit")) -> None:
    """Fit every latency predictor on a profile and store them with it (JSON, no pickle)."""
    from ..predictors import KNOWN_PREDICTORS, train_all
    from ..spaces import check_space_name
    from .vit_cmds import profile_for

    d = profile_for(profile, check_space_name(space_name))
    if space_name == "vit":
        from .vit_cmds import vit_train

        vit_train(d, list(predictor) if predictor else None)
        return
    for name in predictor or []:
        if name not in KNOWN_PREDICTORS:
            raise InputError(f"unknown predictor {name!r}; choose from {', '.join(KNOWN_PREDICTORS)}")
    index = train_all(d, list(predictor) if predictor else None, progress=lambda msg: err.print(msg),
                      kernel_intervals=True)
    if index.get("few_shot"):
        err.print(f"saved to {d / 'predictors'}")
        return
    print_heldout(index["heldout"], "architectures")
    err.print(f"defaults: architectures -> {index['default']['arch']}, ONNX models -> {index['default']['onnx']}")
    err.print(f"saved to {d / 'predictors'}")
