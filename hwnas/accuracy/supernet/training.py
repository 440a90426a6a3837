"""Training: the settings (:class:`TrainConfig`), the learning-rate schedule and epoch
batches, the sandwich rule's step (:func:`sandwich_step`), the one training loop
(:func:`run_epochs`, shared with :func:`~hwnas.accuracy.supernet.standalone.train_standalone`)
and :func:`train_supernet`, which runs it on a supernet with checkpoints, resume and a time
budget.

Training follows the sandwich rule: each step accumulates the gradients of the largest, the
smallest and ``n_random`` uniformly sampled subnets (the smaller ones distilled from the
largest one's soft predictions when ``distill``) before one optimizer step.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from ...space import DEFAULT_SPACE, Arch, SearchSpace
from ..data import ImageDataset
from ..streaming import open_dataset
from .batches import Batches, _step_shifts
from .checkpoint import (_check_compatible, _check_state_shapes, _load_blob, _meta_doc, _save_checkpoint,
                         checkpoint_paths, read_meta)
from .distributed import RankContext, guarded, torch_threads
from .feed import Feed
from .network import Supernet


@dataclass
class TrainConfig:
    """Supernet (and standalone) training settings; saved in the checkpoint metadata."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-5
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    n_random: int = 2
    distill: bool = True
    augment_shift: float = 0.125
    val_fraction: float | None = None
    seed: int = 0
    kernel_mode: str = "transform"
    calib_batches: int = 6
    calib_batch_size: int = 100
    checkpoint_every_s: float = 60.0

    def to_dict(self) -> dict:
        return asdict(self)

    def resolved(self, data: ImageDataset) -> "TrainConfig":
        """A copy with ``val_fraction`` settled: ``None`` means half the images for datasets
        under 5,000 images (a small validation set cannot tell subnets apart: on the 1,797
        digits, 20% = 360 images gave a split-half reliability of only 0.5), else 20%."""
        if self.val_fraction is not None:
            return self
        return TrainConfig.from_dict({**self.to_dict(), "val_fraction": 0.5 if data.n < 5000 else 0.2})

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    # settings that must agree for a resume to continue the same run
    RESUME_KEYS = ("batch_size", "lr", "momentum", "weight_decay", "warmup_epochs", "label_smoothing",
                   "n_random", "distill", "augment_shift", "val_fraction", "seed", "kernel_mode")


@dataclass
class TrainResult:
    out_dir: Path
    epochs_done: int
    epochs: int
    step_in_epoch: int
    seconds: float
    stopped_by_budget: bool
    history: list = field(default_factory=list)


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or ".bn." in name or "ktrans" in name or name.endswith("bias") else decay).append(p)
    return torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


def _lr_at(cfg: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, t)))


def _epoch_batches(n_train: int, cfg: TrainConfig, epoch: int) -> list[np.ndarray]:
    perm = np.random.default_rng([cfg.seed, 1, epoch]).permutation(n_train)
    nb = n_train // cfg.batch_size  # drop the ragged last batch (keeps BN batch statistics sane)
    if nb == 0:
        return [perm]
    return [perm[i * cfg.batch_size:(i + 1) * cfg.batch_size] for i in range(nb)]


def _sandwich(space: SearchSpace, rng: np.random.Generator, n_random: int) -> list[Arch]:
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n_random)]


def _kd_loss(logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return -(F.softmax(teacher, 1) * F.log_softmax(logits, 1)).sum(1).mean()


def sandwich_step(net: Supernet, opt: torch.optim.Optimizer, batches: Batches, x: torch.Tensor, y: torch.Tensor,
                  rng: np.random.Generator, cfg: TrainConfig,
                  sync: Callable[[list[Arch], float], float] | None = None) -> float:
    """One optimizer step of the sandwich rule on the batch ``(x, y)`` (``x`` at the dataset's
    size): the gradients of the largest, the smallest and ``cfg.n_random`` subnets drawn from
    ``rng`` are accumulated, then ``opt`` steps (at its current learning rate).  Returns the
    largest subnet's loss.  ``sync(archs, loss)``, if given, runs before the optimizer step
    (distributed training: it sums the ranks' gradients and returns the global loss)."""
    opt.zero_grad(set_to_none=True)
    teacher = None
    largest_loss = 0.0
    archs = _sandwich(net.space, rng, cfg.n_random)
    for k, arch in enumerate(archs):
        logits = net(batches.resize(x, batches.size_of(arch)), arch)
        if k == 0 or not cfg.distill:
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            if k == 0:
                teacher = logits.detach()
                largest_loss = float(loss.detach())
        else:
            loss = _kd_loss(logits, teacher)
        loss.backward()
    if sync is not None:
        largest_loss = sync(archs, largest_loss)
    opt.step()
    return largest_loss


@dataclass
class LoopEnd:
    """Where :func:`run_epochs` stopped: the next (epoch, step in epoch) to run, whether the
    time budget stopped it, and its wall seconds."""

    epoch: int
    step: int
    stopped: bool
    seconds: float


def run_epochs(data: ImageDataset, train_idx: np.ndarray, batches: Batches, cfg: TrainConfig,
               opt: torch.optim.Optimizer, step: Callable[[torch.Tensor, torch.Tensor, np.random.Generator], float],
               start: tuple[int, int] = (0, 0), history: list | None = None,
               on_epoch_start: Callable[[], None] | None = None,
               save: Callable[[int, int, float], None] | None = None,
               time_budget_s: float | None = None,
               progress: Callable[[int, int, dict], None] | None = None,
               feed: Feed | None = None, any_rank: Callable[[bool], bool] | None = None) -> LoopEnd:
    """The training loop: ``cfg.epochs`` epochs of :func:`_epoch_batches` from ``start``
    (epoch, step in epoch).  Each step draws its augmentation shifts (and whatever else
    ``step`` draws) from ``default_rng([seed, 2, epoch, step])``, sets ``opt``'s learning rate
    by the schedule, and calls ``step(x, y, rng)`` with ``x`` at the dataset's size; ``step``
    returns the step's loss.  ``on_epoch_start()`` runs before an epoch's first step; each
    finished epoch's mean loss is appended to ``history``.  With ``save``, ``save(epoch, step,
    seconds)`` checkpoints after every epoch, every ``cfg.checkpoint_every_s`` and when
    ``time_budget_s`` stops the loop at a step boundary.  ``progress(done, total, info)`` is
    called after every step.  With ``feed`` (:class:`~.feed.Feed`), ``x`` and ``y`` are its
    part of each batch (a rank's shard, or streamed); ``any_rank(flag)`` makes the time-budget
    stop a decision of all ranks (true if any rank's budget has run out)."""
    steps_per_epoch = len(_epoch_batches(len(train_idx), cfg, 0))
    total = cfg.epochs * steps_per_epoch
    history = [] if history is None else history
    t0 = time.perf_counter()
    last_ckpt = t0
    stopped = False
    epoch, step_in_epoch = start
    done_steps = epoch * steps_per_epoch + step_in_epoch
    while epoch < cfg.epochs and not stopped:
        ebatches = _epoch_batches(len(train_idx), cfg, epoch)
        if step_in_epoch == 0 and on_epoch_start is not None:
            on_epoch_start()
        if feed is not None:
            feed.start_epoch([train_idx[b] for b in ebatches], step_in_epoch)
        loss_sum, n_sum, ep_t0 = 0.0, 0, time.perf_counter()
        bi = step_in_epoch
        while bi < len(ebatches):
            rng = np.random.default_rng([cfg.seed, 2, epoch, bi])
            idx = train_idx[ebatches[bi]]
            shifts = _step_shifts(rng, len(idx), data.hw, cfg.augment_shift)
            if feed is None:
                x, y = batches.tensor(idx, shifts), torch.from_numpy(data.labels[idx])
            else:
                x, y = feed.next(idx, shifts)
            lr = _lr_at(cfg, epoch * steps_per_epoch + bi, total, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            loss_sum += step(x, y, rng) * len(y)
            n_sum += len(y)
            bi += 1
            done_steps += 1
            if progress is not None:
                progress(done_steps, total, {"epoch": epoch, "loss": loss_sum / max(1, n_sum), "lr": lr})
            now = time.perf_counter()
            if time_budget_s is not None and done_steps < total:
                out_of_time = now - t0 >= time_budget_s
                if any_rank(out_of_time) if any_rank is not None else out_of_time:
                    stopped = True
                    break
            if save is not None and now - last_ckpt >= cfg.checkpoint_every_s and bi < len(ebatches):
                save(epoch, bi, now - t0)
                last_ckpt = time.perf_counter()
        if bi == len(ebatches):
            history.append({"epoch": epoch + 1, "train_loss_largest": loss_sum / max(1, n_sum),
                            "seconds": time.perf_counter() - ep_t0})
            epoch, step_in_epoch = epoch + 1, 0
        else:
            step_in_epoch = bi
        if save is not None:
            save(epoch, step_in_epoch, time.perf_counter() - t0)
            last_ckpt = time.perf_counter()
    return LoopEnd(epoch, step_in_epoch, stopped, time.perf_counter() - t0)


def train_supernet(data: ImageDataset | str, out_dir: str | os.PathLike, cfg: TrainConfig | None = None,
                   space: SearchSpace = DEFAULT_SPACE, resume: bool = False,
                   time_budget_s: float | None = None,
                   progress: Callable[[int, int, dict], None] | None = None,
                   threads: int | None = None, workers: int = 2,
                   rank: RankContext | None = None) -> TrainResult:
    """Train (or with ``resume`` continue) a supernet on ``data`` into ``out_dir``.

    ``data`` is a dataset or a ``--data`` spec (opened with
    :func:`~hwnas.accuracy.streaming.open_dataset`: a large ImageFolder is streamed, read by
    ``workers`` processes); the spec is recorded so estimators can find the data again.
    Stops after ``cfg.epochs`` epochs, or at a step boundary once ``time_budget_s`` has passed
    (a checkpoint is saved; ``resume`` continues).  ``progress(step_done, total_steps, info)``
    is called after every step.  ``threads`` sets torch's thread count for the call (restored
    after).  ``rank``: one rank of a distributed run (:mod:`.launch` starts them): it trains
    its shard of every batch, rank 0 alone writes checkpoints.
    """
    with torch_threads(threads):
        return _train_supernet(data, Path(out_dir), cfg or TrainConfig(), space, resume, time_budget_s, progress,
                               workers, rank)


def _train_supernet(data, out: Path, cfg: TrainConfig, space: SearchSpace, resume: bool, time_budget_s, progress,
                    workers: int, rank: RankContext | None) -> TrainResult:
    main = rank is None or rank.is_main
    device = torch.device("cpu") if rank is None else rank.device
    ckpt, meta_path = checkpoint_paths(out)
    error, payload = None, None
    try:  # local checks; in a distributed run, the ranks then agree (any failure stops all)
        if time_budget_s is not None:
            from ...validate import positive_number

            positive_number(time_budget_s, "time budget", "seconds", allow_zero=True)  # 0: stop after one step
        if isinstance(data, (str, os.PathLike)):
            data = open_dataset(data)
        cfg = cfg.resolved(data)
        if cfg.epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {cfg.epochs}")
        if rank is not None and cfg.batch_size < 2 * rank.world:
            raise InputError(f"batch size {cfg.batch_size} is too small for {rank.world} processes "
                             f"(each needs at least 2 images per step)")
        if main:
            if out.exists() and not out.is_dir():
                raise InputError(f"output path {out} is a file, not a directory")
            if resume:
                payload = _checkpoint_bytes(out)
            elif ckpt.exists() or meta_path.exists():
                raise InputError(f"{out} already holds a supernet; add --resume to continue it or choose another --out")
    except InputError as e:
        error = e
    _raise_agreed(rank, error)
    if rank is not None:
        # every rank trains rank 0's settings (e.g. the epochs it read from the checkpoint)
        cfg = TrainConfig.from_dict(json.loads(rank.broadcast_bytes(json.dumps(cfg.to_dict()).encode())))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        # channels-last: oneDNN's fast path on CPU (same numbers, ~20% faster training here)
        net = Supernet(space, data.n_classes, cfg.kernel_mode).to(device=device, memory_format=torch.channels_last)
    opt = _make_optimizer(net, cfg)
    train_idx, val_idx = data.split(cfg.val_fraction, cfg.seed)
    mean, std = data.channel_stats(train_idx)
    start_epoch, start_step, history, seconds_before = 0, 0, [], 0.0
    if resume:
        if rank is not None:
            payload = rank.broadcast_bytes(payload)
        error = None
        try:
            meta, blob = _parse_checkpoint(payload, ckpt)
            _check_resume(meta, blob, net, data, cfg, ckpt, meta_path)
        except InputError as e:
            error = e
        _raise_agreed(rank, error)
        net.load_state_dict(blob["model"])
        try:
            opt.load_state_dict(blob["optimizer"])
        except (ValueError, KeyError) as e:
            raise InputError(f"checkpoint {ckpt}: optimizer state does not fit ({e})") from None
        start_epoch, start_step = int(blob["epoch"]), int(blob["step_in_epoch"])
        history = list(meta.get("history", []))
        seconds_before = float(meta.get("train_seconds", 0.0))
    if rank is not None:
        rank.broadcast_state(net)
    if main:
        out.mkdir(parents=True, exist_ok=True)

    batches = Batches(data, train_idx, space, mean, std)
    steps_per_epoch = len(_epoch_batches(len(train_idx), cfg, 0))
    if start_epoch * steps_per_epoch + start_step >= cfg.epochs * steps_per_epoch:
        return TrainResult(out, start_epoch, cfg.epochs, start_step, seconds_before, False, history)

    def save(epoch: int, step: int, seconds: float) -> None:
        m = _meta_doc(net, data, cfg, epoch, step, history, mean, std, seconds_before + seconds)
        _save_checkpoint(out, net, opt, m)

    def epoch_start() -> None:
        if rank is not None:
            rank.check_in_sync(net)
        net.sort_channels(opt)

    feed = Feed(data, batches, 0 if rank is None else rank.rank, 1 if rank is None else rank.world, workers, device)
    sync = None if rank is None else (lambda archs, loss: rank.sync(net, archs, loss, feed.fraction))
    net.train()
    end = run_epochs(data, train_idx, batches, cfg, opt,
                     lambda x, y, rng: sandwich_step(net, opt, batches, x, y, rng, cfg, sync),
                     start=(start_epoch, start_step), history=history, on_epoch_start=epoch_start,
                     save=guarded(save, rank is not None) if main else None, time_budget_s=time_budget_s,
                     progress=progress if main else None, feed=feed, any_rank=None if rank is None else rank.any)
    return TrainResult(out, end.epoch, cfg.epochs, end.step, seconds_before + end.seconds, end.stopped, history)


def _raise_agreed(rank: RankContext | None, error: InputError | None) -> None:
    """Raise ``error`` (one process), or on every rank if any rank has an error."""
    if rank is not None:
        rank.agree(error)
    elif error is not None:
        raise error


def _checkpoint_bytes(out: Path) -> bytes:
    """The metadata and checkpoint files of ``out`` as one payload (length-prefixed metadata)."""
    ckpt, meta_path = checkpoint_paths(out)
    read_meta(out)  # its errors, if any
    if not ckpt.is_file():
        _load_blob(ckpt)  # the missing-checkpoint error
    m = meta_path.read_bytes()
    return len(m).to_bytes(8, "little") + m + ckpt.read_bytes()


def _parse_checkpoint(payload: bytes, ckpt: Path) -> tuple[dict, dict]:
    import io

    n = int.from_bytes(payload[:8], "little")
    try:
        meta = json.loads(payload[8:8 + n])
    except ValueError as e:
        raise InputError(f"supernet metadata next to {ckpt} is unreadable: {e}") from None
    return meta, _load_blob(ckpt, io.BytesIO(payload[8 + n:]))


def _check_resume(meta: dict, blob: dict, net: Supernet, data: ImageDataset, cfg: TrainConfig, ckpt: Path,
                  meta_path: Path) -> None:
    where = f"checkpoint {ckpt}"
    _check_compatible(meta, net.meta(), where)
    if json.loads(blob["meta"]).get("epochs_done") != meta.get("epochs_done"):
        raise InputError(f"{ckpt} and {meta_path} disagree (interrupted write?); retrain into a fresh --out")
    if meta["dataset"]["fingerprint"] != data.fingerprint:
        raise InputError(f"{where} was trained on another dataset ({meta['dataset']['source']}, "
                         f"fingerprint {meta['dataset']['fingerprint']}); resume with the same --data")
    old = TrainConfig.from_dict(meta["config"])
    for k in TrainConfig.RESUME_KEYS:
        if getattr(old, k) != getattr(cfg, k):
            raise InputError(f"cannot resume with {k}={getattr(cfg, k)!r}: {where} was trained with {getattr(old, k)!r}")
    _check_state_shapes(net, blob["model"], where)
