"""Commands that use a profile's latency predictors: predict and evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..errors import InputError
from .common import (_CALIBRATE_HELP, _emit_json, _looks_like_onnx, _on_this_machine, _parse_shapes, _profile_dir, app,
                     err, out, parse_arch, print_kernel_tables)


@app.command()
def predict(targets: List[str] = typer.Argument(..., help="architecture strings or .onnx paths"),
            profile: Optional[Path] = typer.Option(None, "--profile", help="profile directory (default: bundled)"),
            predictor: Optional[str] = typer.Option(None, "--predictor", help="predictor name (default per target type)"),
            input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help="NAME=1,3,224,224"),
            breakdown: bool = typer.Option(False, "--breakdown", help="per-kernel predictions (kernel predictor)"),
            calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help=_CALIBRATE_HELP),
            calibration_shots: int = typer.Option(30, "--calibration-shots", help="architectures a calibration measures"),
            json_out: bool = typer.Option(False, "--json"),
            space_name: str = typer.Option("mbv3", "--space", help="search space: mbv3 (default) | vit")) -> None:
    """Predict latency (ms on the profile's device, and canary-relative) for architectures or ONNX models."""
    from ..predictors import KNOWN_PREDICTORS, load_predictor
    from ..predictors.base import TargetSpec
    from ..profile import warn_if_other_machine
    from .vit_cmds import check_space_if_profile, check_targets_space, profile_for

    check_targets_space(targets, space_name)
    if space_name == "vit":
        from .vit_cmds import vit_predict

        if breakdown or input_shape:
            raise InputError("--space vit predicts architecture strings only: drop --breakdown / --input-shape")
        vit_predict(targets, profile_for(profile, "vit"), predictor, json_out)
        return
    if profile is not None:
        check_space_if_profile(profile, "mbv3")
    if predictor is not None and predictor not in KNOWN_PREDICTORS:
        raise InputError(f"unknown predictor {predictor!r}; choose from {', '.join(KNOWN_PREDICTORS)}")
    shapes = _parse_shapes(input_shape)
    specs = []
    for t in targets:
        if _looks_like_onnx(t):
            from ..onnx_io import check_path, load_onnx

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
    print_kernel_tables(results, "kernels")


@app.command()
def evaluate(profile: Optional[Path] = typer.Option(None, "--profile", help="profile directory (default: bundled)"),
             families: bool = typer.Option(True, "--families/--no-families", help="also hold out zoo families"),
             full_profile: Optional[Path] = typer.Option(
                 None, "--full-profile", help="few-shot profiles: judge on this full profile of the same device "
                 "(default: a sibling profile of the same device, if any)"),
             json_out: bool = typer.Option(False, "--json"),
             space_name: str = typer.Option("mbv3", "--space", help="search space: mbv3 (default) | vit")) -> None:
    """Held-out accuracy of every predictor, next to the measurement noise floor.

    On a few-shot profile: its transfer predictor judged on a full profile of the same device."""
    from ..predictors import PREDICTORS
    from ..predictors.evaluate import evaluate_families, evaluate_in_space
    from ..profile import Profile
    from ..spaces import check_space_name
    from .vit_cmds import profile_for

    d = profile_for(profile, check_space_name(space_name))
    if space_name == "vit":
        from .vit_cmds import vit_evaluate

        vit_evaluate(d, json_out)
        return
    prof = Profile.load(d)
    if prof.meta.get("few_shot"):
        _evaluate_fewshot(prof, full_profile, json_out)
        return
    if full_profile is not None:
        raise InputError(f"--full-profile is for few-shot profiles; {d} is a full profile")
    from ..predictors.base import require_archs

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
    from ..paths import profiles_dir
    from ..predictors.evaluate import evaluate_fewshot, find_full_profile, full_profile_mismatch
    from ..profile import Profile

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
