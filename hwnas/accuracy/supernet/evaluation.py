"""Evaluation: load a trained supernet (:func:`load_supernet`), re-estimate a model's
batch-norm statistics (:func:`recalibrate_bn`) and measure subnets' top-1 accuracy on the
validation split with inherited weights (:func:`evaluate_archs`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ...errors import InputError
from ...space import DEFAULT_SPACE, Arch, SearchSpace
from ..data import ImageDataset
from ..streaming import open_dataset
from .batches import Batches
from .checkpoint import _check_compatible, _check_state_shapes, _load_blob, checkpoint_paths, read_meta
from .network import Supernet, extract_subnet
from .training import TrainConfig


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Reset every batch-norm layer's running statistics and re-estimate them as the plain
    average over ``batches`` (forward passes in train mode); returns ``model`` in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for x in batches:
        model(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return model.eval()


@torch.no_grad()
def _correct(model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor, batch: int = 500) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x_val[i:i + batch]).argmax(1) == y_val[i:i + batch] for i in range(0, len(y_val), batch)]
                     or [torch.zeros(0, dtype=torch.bool)])


def _accuracy(model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor) -> float:
    c = _correct(model, x_val, y_val)
    return 100.0 * int(c.sum()) / len(c) if len(c) else 0.0


@dataclass
class LoadedSupernet:
    net: Supernet
    meta: dict
    data: ImageDataset
    config: TrainConfig
    train_idx: np.ndarray
    val_idx: np.ndarray
    batches: Batches

    @property
    def complete(self) -> bool:
        return int(self.meta["epochs_done"]) >= int(self.config.epochs)


def load_supernet(out_dir: str | os.PathLike, space: SearchSpace = DEFAULT_SPACE,
                  data: ImageDataset | str | None = None) -> LoadedSupernet:
    """Load a trained supernet, checking it belongs to ``space`` and finding its dataset
    (``data`` or the ``--data`` source recorded at training time)."""
    ckpt, meta_path = checkpoint_paths(out_dir)
    meta = read_meta(out_dir)
    where = f"supernet checkpoint {ckpt}"
    _check_compatible(meta, {"space": space.to_dict()}, where, exact=False)
    blob = _load_blob(ckpt)
    if json.loads(blob["meta"]).get("epochs_done") != meta.get("epochs_done"):
        raise InputError(f"{ckpt} and {meta_path} disagree (interrupted write?); resume the training to fix it")
    try:
        own_space = SearchSpace.from_dict(meta["space"])
        net = Supernet(own_space, int(meta["n_classes"]), meta["kernel_mode"])
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"supernet metadata {meta_path} is corrupt ({e})") from None
    _check_state_shapes(net, blob["model"], where)
    net.load_state_dict(blob["model"])
    cfg = TrainConfig.from_dict(meta["config"])
    ds_meta = meta["dataset"]
    if data is None:
        data = ds_meta["source"]
    if isinstance(data, (str, os.PathLike)):
        try:
            data = open_dataset(data, stream=ds_meta.get("storage") == "streamed")
        except InputError as e:
            raise InputError(f"the supernet in {out_dir} needs its dataset: {e}") from None
    if data.fingerprint != ds_meta["fingerprint"]:
        raise InputError(f"dataset {data.source} differs from the one the supernet in {out_dir} was trained on "
                         f"(fingerprint {data.fingerprint} vs {ds_meta['fingerprint']})")
    train_idx, val_idx = data.split(cfg.val_fraction, cfg.seed)
    b = Batches(data, train_idx, net.space, ds_meta["mean"], ds_meta["std"])
    return LoadedSupernet(net.eval(), meta, data, cfg, train_idx, val_idx, b)


def _calib_batches(b: Batches, train_idx: np.ndarray, size: tuple[int, int], n_batches: int, batch_size: int,
                   seed: int) -> list[torch.Tensor]:
    perm = np.random.default_rng([seed, 3]).permutation(len(train_idx))
    out = []
    for i in range(n_batches):
        part = perm[i * batch_size:(i + 1) * batch_size]
        if len(part) == 0:
            break
        out.append(b.resize(b.tensor(train_idx[part]), size))
    return out


def evaluate_archs(ls: LoadedSupernet, archs: Sequence[Arch], progress: Callable[[int], None] | None = None,
                   return_items: bool = False):
    """Top-1 accuracy (%) on the validation split of each architecture with inherited weights,
    after batch-norm recalibration on ``calib_batches`` fixed training batches.  With
    ``return_items`` also the per-image correctness ``bool [n_archs, n_val]``."""
    return evaluate_extracted(ls, lambda a: extract_subnet(ls.net, a), archs, progress, return_items)


def evaluate_extracted(loaded, extract: Callable[[Arch], torch.nn.Module], archs: Sequence[Arch],
                       progress: Callable[[int], None] | None = None, return_items: bool = False):
    """:func:`evaluate_archs` for any source of weights: ``extract(arch)`` gives the subnet (from a
    supernet, a hypernetwork...); ``loaded`` has the ``config``, ``data``, ``batches``, ``train_idx``
    and ``val_idx`` the evaluation needs."""
    cfg = loaded.config
    out = np.empty(len(archs))
    items = np.zeros((len(archs), len(loaded.val_idx)), dtype=bool) if return_items else None
    val_cache: dict = {}
    calib_cache: dict = {}
    y_val = torch.from_numpy(loaded.data.labels[loaded.val_idx])
    for i, a in enumerate(archs):
        size = loaded.batches.size_of(a)
        if size not in val_cache:
            val_cache[size] = loaded.batches.resize(loaded.batches.tensor(loaded.val_idx), size)
            calib_cache[size] = _calib_batches(loaded.batches, loaded.train_idx, size, cfg.calib_batches,
                                               cfg.calib_batch_size, cfg.seed)
        model = extract(a).to(memory_format=torch.channels_last)  # 3-5x faster inference here
        model = recalibrate_bn(model, calib_cache[size])
        correct = _correct(model, val_cache[size], y_val)
        out[i] = 100.0 * int(correct.sum()) / len(correct) if len(correct) else 0.0
        if items is not None:
            items[i] = correct.numpy()
        if progress is not None:
            progress(1)
    return (out, items) if return_items else out
