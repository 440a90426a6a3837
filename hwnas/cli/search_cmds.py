"""The search command."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..errors import InputError
from .common import _CALIBRATE_HELP, _emit_json, _given, _on_this_machine, _profile_dir, _progress, app, err, out


@app.command()
def search(ctx: typer.Context,
           budget_ms: List[str] = typer.Option(..., "--budget-ms", help="latency budget in ms (one per --profile)"),
           profile: Optional[List[Path]] = typer.Option(None, "--profile", help="profile directory (repeatable; default: bundled)"),
           strategy: str = typer.Option("evolution", "--strategy", help="evolution | random | grid | nsga2 | rl | gradient | morph"),
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
           morph_rounds: int = typer.Option(8, "--morph-rounds", min=1, help="morph: hill-climbing rounds"),
           morph_children: int = typer.Option(4, "--morph-children", min=1, help="morph: children fine-tuned per round"),
           morph_steps: int = typer.Option(100, "--morph-steps", min=1, help="morph: fine-tune steps per child"),
           morph_rule: str = typer.Option("nash", "--morph-rule", help="morph: nash (the best child always becomes "
                                          "the parent) | improve (only when at least as accurate, else stop)"),
           morphs_per_child: int = typer.Option(8, "--morphs-per-child", min=1,
                                                help="morph: a child is 1..N morphisms of its parent (N drawn per child)"),
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
           extract: Optional[Path] = typer.Option(None, "--extract", help="save the winner with inherited supernet "
                                                  "weights (--accuracy-dir) here: model.pt, model.json, model.onnx"),
           out_dir: Optional[Path] = typer.Option(None, "--out", help="save every candidate (CSV) and plots (PNG)"),
           space_name: str = typer.Option("mbv3", "--space", help="search space: mbv3 (default) | vit")) -> None:
    """Search the space for the most accurate architecture within a latency budget."""
    import math

    from ..search import STRATEGIES, SearchConfig, run_search
    from ..search import verify as verify_results
    from ..spaces import check_space_name
    from .vit_cmds import check_space_if_profile, profile_for

    if check_space_name(space_name) == "vit":
        from .vit_cmds import vit_search

        keep = {"budget_ms", "profile", "strategy", "predictor", "population", "generations", "seed", "json_out",
                "n_samples", "space_name", "accuracy_dir"}
        unused = _given(ctx, *[p.name for p in ctx.command.params if p.name not in keep])
        if unused:
            raise InputError(f"--space vit does not use {', '.join(unused)}: drop {'it' if len(unused) == 1 else 'them'}")
        if profile and len(profile) > 1:
            raise InputError("--space vit searches one --profile at a time")
        vbudgets = []
        for b in budget_ms:
            try:
                vbudgets.append(float(b))
            except ValueError:
                raise InputError(f"--budget-ms must be a number of ms, got {b!r}") from None
        vit_search(vbudgets, profile_for(profile[0] if profile else None, "vit"), strategy, predictor,
                   population, generations, n_samples, seed, json_out, accuracy_dir)
        return
    for p in profile or []:
        check_space_if_profile(p, "mbv3")

    unused = _given(ctx, *getattr(STRATEGIES.get(strategy), "unused_options", ()))
    if unused:
        raise InputError(f"--strategy {strategy} does not use {', '.join(unused)}: "
                         f"drop {'it' if len(unused) == 1 else 'them'}")
    if strategy == "morph":  # before any calibration on this machine
        from ..search.morph import check_rule

        check_rule(morph_rule)

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
        from ..report import prepare_out_dir

        prepare_out_dir(out_dir)  # a bad --out fails before the search, not after it
    if extract is not None:  # no supernet: fail before the search, not after it
        from ..accuracy import default_accuracy_dir
        from ..accuracy.supernet import read_meta

        read_meta(accuracy_dir or default_accuracy_dir())
    if accuracy is None:
        accuracy = "supernet" if strategy == "gradient" else "predictor"
    dirs = [_on_this_machine(p, calibrate, calibration_shots) for p in (profile or [_profile_dir(None)])]
    cfg = SearchConfig(budgets_ms=tuple(budgets), profiles=tuple(str(p) for p in dirs), strategy=strategy,
                       accuracy=accuracy, accuracy_dir=str(accuracy_dir) if accuracy_dir is not None else None,
                       latency_predictor=predictor, n_samples=n_samples, rl_reward=rl_reward,
                       rl_controller=rl_controller, resolution=resolution, width_mult=width_mult,
                       gradient_steps=gradient_steps, morph_rounds=morph_rounds, morph_children=morph_children,
                       morph_steps=morph_steps, morph_rule=morph_rule, morphs_per_child=morphs_per_child,
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
            from ..search.measured import measure_in_loop

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
                  f"{r.winner_predicted_ms:.3f} ms)"
                  + (f"; the predictor measured {100 * (r.bias_correction - 1):+.1f}% off here, so the search continued "
                     f"under {r.continued_budget_ms:.3f} ms predicted" if r.rounds == 2 else ""), soft_wrap=True)
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
        from ..search.output import save_outputs

        try:
            for path in save_outputs(result, out_dir):
                err.print(f"wrote {path}")
        except OSError as e:
            raise InputError(f"could not write the search's files to {out_dir}: {e.strerror or e}"
                             f"{f' ({e.filename})' if e.filename else ''}; the result above is complete") from None
    if extract is not None:
        from ..accuracy import default_accuracy_dir
        from .supernet_cmds import extract_winner

        extract_winner(result.top[0][0].arch, accuracy_dir or default_accuracy_dir(), extract)
