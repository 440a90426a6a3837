"""Evaluation: load a trained hypernetwork (:func:`load_hypernet`) and measure architectures'
top-1 accuracy on the validation split with *generated* weights (:func:`evaluate_generated`),
after the supernet's batch-norm recalibration on a few fixed training batches."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ...errors import InputError
from ...space import DEFAULT_SPACE, Arch, SearchSpace
from ..data import ImageDataset
from ..supernet.batches import Batches
from ..supernet.checkpoint import _check_compatible
from ..supernet.evaluation import evaluate_extracted
from .checkpoint import check_blob, checkpoint_paths, load_blob, net_from_meta, read_meta
from .network import HyperNet, extract_generated
from .training import HyperTrainConfig


@dataclass
class LoadedHypernet:
    net: HyperNet
    meta: dict
    data: ImageDataset
    config: HyperTrainConfig
    train_idx: np.ndarray
    val_idx: np.ndarray
    batches: Batches

    @property
    def complete(self) -> bool:
        return int(self.meta["steps_done"]) >= int(self.config.steps)


def load_hypernet(out_dir: str | os.PathLike, space: SearchSpace = DEFAULT_SPACE,
                  data: ImageDataset | str | None = None) -> LoadedHypernet:
    """Load a trained hypernetwork, checking that its space covers ``space`` and finding its
    dataset (``data`` or the ``--data`` source recorded at training time)."""
    from ..streaming import open_dataset

    ckpt, meta_path = checkpoint_paths(out_dir)
    meta = read_meta(out_dir)
    where = f"hypernetwork checkpoint {ckpt}"
    _check_compatible(meta, {"space": space.to_dict()}, where, exact=False)
    net = net_from_meta(meta, meta_path)
    blob = load_blob(ckpt)
    check_blob(net, meta, blob, where, exact=True)
    net.load_state_dict(blob["model"])
    try:
        cfg = HyperTrainConfig.from_dict(meta["config"])
        ds_meta = meta["dataset"]
        source, fingerprint, mean, std = ds_meta["source"], ds_meta["fingerprint"], ds_meta["mean"], ds_meta["std"]
    except (KeyError, TypeError) as e:
        raise InputError(f"hypernetwork metadata {meta_path} is corrupt (missing {e})") from None
    if data is None:
        data = source
    if isinstance(data, (str, os.PathLike)):
        try:
            data = open_dataset(data, stream=False)
        except InputError as e:
            raise InputError(f"the hypernetwork in {out_dir} needs its dataset: {e}") from None
    if data.fingerprint != fingerprint:
        raise InputError(f"dataset {data.source} differs from the one the hypernetwork in {out_dir} was trained on "
                         f"(fingerprint {data.fingerprint} vs {fingerprint})")
    train_idx, val_idx = data.split(cfg.val_fraction, cfg.seed)
    b = Batches(data, train_idx, net.space, mean, std)
    return LoadedHypernet(net.train(), meta, data, cfg, train_idx, val_idx, b)


@torch.no_grad()
def evaluate_generated(lh: LoadedHypernet, archs: Sequence[Arch], progress: Callable[[int], None] | None = None,
                       return_items: bool = False):
    """Top-1 accuracy (%) on the validation split of each architecture with the weights the
    hypernetwork generates for it, after batch-norm recalibration on ``calib_batches`` fixed
    training batches (:func:`~hwnas.accuracy.supernet.recalibrate_bn`).  With
    ``return_items`` also the per-image correctness ``bool [n_archs, n_val]``."""
    return evaluate_extracted(lh, lambda a: extract_generated(lh.net, a), archs, progress, return_items)

