"""Accuracy estimation (hwnas.accuracy): the ``supernet`` sub-app and the accuracy command."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..errors import InputError
from ..space import DEFAULT_SPACE
from .common import _emit_json, _given, _progress, app, err, out, parse_arch


supernet_app = typer.Typer(no_args_is_help=True, help="Weight-sharing supernet and accuracy predictor.")
app.add_typer(supernet_app, name="supernet")


def _torch_threads(threads: Optional[int]) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@supernet_app.command("train")
def supernet_train(ctx: typer.Context,
                   data: str = typer.Option(..., "--data", help="ImageFolder-style directory, .npz file, "
                                            "builtin:shapes[:n=..,seed=..] (procedural proxy task) or builtin:digits"),
                   out_dir: Path = typer.Option(..., "--out", help="output directory (supernet.pt + supernet.json)"),
                   epochs: Optional[int] = typer.Option(None, "--epochs", min=1,
                                                        help="total epochs (default 20; with --resume: the checkpoint's; "
                                                             "a new total stretches the cosine schedule)"),
                   resume: bool = typer.Option(False, "--resume", help="continue the checkpoint in --out"),
                   batch_size: int = typer.Option(64, "--batch-size", min=2, help="global batch (split over processes)"),
                   seed: int = typer.Option(0, "--seed"),
                   threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                                         help="torch threads per process (default: torch's; with --nproc "
                                                              "the cores divided by N; 1 is faster on a busy machine)"),
                   time_budget_min: Optional[float] = typer.Option(None, "--time-budget-min",
                                                                   help="stop (with a checkpoint) after this many minutes"),
                   nproc: int = typer.Option(1, "--nproc",
                                             help="training processes on this machine (torch.distributed: gloo on CPU, "
                                                  "nccl with CUDA); under torchrun leave it at 1"),
                   workers: int = typer.Option(2, "--workers", min=0, help="image-reading processes per training "
                                                                          "process for a streamed ImageFolder"),
                   stream: Optional[bool] = typer.Option(None, "--stream/--in-memory",
                                                         help="stream an ImageFolder from disk / load it in memory "
                                                              "(default: stream above --memory-limit-mb)"),
                   memory_limit_mb: float = typer.Option(2048.0, "--memory-limit-mb",
                                                         help="decoded ImageFolder size per process above which it is streamed"),
                   backend: str = typer.Option("auto", "--backend", help="auto (nccl with CUDA, else gloo), gloo or nccl"),
                   space_name: str = typer.Option("mbv3", "--space",
                                                  help="search space: mbv3 (default, OFA supernet) | vit "
                                                       "(super-transformer, one process, in memory)")) -> None:
    """Train a weight-sharing supernet (sandwich rule) on a dataset; resumable; on N processes or under torchrun."""
    from ..spaces import check_space_name

    if check_space_name(space_name) == "vit":
        from .vit_supernet_cmds import vit_supernet_train

        unused = _given(ctx, "nproc", "workers", "stream", "memory_limit_mb", "backend")
        if unused:
            raise InputError(f"--space vit trains in one process on an in-memory dataset: drop {', '.join(unused)}")
        vit_supernet_train(data, out_dir, epochs, resume, batch_size, seed, threads, time_budget_min)
        return
    from ..accuracy.streaming import open_dataset
    from ..accuracy.supernet import CHECKPOINT, TrainConfig, train_supernet
    from ..accuracy.supernet.distributed import DistEnv
    from ..accuracy.supernet.launch import check_nproc, run_rank, start_local, TrainJob

    from ..validate import positive_number

    budget_s = None if time_budget_min is None else 60 * positive_number(time_budget_min, "--time-budget-min", "minutes")
    env = DistEnv.from_env()
    if env is not None and nproc != 1:
        raise InputError(f"--nproc {nproc} under torchrun: torchrun starts the processes (its --nproc-per-node); "
                         f"leave --nproc at 1")
    check_nproc(nproc, backend)
    main = env is None or env.rank == 0
    if epochs is None:
        epochs = TrainConfig.epochs
        if resume and main:
            from ..accuracy.supernet import read_meta

            epochs = int(read_meta(out_dir)["config"]["epochs"])  # other ranks take rank 0's settings
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed)
    if env is None and nproc == 1:
        dataset = open_dataset(data, memory_limit_mb, stream)
        err.print(f"data: {dataset.description}")
    elif main:
        err.print(f"data: {data} (opened by each of {env.world_size if env else nproc} processes)")
    with _progress() if main else contextlib.nullcontext() as prog:  # other torchrun ranks draw no bar
        task = prog.add_task("supernet", total=None) if main else None

        def on_step(done: int, total: int, info: dict) -> None:
            prog.update(task, completed=done, total=total,
                        description=f"supernet epoch {info['epoch'] + 1} loss {info['loss']:.3f}")

        try:
            if env is not None:
                job = TrainJob(data, str(out_dir), cfg.to_dict(), DEFAULT_SPACE.to_dict(), resume, budget_s, threads,
                               workers, backend, stream, memory_limit_mb)
                r = run_rank(job, env, on_step if main else None)
            elif nproc > 1:
                r = start_local(data, out_dir, cfg, nproc, resume=resume, time_budget_s=budget_s, threads=threads,
                                workers=workers, backend=backend, stream=stream,
                                memory_limit_mb=memory_limit_mb).wait(on_step)
            else:
                r = train_supernet(dataset, out_dir, cfg, resume=resume, progress=on_step, time_budget_s=budget_s,
                                   threads=threads, workers=workers)
        except KeyboardInterrupt:
            if main:
                prog.stop()
            err.print(f"interrupted: the last checkpoint in {out_dir} (saved every epoch and every minute) is kept; "
                      f"run again with --resume to continue")
            raise typer.Exit(130)
    if not main:
        return
    size = (out_dir / CHECKPOINT).stat().st_size / 1e6
    msg = f"{r.epochs_done}/{r.epochs} epochs in {r.seconds:.0f} s; checkpoint {out_dir / CHECKPOINT} ({size:.0f} MB)"
    if r.stopped_by_budget:
        msg += r" \[time budget reached: --resume continues]"  # \[: rich markup would swallow the brackets
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
    from ..accuracy.predictor import PREDICTOR_FILE, fit_predictor, read_pairs_csv, supernet_pairs

    _torch_threads(threads)
    if acc_dir.exists() and not acc_dir.is_dir():
        raise InputError(f"--dir {acc_dir} is a file, not a directory")
    if csv_path is not None:
        archs, acc = read_pairs_csv(csv_path)
        source = f"pairs from {csv_path}"
        target = "accuracy (as in the CSV)"
    else:
        from ..accuracy.supernet import load_supernet

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
                                               help="predictor, supernet, hypernet, naswot, params or macs"),
                 accuracy_dir: Optional[Path] = typer.Option(None, "--accuracy-dir", "--supernet-dir",
                                                             help="trained supernet/predictor (default: profiles/accuracy)"),
                 hypernet_dir: Optional[Path] = typer.Option(None, "--hypernet-dir",
                                                             help="trained hypernetwork (`hwnas hypernet train`) for "
                                                                  "--estimator hypernet"),
                 json_out: bool = typer.Option(False, "--json"),
                 space_name: str = typer.Option("mbv3", "--space",
                                                help="search space: mbv3 (default) | vit (needs --supernet-dir)")) -> None:
    """Estimate the accuracy of architectures (higher is better; the meaning is printed)."""
    from ..accuracy import make_estimator
    from ..spaces import check_space_name

    if check_space_name(space_name) == "vit":
        from .vit_supernet_cmds import vit_accuracy

        if estimator not in ("predictor", "supernet"):
            raise InputError(f"--space vit has one estimator (the vit supernet), not {estimator!r}")
        if hypernet_dir is not None:
            raise InputError("--hypernet-dir is for the mbv3 space's hypernetwork; --space vit has none")
        vit_accuracy(arch, accuracy_dir, json_out)
        return

    archs = [parse_arch(a) for a in arch]
    if hypernet_dir is not None and estimator != "hypernet":
        raise InputError(f"--hypernet-dir is for --estimator hypernet, not {estimator!r}")
    if estimator == "hypernet":
        if hypernet_dir is None and accuracy_dir is None:
            raise InputError("--estimator hypernet needs --hypernet-dir DIR (from `hwnas hypernet train`)")
        est = make_estimator(estimator, hypernet_dir if hypernet_dir is not None else accuracy_dir)
    else:
        est = make_estimator(estimator, accuracy_dir)
    if estimator in ("supernet", "hypernet", "naswot") and len(archs) > 1:
        with _progress() as prog:
            task = prog.add_task(estimator, total=len(set(map(str, archs))))
            values = est.estimate(archs, progress=lambda k: prog.advance(task, k))
    else:
        values = est.estimate(archs)
    d = est.describe()
    ci = [est.interval(a) for a in archs] if hasattr(est, "interval") else None
    if json_out:
        rows = [{"arch": str(a), "value": float(v), **d} for a, v in zip(archs, values)]
        if ci is not None:
            for r, (lo, hi) in zip(rows, ci):
                r.update({"ci95_low": lo, "ci95_high": hi})
        _emit_json(rows)
        return
    t = Table("architecture", f"{est.name} ({est.unit})", *(["bootstrap 95%"] if ci is not None else []))
    for i, (a, v) in enumerate(zip(archs, values)):
        cell = f"{v:.6g}" if abs(v) >= 1e4 else f"{v:.2f}"
        t.add_row(str(a), cell, *([f"{ci[i][0]:.2f}-{ci[i][1]:.2f}"] if ci is not None else []))
    out.print(t)
    err.print(f"{est.name}: {est.meaning}", highlight=False, soft_wrap=True)


def extract_winner(arch_text: str, acc_dir: Path, out_dir: Path, finetune_epochs: int = 0,
                   measure_device: Optional[str] = None) -> dict:
    """Extract ``arch_text`` from the supernet in ``acc_dir`` into ``out_dir`` (with a progress bar
    when fine-tuning), print its validation accuracy and, with ``measure_device``, its latency
    measured there; returns the result as a dict (``supernet extract`` and ``search --extract``)."""
    from ..accuracy.supernet.extract import MODEL_ONNX, extract_model, result_dict
    from ..space import Arch

    try:
        arch = Arch.parse(arch_text)
    except ValueError as e:
        raise InputError(f"bad architecture {arch_text!r}: {e}") from None
    if finetune_epochs == 0:  # seconds: no progress bar (it would print an empty line)
        r = extract_model(acc_dir, arch, out_dir)
    else:
        with _progress() as prog:
            task = prog.add_task(f"fine-tune {finetune_epochs} epoch(s)", total=None)
            try:
                r = extract_model(acc_dir, arch, out_dir, finetune_epochs,
                                  progress=lambda done, total: prog.update(task, completed=done, total=total))
            except KeyboardInterrupt:
                prog.stop()
                err.print(f"interrupted: the fine-tuned model was not written to {out_dir}")
                raise typer.Exit(130)
    res = result_dict(r)
    split = f"validation split, {r.val_images} images, {r.input_hw[0]}x{r.input_hw[1]} px"
    err.print(f"{arch}: top-1 {r.inherited_accuracy_pct:.2f}% with inherited weights ({split})", highlight=False)
    if r.finetuned_accuracy_pct is not None:
        err.print(f"after {finetune_epochs} fine-tuning epoch(s) ({r.finetune_seconds:.0f} s): top-1 "
                  f"{r.finetuned_accuracy_pct:.2f}%", highlight=False)
    err.print(f"ONNX logits within {r.onnx_max_abs_diff:.1e} of torch; wrote {', '.join(r.files)}", highlight=False)
    if measure_device is not None:
        from ..devices import load_device
        from ..measure import Measurer
        from ..onnx_io import load_onnx

        dev = load_device(measure_device)
        shape = [dev.batch_size, 3, arch.resolution, arch.resolution]
        model = load_onnx(Path(out_dir) / MODEL_ONNX, {"images": shape}).model
        with Measurer(dev) as m:
            meas = m.measure(model, str(arch))
        res["measured"] = meas.to_dict() | {"device": dev.name, "input_shape": shape}
        err.print(f"measured on {dev.name} at {arch.resolution}x{arch.resolution}, batch {dev.batch_size}: "
                  f"{meas.latency_ms:.3f} ms (p10-p90 {meas.stats.p10_ms:.3f}-{meas.stats.p90_ms:.3f})", highlight=False)
    return res


@supernet_app.command("extract")
def supernet_extract(arch: str = typer.Argument(..., help="architecture string (in the supernet's space)"),
                     acc_dir: Path = typer.Option(..., "--dir", help="supernet directory (from `supernet train`)"),
                     out_dir: Path = typer.Option(..., "--out", help="output directory: model.pt, model.json, model.onnx"),
                     finetune_epochs: int = typer.Option(0, "--finetune-epochs", min=0,
                                                         help="epochs of fine-tuning after inheriting the weights"),
                     measure: bool = typer.Option(False, "--measure", help="measure the ONNX graph's latency on --device"),
                     device: str = typer.Option("cpu-1t", "--device", help="device for --measure (devices/*.toml)"),
                     threads: Optional[int] = typer.Option(None, "--threads", min=1),
                     json_out: bool = typer.Option(False, "--json")) -> None:
    """The subnet with inherited weights (batch norm recalibrated), optionally fine-tuned, as a
    weights-only torch file with metadata and an ONNX graph; prints its validation accuracy."""
    _torch_threads(threads)
    res = extract_winner(arch, acc_dir, out_dir, finetune_epochs, device if measure else None)
    if json_out:
        _emit_json(res)
