"""The ``hypernet`` sub-app: train a graph hypernetwork (hwnas.accuracy.hypernet); its
accuracies are read with ``hwnas accuracy --estimator hypernet --hypernet-dir DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import _progress, app, err

hypernet_app = typer.Typer(no_args_is_help=True, help="Graph hypernetwork: generated weights for any architecture.")
app.add_typer(hypernet_app, name="hypernet")


@hypernet_app.command("train")
def hypernet_train(data: str = typer.Option(..., "--data", help=".npz file, ImageFolder directory (in memory), "
                                            "builtin:shapes[:n=..,seed=..] or builtin:digits"),
                   out_dir: Path = typer.Option(..., "--out", help="output directory (hypernet.pt + hypernet.json)"),
                   steps: Optional[int] = typer.Option(None, "--steps", min=1,
                                                       help="total optimizer steps (default 2000; with --resume: the "
                                                            "checkpoint's; a new total stretches the cosine schedule)"),
                   epochs: Optional[float] = typer.Option(None, "--epochs", min=0.01,
                                                          help="total steps as passes over the training split "
                                                               "(instead of --steps)"),
                   resume: bool = typer.Option(False, "--resume", help="continue the checkpoint in --out"),
                   max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1,
                                                           help="stop (with a checkpoint) after this many steps of "
                                                                "this run; --resume continues"),
                   batch_size: Optional[int] = typer.Option(None, "--batch-size", min=2,
                                                            help="images per step (default 64; with --resume: the "
                                                                 "checkpoint's)"),
                   archs_per_step: Optional[int] = typer.Option(None, "--archs-per-step", min=1,
                                                                help="architectures sampled per step, the meta-batch "
                                                                     "(default 2; with --resume: the checkpoint's)"),
                   hidden: Optional[int] = typer.Option(None, "--hidden", min=2,
                                                        help="embedding / GRU state width, even (default 32; with "
                                                             "--resume: the checkpoint's)"),
                   seed: Optional[int] = typer.Option(None, "--seed", help="default 0; with --resume: the checkpoint's"),
                   threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                                         help="torch threads (1 is faster on a busy machine)"),
                   time_budget_min: Optional[float] = typer.Option(None, "--time-budget-min",
                                                                   help="stop (with a checkpoint) after this many minutes")) -> None:
    """Train a graph hypernetwork on architectures sampled from the space; resumable (Ctrl-C, then --resume)."""
    from ..accuracy.hypernet import CHECKPOINT, HyperTrainConfig, read_meta, train_hypernet
    from ..accuracy.streaming import open_dataset
    from ..errors import InputError
    from ..validate import positive_number

    if steps is not None and epochs is not None:
        raise InputError("give --steps or --epochs, not both")
    budget_s = None if time_budget_min is None else 60 * positive_number(time_budget_min, "--time-budget-min", "minutes")
    old = None
    if resume:
        old = read_meta(out_dir)  # a missing or corrupt directory fails here, before the data is read
    dataset = open_dataset(data, stream=False)
    err.print(f"data: {dataset.description}")
    given = {"batch_size": batch_size, "archs_per_step": archs_per_step, "hidden": hidden, "seed": seed}
    base = HyperTrainConfig.from_dict(old["config"]) if old is not None and isinstance(old.get("config"), dict) \
        else HyperTrainConfig()
    cfg = HyperTrainConfig.from_dict({**base.to_dict(), **{k: v for k, v in given.items() if v is not None}})
    if old is None:
        cfg = cfg.resolved(dataset)
    if epochs is not None:
        n_train = len(dataset.split(cfg.val_fraction, cfg.seed)[0])
        steps = max(1, round(epochs * max(1, n_train // cfg.batch_size)))
    if steps is None:
        steps = base.steps
    cfg = HyperTrainConfig.from_dict({**cfg.to_dict(), "steps": steps})
    bar: dict = {}  # the progress bar starts with the first step, after the checks (an error stays one line)

    def on_step(done: int, total: int, info: dict) -> None:
        if not bar:
            bar["prog"] = _progress()
            bar["prog"].start()
            bar["task"] = bar["prog"].add_task("hypernet", total=total)
        bar["prog"].update(bar["task"], completed=done, total=total, description=f"hypernet loss {info['loss']:.3f}")

    try:
        r = train_hypernet(dataset, out_dir, cfg, resume=resume, max_steps=max_steps, time_budget_s=budget_s,
                           progress=on_step, threads=threads)
    except KeyboardInterrupt:
        if bar:
            bar["prog"].stop()
        err.print(f"interrupted: the last checkpoint in {out_dir} (saved every minute) is kept; "
                  f"run again with --resume to continue")
        raise typer.Exit(130)
    finally:
        if bar:
            bar["prog"].stop()
    size = (out_dir / CHECKPOINT).stat().st_size / 1e6
    msg = f"{r.steps_done}/{r.steps} steps in {r.seconds:.0f} s; checkpoint {out_dir / CHECKPOINT} ({size:.0f} MB)"
    if r.stopped_early:
        msg += " (stopped early: --resume continues)"
    err.print(msg, highlight=False)
    if not r.stopped_early:
        err.print(f"next: hwnas accuracy --estimator hypernet --hypernet-dir {out_dir} ARCH...")
