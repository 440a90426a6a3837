"""Training, checkpoints and inherited-weight accuracy of the vit super-transformer
(:mod:`hwnas.spaces.vit_supernet`).

Training: the sandwich rule -- every step accumulates the gradients of the largest, the smallest
and ``n_random`` subnets drawn from a seeded generator the trainer owns (its state is saved in
the checkpoint), then AdamW steps on a warmup + cosine schedule.  Batches, shifts and the weight
initialisation derive from ``seed`` alone; nothing global is changed for good (torch's RNG is
forked, the thread count restored).

Checkpoints: ``DIR/vit_supernet.pt`` (a plain dict of tensors, numbers and strings, loaded with
``weights_only=True``; no pickle) and ``DIR/vit_supernet.json`` (space, proxy geometry, dataset
fingerprint and normalisation, configuration, progress, history), written every epoch, every
``checkpoint_every_s`` and when the time budget stops a run; ``resume=True`` continues at the
saved step.

Estimation: top-1 % of a subnet with inherited weights on the validation split (no batch norm
in a transformer: no recalibration needed).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..accuracy.supernet.training import TrainResult
from ..errors import InputError
from .vit import VitArch, VitSpace
from .vit_supernet import SuperVit, evaluate_vit_archs, normalize

FORMAT = "hwnas-vit-supernet"
VERSION = 1
VIT_CHECKPOINT = "vit_supernet.pt"
VIT_META = "vit_supernet.json"


@dataclass
class VitTrainConfig:
    """Super-transformer training settings; saved in the checkpoint metadata."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    n_random: int = 2
    shift_px: int = 2
    val_fraction: float | None = None  # None: half the images under 5,000 images, else 20%
    seed: int = 0
    grad_clip: float = 1.0
    checkpoint_every_s: float = 60.0

    RESUME_KEYS = ("batch_size", "lr", "weight_decay", "warmup_epochs", "label_smoothing", "n_random", "shift_px",
                   "val_fraction", "seed", "grad_clip")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VitTrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def resolved(self, n_images: int) -> "VitTrainConfig":
        if self.val_fraction is not None:
            return self
        return VitTrainConfig.from_dict(self.to_dict() | {"val_fraction": 0.5 if n_images < 5000 else 0.2})


#: what a training run returns: the CNN supernet's result type (same fields, same meaning)
VitTrainResult = TrainResult


def sandwich_archs(space: VitSpace, rng: np.random.Generator, n_random: int) -> list[VitArch]:
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n_random)]


def _shift(x: torch.Tensor, rng: np.random.Generator, px: int) -> torch.Tensor:
    """Random translation of the whole batch by up to ``px`` pixels (reflect-padded)."""
    if px <= 0:
        return x
    dy, dx = (int(v) for v in rng.integers(0, 2 * px + 1, 2))
    h, w = x.shape[-2:]
    return F.pad(x, (px, px, px, px), mode="reflect")[..., dy:dy + h, dx:dx + w]


def accumulated_step(model: torch.nn.Module, opt: torch.optim.Optimizer, logits: Sequence[Callable[[], torch.Tensor]],
                     y: torch.Tensor, cfg: VitTrainConfig) -> float:
    """One optimizer step of ``model``: the cross-entropy gradients of every forward pass in ``logits``
    (each a call returning the logits of one batch labelled ``y``) accumulated, clipped; the mean loss."""
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for fwd in logits:
        loss = F.cross_entropy(fwd(), y, label_smoothing=cfg.label_smoothing)
        loss.backward()
        total += float(loss.detach())
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return total / len(logits)


def sandwich_step(net: SuperVit, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                  archs: Sequence[VitArch], cfg: VitTrainConfig) -> float:
    """One optimizer step: gradients of every subnet in ``archs`` on ``(x, y)`` accumulated; mean loss."""
    return accumulated_step(net, opt, [lambda a=a: net(net.resize(x, a), a) for a in archs], y, cfg)


def step_batch(opt: torch.optim.Optimizer, vd: "VitData", cfg: VitTrainConfig, epoch: int, step: int,
               batches: list[np.ndarray], per_epoch: int, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Set the learning rate of global step ``epoch * per_epoch + step`` (warmup + cosine over ``total``
    steps); that step's training batch ``(x shifted, y)``."""
    for grp in opt.param_groups:
        grp["lr"] = _lr_at(cfg, epoch * per_epoch + step, total, per_epoch)
    idx = torch.from_numpy(batches[step])
    return _shift(vd.x_train[idx], np.random.default_rng([cfg.seed, 2, epoch, step]), cfg.shift_px), vd.y_train[idx]


def make_optimizer(net: SuperVit, cfg: VitTrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in net.parameters() if p.ndim >= 2 and p is not net.pos and p is not net.cls_token]
    ids = {id(p) for p in decay}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)


def _lr_at(cfg: VitTrainConfig, step: int, total: int, per_epoch: int) -> float:
    warm = max(1, int(cfg.warmup_epochs * per_epoch))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def epoch_batches(n: int, cfg: VitTrainConfig, epoch: int) -> list[np.ndarray]:
    perm = np.random.default_rng([cfg.seed, 1, epoch]).permutation(n)
    nb = max(1, n // cfg.batch_size)
    return [perm[i * cfg.batch_size:(i + 1) * cfg.batch_size] for i in range(nb)]


# -- data -----------------------------------------------------------------------------------------
def open_vit_data(data) -> "object":
    from ..accuracy.data import ImageDataset, load_dataset

    ds = data if isinstance(data, ImageDataset) else load_dataset(data)
    h, w = ds.hw
    if h != w:
        raise InputError(f"the vit supernet needs square images; {ds.source} has {h}x{w}")
    return ds


@dataclass
class VitData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    mean: list[float]
    std: list[float]
    describe: dict


def prepare_data(ds, val_fraction: float, seed: int) -> VitData:
    tr, va = ds.split(val_fraction, seed=seed)
    mean, std = ds.channel_stats(tr)
    return VitData(normalize(ds.images[tr], mean, std), torch.from_numpy(ds.labels[tr]),
                   normalize(ds.images[va], mean, std), torch.from_numpy(ds.labels[va]), mean, std,
                   ds.describe() | {"spec": ds.source, "val_fraction": val_fraction, "n_train": len(tr),
                                    "n_val": len(va)})


# -- checkpoints ----------------------------------------------------------------------------------
def read_vit_meta(out_dir: str | os.PathLike) -> dict:
    p = Path(out_dir) / VIT_META
    if not p.is_file():
        raise InputError(f"no vit supernet in {out_dir} ({VIT_META} missing); train one with "
                         f"`hwnas supernet train --space vit --data builtin:digits --out {out_dir}`")
    try:
        meta = json.loads(p.read_text())
    except (ValueError, OSError) as e:
        raise InputError(f"vit supernet metadata {p} is unreadable: {str(e).splitlines()[0]}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{p} is not a vit supernet metadata file")
    if int(meta.get("version", 0)) > VERSION:
        raise InputError(f"{p} has format version {meta.get('version')}; upgrade hwnas to read it")
    return meta


def _load_blob(out_dir: Path) -> dict:
    p = out_dir / VIT_CHECKPOINT
    if not p.is_file():
        raise InputError(f"no vit supernet checkpoint {p}; train one with "
                         f"`hwnas supernet train --space vit --data builtin:digits --out {out_dir}`")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (any unreadable file: one line)
        raise InputError(f"vit supernet checkpoint {p} is unreadable: {str(e).splitlines()[0] if str(e) else e!r}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError(f"{p} is not a vit supernet checkpoint")
    return blob


def _save(out_dir: Path, net: SuperVit, opt, meta: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    blob = {"format": FORMAT, "version": VERSION, "model": net.state_dict(), "optimizer": opt.state_dict(),
            "meta": json.dumps(meta, sort_keys=True)}
    tmp = out_dir / (VIT_CHECKPOINT + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, out_dir / VIT_CHECKPOINT)
    tmpj = out_dir / (VIT_META + ".tmp")
    tmpj.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmpj, out_dir / VIT_META)


def _check_resume(meta: dict, net: SuperVit, vd: VitData, cfg: VitTrainConfig, out_dir: Path) -> None:
    if meta["space"] != net.space.to_dict():
        raise InputError(f"cannot resume {out_dir}: it was trained on another vit space")
    if meta["dataset"]["fingerprint"] != vd.describe["fingerprint"]:
        raise InputError(f"cannot resume {out_dir}: it was trained on other data ({meta['dataset']['spec']})")
    old = meta["config"]
    diff = [k for k in VitTrainConfig.RESUME_KEYS if old.get(k) != getattr(cfg, k)]
    if diff:
        raise InputError(f"cannot resume {out_dir}: settings differ from the checkpoint's ({', '.join(diff)})")


# -- training -------------------------------------------------------------------------------------
def check_train_target(out: Path, cfg: VitTrainConfig, resume: bool) -> dict | None:
    """One-line InputErrors for a bad ``--out`` / settings; the metadata to resume (or None)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a directory")
    if cfg.epochs < 1 or cfg.batch_size < 2 or cfg.n_random < 0:
        raise InputError("epochs must be >= 1, batch size >= 2 and n_random >= 0")
    if not resume and (out / VIT_CHECKPOINT).exists():
        raise InputError(f"{out} already holds a vit supernet; pass --resume to continue it or choose another --out")
    return read_vit_meta(out) if resume else None


def train_vit_supernet(data, out_dir: str | os.PathLike, cfg: VitTrainConfig | None = None,
                       space: VitSpace | None = None, resume: bool = False,
                       progress: Callable[[int, int, dict], None] | None = None,
                       time_budget_s: float | None = None, threads: int | None = None) -> VitTrainResult:
    """Train (or with ``resume`` continue) the super-transformer of ``space`` on ``data`` (an
    :class:`~hwnas.accuracy.data.ImageDataset` or a ``--data`` spec) into ``out_dir``."""
    from ..accuracy.supernet.distributed import torch_threads

    out = Path(out_dir)
    cfg = cfg or VitTrainConfig()
    meta_old = check_train_target(out, cfg, resume)
    if meta_old is not None:
        space = VitSpace.from_dict(meta_old["space"])
    space = space or VitSpace()
    ds = open_vit_data(data)
    cfg = cfg.resolved(ds.n)
    vd = prepare_data(ds, cfg.val_fraction, cfg.seed)
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = SuperVit(space, ds.n_classes, ds.hw[0])
        opt = make_optimizer(net, cfg)
        rng = np.random.default_rng([cfg.seed, 0])
        epoch, step, seconds, history = 0, 0, 0.0, []
        if meta_old is not None:
            _check_resume(meta_old, net, vd, cfg, out)
            blob = _load_blob(out)
            net.load_state_dict(blob["model"])
            opt.load_state_dict(blob["optimizer"])
            rng.bit_generator.state = meta_old["sandwich_rng"]
            epoch, step = int(meta_old["epochs_done"]), int(meta_old["step_in_epoch"])
            seconds, history = float(meta_old["train_seconds"]), list(meta_old["history"])
        return _run(net, opt, rng, vd, cfg, out, epoch, step, seconds, history, progress, time_budget_s)


def _run(net, opt, rng, vd: VitData, cfg, out: Path, epoch: int, step: int, seconds: float, history: list,
         progress, time_budget_s) -> VitTrainResult:
    per_epoch = len(epoch_batches(len(vd.y_train), cfg, 0))
    total = cfg.epochs * per_epoch
    t0, last_save = time.perf_counter(), time.perf_counter()
    elapsed = lambda: seconds + time.perf_counter() - t0  # noqa: E731

    def save(ep: int, st: int) -> None:
        meta = {"format": FORMAT, "version": VERSION, **net.meta(), "config": cfg.to_dict(),
                "dataset": vd.describe | {"mean": vd.mean, "std": vd.std}, "epochs_done": ep, "step_in_epoch": st,
                "train_seconds": round(elapsed(), 3), "history": history, "sandwich_rng": rng.bit_generator.state}
        _save(out, net, opt, meta)

    stopped = False
    net.train()
    while epoch < cfg.epochs and not stopped:
        batches = epoch_batches(len(vd.y_train), cfg, epoch)
        losses = []
        while step < len(batches):
            g = epoch * per_epoch + step
            x, y = step_batch(opt, vd, cfg, epoch, step, batches, per_epoch, total)
            losses.append(sandwich_step(net, opt, x, y, sandwich_archs(net.space, rng, cfg.n_random), cfg))
            step += 1
            if progress is not None:
                progress(g + 1, total, {"epoch": epoch, "loss": losses[-1]})
            now = time.perf_counter()
            if time_budget_s is not None and elapsed() >= time_budget_s and step < len(batches):
                stopped = True
                break
            if now - last_save >= cfg.checkpoint_every_s and step < len(batches):
                save(epoch, step)
                last_save = now
        if stopped:
            save(epoch, step)
            break
        acc, _ = evaluate_vit_archs(net, vd.x_val, vd.y_val, [net.space.largest(), net.space.smallest()])
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else None,
                        "val_top1_largest_pct": float(acc[0]), "val_top1_smallest_pct": float(acc[1]),
                        "seconds": round(elapsed(), 1)})
        epoch, step = epoch + 1, 0
        save(epoch, 0)
        last_save = time.perf_counter()
        if time_budget_s is not None and elapsed() >= time_budget_s and epoch < cfg.epochs:
            stopped = True
    return VitTrainResult(out, epoch, cfg.epochs, step, round(elapsed(), 1), stopped, history)


# -- estimation -----------------------------------------------------------------------------------
@dataclass
class LoadedVitSupernet:
    net: SuperVit
    meta: dict
    data: VitData


def load_vit_supernet(out_dir: str | os.PathLike, data=None) -> LoadedVitSupernet:
    """The trained super-transformer of ``out_dir`` and its validation split (the dataset is
    reloaded from its recorded spec, or ``data``, and checked against the fingerprint)."""
    d = Path(out_dir)
    meta = read_vit_meta(d)
    blob = _load_blob(d)
    ds = open_vit_data(data if data is not None else meta["dataset"]["spec"])
    if ds.fingerprint != meta["dataset"]["fingerprint"]:
        raise InputError(f"the data {ds.source} is not the data the vit supernet in {d} was trained on")
    cfg = VitTrainConfig.from_dict(meta["config"])
    vd = prepare_data(ds, cfg.val_fraction, cfg.seed)
    with torch.random.fork_rng(devices=[]):
        net = SuperVit(VitSpace.from_dict(meta["space"]), int(meta["n_classes"]), ds.hw[0])
    try:
        net.load_state_dict(blob["model"])
    except RuntimeError as e:
        raise InputError(f"vit supernet checkpoint in {d} does not match its metadata: "
                         f"{str(e).splitlines()[0]}") from None
    return LoadedVitSupernet(net.eval(), meta, vd)


class VitSupernetEstimator:
    """Top-1 % with weights inherited from a trained vit super-transformer (higher is better)."""

    name = "vit-supernet"
    unit = "%"

    def __init__(self, out_dir: str | os.PathLike, threads: int | None = None) -> None:
        self.dir, self.threads = Path(out_dir), threads
        self.loaded = load_vit_supernet(out_dir)
        m = self.loaded.meta
        self.meaning = (f"top-1 % on the validation split of {m['dataset']['spec']} ({m['dataset']['n_val']} images, "
                        f"proxy patch {m['geometry']['patch_px']} px at {m['geometry']['input_px']} px) with weights "
                        f"inherited from the vit supernet in {self.dir} ({m['epochs_done']}/{m['config']['epochs']} "
                        f"epochs); no stand-alone ground truth")
        self.cache: dict[VitArch, float] = {}

    def estimate(self, archs: Sequence[VitArch], progress: Callable[[int], None] | None = None) -> np.ndarray:
        from ..accuracy.supernet.distributed import torch_threads

        net = self.loaded.net
        new = [net.check(a) for a in dict.fromkeys(archs) if a not in self.cache]
        with torch_threads(self.threads):
            for a in new:
                acc, _ = evaluate_vit_archs(net, self.loaded.data.x_val, self.loaded.data.y_val, [a])
                self.cache[a] = float(acc[0])
                if progress is not None:
                    progress(1)
        return np.array([self.cache[a] for a in archs], dtype=float)

    def describe(self) -> dict:
        return {"estimator": self.name, "meaning": self.meaning, "unit": self.unit}


__all__ = ["VitTrainConfig", "VitTrainResult", "train_vit_supernet", "sandwich_step", "sandwich_archs",
           "accumulated_step", "step_batch", "make_optimizer", "epoch_batches", "prepare_data", "open_vit_data",
           "load_vit_supernet", "read_vit_meta", "VitSupernetEstimator", "VIT_CHECKPOINT", "VIT_META"]
