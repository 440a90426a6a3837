"""Hypernetwork checkpoints: ``DIR/hypernet.pt`` (a plain dict of tensors, numbers and strings,
saved with ``torch.save`` and loaded with ``weights_only=True``) and ``DIR/hypernet.json`` (the
metadata: space, classes, embedding width, dataset fingerprint, training configuration,
history), written atomically, and the checks a checkpoint must pass to be resumed or loaded."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

import torch

from ...errors import InputError, first_line
from ..data import BUILTIN_SHAPES, ImageDataset, input_size
from ..supernet.checkpoint import _check_compatible, _check_state_shapes
from .network import HyperNet

FORMAT = "hwnas-hypernet"
VERSION = 1
CHECKPOINT = "hypernet.pt"
META = "hypernet.json"


def checkpoint_paths(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    d = Path(out_dir)
    return d / CHECKPOINT, d / META


def meta_doc(net: HyperNet, data: ImageDataset, config: dict, step: int, history: list, mean, std,
             seconds: float) -> dict:
    return {"format": FORMAT, "version": VERSION, **net.meta(),
            "dataset": data.describe() | {"mean": mean, "std": std},
            "config": config, "steps_done": step, "train_seconds": seconds, "history": history,
            "input_sizes": {str(r): list(input_size(r, data.hw, max(net.space.resolutions)))
                            for r in net.space.resolutions}}


def save_checkpoint(out_dir: Path, net: HyperNet, opt: torch.optim.Optimizer | None, meta: dict) -> None:
    """Write the checkpoint, then the metadata, each atomically (temporary file + rename)."""
    ckpt, meta_path = checkpoint_paths(out_dir)
    blob = {"format": FORMAT, "version": VERSION, "steps_done": int(meta["steps_done"]), "model": net.state_dict(),
            "optimizer": opt.state_dict() if opt is not None else {}, "meta": json.dumps(meta, sort_keys=True)}
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, ckpt)
    from ...predictors.serialize import save_json

    save_json(meta, meta_path)


def _train_hint(out_dir) -> str:
    return f"train one with `hwnas hypernet train --data {BUILTIN_SHAPES} --out {out_dir}`"


def read_meta(out_dir: str | os.PathLike) -> dict:
    """The metadata JSON of a hypernetwork directory; one-line errors when missing or corrupt."""
    from ...predictors.serialize import load_json

    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise InputError(f"hypernetwork directory {d} is a file")
    ckpt, meta_path = checkpoint_paths(d)
    if not meta_path.is_file():
        raise InputError(f"no hypernetwork in {d} ({META} missing); {_train_hint(d)}")
    try:
        meta = load_json(meta_path)
    except ValueError as e:
        raise InputError(f"hypernetwork metadata {meta_path} is unreadable: {first_line(e)[:200]}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{meta_path} is not a hypernetwork metadata file")
    if int(meta.get("version", 0)) > VERSION:
        raise InputError(f"{meta_path} has format version {meta.get('version')}; upgrade hwnas to read it")
    return meta


def load_blob(ckpt: Path, source: IO[bytes] | None = None) -> dict:
    """The checkpoint dict of ``ckpt``, loaded weights-only; one-line errors."""
    if source is None and not ckpt.is_file():
        raise InputError(f"no hypernetwork checkpoint {ckpt}; {_train_hint(ckpt.parent)}")
    try:
        blob = torch.load(ckpt if source is None else source, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise InputError(f"hypernetwork checkpoint {ckpt} is corrupt or not a weights-only checkpoint: "
                         f"{first_line(e)[:200]}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or not isinstance(blob.get("model"), dict):
        raise InputError(f"{ckpt} is not an hwnas hypernetwork checkpoint")
    return blob


def net_from_meta(meta: dict, where: Path) -> HyperNet:
    """An untrained :class:`HyperNet` of the shape the metadata describes."""
    from ...space import SearchSpace

    try:
        with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten: leave the global RNG alone
            return HyperNet(SearchSpace.from_dict(meta["space"]), int(meta["n_classes"]), int(meta["hidden"]))
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"hypernetwork metadata {where} is corrupt ({first_line(e)[:200]})") from None


def check_blob(net: HyperNet, meta: dict, blob: dict, where: str, exact: bool) -> None:
    """``blob`` fits ``net`` (same space when ``exact``, covering it otherwise), and its copy of
    the metadata agrees with ``meta`` (both files from the same save)."""
    _check_compatible(meta, {"space": net.space.to_dict(), "n_classes": net.n_classes}, where, exact=exact)
    try:
        inner = json.loads(blob.get("meta", ""))
    except (TypeError, ValueError):
        inner = {}
    if inner.get("steps_done") != meta.get("steps_done") or int(blob.get("steps_done", -1)) != meta.get("steps_done"):
        raise InputError(f"{where} and its {META} disagree (interrupted write?); resume the training to fix it")
    _check_state_shapes(net, blob["model"], where)
