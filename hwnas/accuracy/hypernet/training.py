"""Training the hypernetwork: the settings (:class:`HyperTrainConfig`), one step
(:func:`hyper_step`: a meta-batch of sampled architectures, each generated, run on the batch
and back-propagated into the hypernetwork) and :func:`train_hypernet` (the step loop with
checkpoints, resume, a step limit and a time budget).

Everything a step draws (the images, their shifts, the architectures) comes from
``numpy.random.default_rng([seed, 2, step])`` (images: the epoch's seeded permutation), so a
run resumed from a checkpoint continues exactly the run it interrupted.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError
from ...space import DEFAULT_SPACE, Arch, SearchSpace
from ..data import ImageDataset
from ..supernet.batches import Batches, _step_shifts
from ..supernet.distributed import torch_threads
from .checkpoint import check_blob, checkpoint_paths, load_blob, meta_doc, read_meta, save_checkpoint
from .network import HyperNet


@dataclass
class HyperTrainConfig:
    """Hypernetwork training settings; saved in the checkpoint metadata."""

    steps: int = 2000
    batch_size: int = 64
    archs_per_step: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 50
    label_smoothing: float = 0.1
    augment_shift: float = 0.125
    hidden: int = 32
    val_fraction: float | None = None
    seed: int = 0
    calib_batches: int = 6
    calib_batch_size: int = 100
    checkpoint_every_s: float = 60.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HyperTrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def resolved(self, data: ImageDataset) -> "HyperTrainConfig":
        """A copy with ``val_fraction`` settled as the supernet settles it: half the images
        under 5,000 images, else 20%."""
        if self.val_fraction is not None:
            return self
        return HyperTrainConfig.from_dict({**self.to_dict(), "val_fraction": 0.5 if data.n < 5000 else 0.2})

    # settings that must agree for a resume to continue the same run (``steps`` may grow)
    RESUME_KEYS = ("batch_size", "archs_per_step", "lr", "weight_decay", "warmup_steps", "label_smoothing",
                   "augment_shift", "hidden", "val_fraction", "seed")


@dataclass
class HyperTrainResult:
    out_dir: Path
    steps_done: int
    steps: int
    seconds: float
    stopped_early: bool
    history: list = field(default_factory=list)


def make_optimizer(net: HyperNet, cfg: HyperTrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if "ktrans" in name:  # the template runs in crop mode: its transformation matrices are unused
            continue
        (no_decay if p.ndim <= 1 or ".bn." in name or name.endswith("bias") else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


def lr_at(cfg: HyperTrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``steps``."""
    warm = min(cfg.warmup_steps, max(0, cfg.steps - 1))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, cfg.steps - warm)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, t)))


def step_batch(n_train: int, cfg: HyperTrainConfig, step: int) -> np.ndarray:
    """Positions in the training split of step ``step``'s images: consecutive slices of a
    seeded permutation per epoch (the ragged end of an epoch is dropped)."""
    per_epoch = max(1, n_train // cfg.batch_size)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([cfg.seed, 1, epoch]).permutation(n_train)
    return perm[k * cfg.batch_size:(k + 1) * cfg.batch_size]


def step_archs(space: SearchSpace, rng: np.random.Generator, n: int) -> list[Arch]:
    return [space.sample(rng) for _ in range(n)]


def hyper_step(net: HyperNet, opt: torch.optim.Optimizer, batches: Batches, x: torch.Tensor, y: torch.Tensor,
               archs: list[Arch], label_smoothing: float = 0.0) -> float:
    """One optimizer step: for each architecture of the meta-batch, generate its weights, run
    it on ``(x, y)`` (``x`` at the dataset's size, resized per architecture) and accumulate the
    gradient of its cross-entropy (divided by the meta-batch size); returns the mean loss."""
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for arch in archs:
        logits = net(batches.resize(x, batches.size_of(arch)), arch)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing) / len(archs)
        loss.backward()
        total += float(loss.detach())
    opt.step()
    return total


def train_hypernet(data: ImageDataset | str, out_dir: str | os.PathLike, cfg: HyperTrainConfig | None = None,
                   space: SearchSpace = DEFAULT_SPACE, resume: bool = False, max_steps: int | None = None,
                   time_budget_s: float | None = None, progress: Callable[[int, int, dict], None] | None = None,
                   threads: int | None = None) -> HyperTrainResult:
    """Train (or with ``resume`` continue) a hypernetwork on ``data`` into ``out_dir``.

    Runs until ``cfg.steps`` steps are done, or stops early (with a checkpoint; ``resume``
    continues) after ``max_steps`` steps of this call or at a step boundary once
    ``time_budget_s`` has passed.  A checkpoint is also written every
    ``cfg.checkpoint_every_s``, so Ctrl-C loses at most that much.  ``progress(done, total,
    info)`` is called after every step.  ``threads`` sets torch's thread count for the call
    (restored after).  Bad input (a missing or corrupt checkpoint, another dataset, other
    settings on resume, an ``out_dir`` that already holds a hypernetwork without ``resume``)
    raises :class:`~hwnas.errors.InputError` before anything is written.
    """
    with torch_threads(threads):
        return _train(data, Path(out_dir), cfg or HyperTrainConfig(), space, resume, max_steps, time_budget_s,
                      progress)


def _train(data, out: Path, cfg: HyperTrainConfig, space: SearchSpace, resume: bool, max_steps, time_budget_s,
           progress) -> HyperTrainResult:
    from ..streaming import open_dataset

    if cfg.steps < 1:
        raise InputError(f"--steps must be at least 1, got {cfg.steps}")
    if max_steps is not None and max_steps < 1:
        raise InputError(f"--max-steps must be at least 1, got {max_steps}")
    if time_budget_s is not None:
        from ...validate import positive_number

        positive_number(time_budget_s, "time budget", "seconds", allow_zero=True)
    ckpt, meta_path = checkpoint_paths(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} is a file, not a directory")
    if not resume and (ckpt.exists() or meta_path.exists()):
        raise InputError(f"{out} already holds a hypernetwork; add --resume to continue it or choose another --out")
    meta, blob = (read_meta(out), load_blob(ckpt)) if resume else (None, None)
    if isinstance(data, (str, os.PathLike)):
        data = open_dataset(data, stream=False)
    cfg = cfg.resolved(data)
    if data.n_classes < 2:
        raise InputError(f"dataset {data.source} has {data.n_classes} class(es); need at least 2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = HyperNet(space, data.n_classes, cfg.hidden)
    opt = make_optimizer(net, cfg)
    start, history, seconds_before = 0, [], 0.0
    if resume:
        _check_resume(meta, blob, net, data, cfg, ckpt)
        net.load_state_dict(blob["model"])
        try:
            opt.load_state_dict(blob["optimizer"])
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"checkpoint {ckpt}: optimizer state does not fit ({e})") from None
        start = int(blob["steps_done"])
        history = list(meta.get("history", []))
        seconds_before = float(meta.get("train_seconds", 0.0))
    train_idx, _ = data.split(cfg.val_fraction, cfg.seed)
    if len(train_idx) < 2:
        raise InputError(f"dataset {data.source} has too few training images ({len(train_idx)})")
    mean, std = data.channel_stats(train_idx)
    out.mkdir(parents=True, exist_ok=True)
    batches = Batches(data, train_idx, space, mean, std)
    cfg_doc = cfg.to_dict()

    t0 = time.perf_counter()

    def save(step: int) -> None:
        save_checkpoint(out, net, opt, meta_doc(net, data, cfg_doc, step, history, mean, std,
                                                seconds_before + time.perf_counter() - t0))

    net.train()
    last_ckpt, step, stopped, window = t0, start, False, []
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, 2, step])
        idx = train_idx[step_batch(len(train_idx), cfg, step)]
        shifts = _step_shifts(rng, len(idx), data.hw, cfg.augment_shift)
        x, y = batches.tensor(idx, shifts), torch.from_numpy(data.labels[idx])
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        loss = hyper_step(net, opt, batches, x, y, step_archs(space, rng, cfg.archs_per_step), cfg.label_smoothing)
        step += 1
        window.append(loss)
        if len(window) == 50 or step == cfg.steps:
            history.append({"step": step, "train_loss": float(np.mean(window))})
            window = []
        if progress is not None:
            progress(step, cfg.steps, {"loss": loss, "lr": opt.param_groups[0]["lr"]})
        now = time.perf_counter()
        if step < cfg.steps and ((max_steps is not None and step - start >= max_steps)
                                 or (time_budget_s is not None and now - t0 >= time_budget_s)):
            stopped = True
            break
        if now - last_ckpt >= cfg.checkpoint_every_s and step < cfg.steps:
            save(step)
            last_ckpt = time.perf_counter()
    if window:
        history.append({"step": step, "train_loss": float(np.mean(window))})
    if step > start or not resume:
        save(step)
    return HyperTrainResult(out, step, cfg.steps, seconds_before + time.perf_counter() - t0, stopped, history)


def _check_resume(meta: dict, blob: dict, net: HyperNet, data: ImageDataset, cfg: HyperTrainConfig,
                  ckpt: Path) -> None:
    where = f"checkpoint {ckpt}"
    try:
        old = HyperTrainConfig.from_dict(meta["config"])
        fingerprint, source = meta["dataset"]["fingerprint"], meta["dataset"]["source"]
    except (KeyError, TypeError) as e:
        raise InputError(f"hypernetwork metadata next to {ckpt} is corrupt (missing {e})") from None
    for k in HyperTrainConfig.RESUME_KEYS:
        if getattr(old, k) != getattr(cfg, k):
            raise InputError(f"cannot resume with {k}={getattr(cfg, k)!r}: {where} was trained with {getattr(old, k)!r}")
    if fingerprint != data.fingerprint:
        raise InputError(f"{where} was trained on another dataset ({source}, fingerprint {fingerprint}); "
                         f"resume with the same --data")
    check_blob(net, meta, blob, where, exact=True)
