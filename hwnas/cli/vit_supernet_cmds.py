"""``hwnas supernet train --space vit`` and ``hwnas accuracy --space vit``: the vit super-transformer
(:mod:`hwnas.spaces.vit_supernet_train`) behind the existing commands."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..errors import InputError
from .common import _emit_json, _progress, err, out


def vit_supernet_train(data: str, out_dir: Path, epochs: Optional[int], resume: bool, batch_size: int, seed: int,
                       threads: Optional[int], time_budget_min: Optional[float]) -> None:
    from ..spaces.vit_supernet_train import (VIT_CHECKPOINT, VitTrainConfig, check_train_target, open_vit_data,
                                             read_vit_meta, train_vit_supernet)
    from ..validate import positive_number

    budget_s = None if time_budget_min is None else 60 * positive_number(time_budget_min, "--time-budget-min", "minutes")
    if epochs is None:
        epochs = int(read_vit_meta(out_dir)["config"]["epochs"]) if resume else VitTrainConfig.epochs
    cfg = VitTrainConfig(epochs=epochs, batch_size=batch_size, seed=seed)
    check_train_target(out_dir, cfg, resume)  # bad input: one line, before the progress bar
    dataset = open_vit_data(data)
    err.print(f"data: {dataset.description or dataset.source}", highlight=False)
    with _progress() as prog:
        task = prog.add_task("vit supernet", total=None)

        def on_step(done: int, total: int, info: dict) -> None:
            prog.update(task, completed=done, total=total,
                        description=f"vit supernet epoch {info['epoch'] + 1} loss {info['loss']:.3f}")

        try:
            r = train_vit_supernet(dataset, out_dir, cfg, resume=resume, progress=on_step, time_budget_s=budget_s,
                                   threads=threads)
        except KeyboardInterrupt:
            prog.stop()
            err.print(f"interrupted: the last checkpoint in {out_dir} (saved every epoch and every minute) is kept; "
                      f"run again with --resume to continue")
            raise typer.Exit(130)
    size = (out_dir / VIT_CHECKPOINT).stat().st_size / 1e6
    msg = f"{r.epochs_done}/{r.epochs} epochs in {r.seconds:.0f} s; checkpoint {out_dir / VIT_CHECKPOINT} ({size:.0f} MB)"
    if r.history:
        h = r.history[-1]
        msg += (f"; validation top-1 largest {h['val_top1_largest_pct']:.1f}%, "
                f"smallest {h['val_top1_smallest_pct']:.1f}%")
    if r.stopped_by_budget:
        msg += " (time budget reached: --resume continues)"
    err.print(msg, highlight=False)
    if not r.stopped_by_budget:
        err.print(f"next: hwnas accuracy --space vit --supernet-dir {out_dir} ARCH...  or  "
                  f"hwnas search --space vit --accuracy-dir {out_dir} --budget-ms ...", highlight=False, soft_wrap=True)


def vit_accuracy(arch: List[str], accuracy_dir: Optional[Path], json_out: bool) -> None:
    from ..spaces import parse_arch_in
    from ..spaces.vit_supernet_train import VitSupernetEstimator

    if accuracy_dir is None:
        raise InputError("--space vit needs --supernet-dir DIR (from `hwnas supernet train --space vit`)")
    est = VitSupernetEstimator(accuracy_dir)
    archs = [parse_arch_in(a, "vit", est.loaded.net.space) for a in arch]
    if len(set(archs)) > 1:
        with _progress() as prog:
            task = prog.add_task("vit supernet", total=len(set(archs)))
            values = est.estimate(archs, progress=lambda k: prog.advance(task, k))
    else:
        values = est.estimate(archs)
    d = est.describe()
    if json_out:
        _emit_json([{"arch": str(a), "value": float(v), **d} for a, v in zip(archs, values)])
        return
    t = Table("architecture", f"{est.name} ({est.unit})")
    for a, v in zip(archs, values):
        t.add_row(str(a), f"{v:.2f}")
    out.print(t)
    err.print(f"{est.name}: {est.meaning}", highlight=False, soft_wrap=True)
