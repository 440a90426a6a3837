"""What the training loop trains on at each step: this rank's shard of the step's global batch,
from memory or streamed from disk by worker processes.

:func:`shard` splits a global batch into contiguous parts, one per rank (sizes differ by at
most one).  :class:`Feed` hands :func:`~hwnas.accuracy.supernet.training.run_epochs` the
rank's part of each batch with its part of the batch's augmentation shifts, which are drawn
for the whole global batch, so every image is augmented as in a one-process run.  A streamed
dataset (:class:`~hwnas.accuracy.streaming.StreamedFolder`) is read by a torch ``DataLoader``
with ``workers`` processes that decode the epoch's batches ahead of the loop, in the loop's
order (the epoch's seeded permutation): shuffling stays deterministic and identical to the
in-memory path.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import InputError
from ..data import ImageDataset
from ..streaming import FolderImages
from .batches import Batches


def shard(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous part of ``n`` items split over ``world`` ranks in order."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


class _BatchReader:
    """DataLoader dataset that reads a whole batch at once (``__getitems__``); a bad image
    comes back as its one-line message instead of a worker traceback."""

    def __init__(self, images: FolderImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, idx: list[int]):
        idx = np.asarray(idx, dtype=np.int64)
        try:
            return idx, self.images[idx], None
        except InputError as e:
            return idx, None, str(e)


def _as_is(batch):
    return batch


class Feed:
    """This rank's part of each global batch as ``(x, y)`` on ``device``.

    :meth:`start_epoch` receives the epoch's global batches (dataset indices) and the step to
    start from; :meth:`next` is then called once per step, in order, with that step's global
    batch and shifts.  ``fraction`` is the last part's share of its global batch (gradients
    are weighted by it before they are summed over ranks)."""

    def __init__(self, data: ImageDataset, batches: Batches, rank: int = 0, world: int = 1, workers: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.data, self.batches = data, batches
        self.rank, self.world = rank, world
        self.device = torch.device(device)
        self.streamed = isinstance(data.images, FolderImages)
        self.workers = workers if self.streamed else 0
        self.fraction = 1.0
        self._it = None

    def start_epoch(self, epoch_batches: list[np.ndarray], start: int) -> None:
        self._it = None
        if not self.streamed:
            return
        parts = [b[shard(len(b), self.rank, self.world)].tolist() for b in epoch_batches[start:]]
        loader = torch.utils.data.DataLoader(_BatchReader(self.data.images), batch_sampler=parts,
                                             num_workers=self.workers, collate_fn=_as_is,
                                             prefetch_factor=4 if self.workers else None,
                                             multiprocessing_context=self._worker_context())
        self._it = iter(loader)

    def _worker_context(self):
        """Readers are forked, except in a rank of a process group: forked from a process with
        gloo's threads they stalled for minutes here, so they come from a fork server that has
        imported this module once."""
        import torch.distributed as dist

        if not self.workers or not (dist.is_available() and dist.is_initialized()):
            return None
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx

    def next(self, idx: np.ndarray, shifts: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        part = shard(len(idx), self.rank, self.world)
        local = idx[part]
        local_shifts = None if shifts is None else shifts[part]
        self.fraction = len(local) / max(1, len(idx))
        if self._it is None:
            x = self.batches.tensor(local, local_shifts)
        else:
            got, images, error = next(self._it)
            if error is not None:
                raise InputError(error)
            if not np.array_equal(got, local):
                raise RuntimeError("streamed batch out of step with the training loop")
            x = self.batches.normalised(images, local_shifts)
        y = torch.from_numpy(self.data.labels[local])
        return x.to(self.device), y.to(self.device)
