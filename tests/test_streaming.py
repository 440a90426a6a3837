"""Streamed ImageFolder: the same images, labels, statistics and training batches as the
in-memory loader, read by DataLoader worker processes; bad files are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hwnas.accuracy.data import ImageDataset
from hwnas.accuracy.streaming import FolderImages, StreamedFolder, open_dataset
from hwnas.accuracy.supernet import Batches
from hwnas.accuracy.supernet.batches import _step_shifts
from hwnas.accuracy.supernet.feed import Feed
from hwnas.accuracy.supernet.training import TrainConfig, _epoch_batches
from hwnas.errors import InputError
from hwnas.space import SearchSpace

TINY = SearchSpace(resolutions=(128, 224), width_mults=(1.0,), depths=(1,), kernels=(3,), expands=(3,))


def _folder(root, n_per_class=(7, 5, 6), side=12, seed=0):
    rng = np.random.default_rng(seed)
    for c, n in enumerate(n_per_class):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(d / f"img{i:02d}.png")
    return root


def test_streamed_folder_matches_in_memory_and_streams_with_workers(tmp_path):
    root = _folder(tmp_path / "f")
    mem = open_dataset(root)  # 18 small images: far below the default limit
    streamed = open_dataset(root, memory_limit_mb=0.0)  # the limit set low forces streaming
    assert type(mem) is ImageDataset and isinstance(streamed, StreamedFolder)
    assert isinstance(streamed.images, FolderImages) and streamed.describe()["storage"] == "streamed"
    assert (streamed.n, streamed.hw, streamed.classes) == (mem.n, mem.hw, mem.classes)
    assert np.array_equal(streamed.labels, mem.labels)
    assert [a.tolist() for a in streamed.split(0.25, 3)] == [a.tolist() for a in mem.split(0.25, 3)]
    idx = np.array([17, 0, 5, 5, 11])
    assert np.array_equal(streamed.images[idx], mem.images[idx])
    np.testing.assert_allclose(streamed.channel_stats(idx), mem.channel_stats(idx), rtol=1e-9)
    # an epoch's batches, streamed by two worker processes in the loop's seeded order, are the in-memory batches
    cfg = TrainConfig(batch_size=4, seed=5)
    train_idx = np.arange(mem.n)
    mean, std = mem.channel_stats(train_idx)
    bm, bs = Batches(mem, train_idx, TINY, mean, std), Batches(streamed, train_idx, TINY, mean, std)
    epoch = [train_idx[b] for b in _epoch_batches(mem.n, cfg, 1)]
    assert len(epoch) == 4 and sorted(np.concatenate(epoch).tolist()) != np.concatenate(epoch).tolist()
    feeds = [Feed(streamed, bs, r, 2, workers=2) for r in range(2)]
    for f in feeds:
        f.start_epoch(epoch, 1)  # from step 1, as a resumed epoch does
    for step, b in enumerate(epoch[1:], 1):
        shifts = _step_shifts(np.random.default_rng([5, 2, 1, step]), len(b), mem.hw, 0.125)
        parts = [f.next(b, shifts) for f in feeds]
        assert torch.equal(torch.cat([x for x, _ in parts]), bm.tensor(b, shifts))
        assert torch.cat([y for _, y in parts]).tolist() == mem.labels[b].tolist()
    # the fingerprint follows the files; a file of another size is an error when it is read
    fp = streamed.fingerprint
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(root / "class1" / "img03.png")
    again = open_dataset(root, memory_limit_mb=0.0)
    assert again.fingerprint != fp
    f = Feed(again, Batches(again, train_idx, TINY, mean, std), workers=1)
    f.start_epoch([np.arange(again.n)], 0)
    with pytest.raises(InputError, match=r"^images of mixed sizes: .*img03.png is 12x10"):
        f.next(np.arange(again.n), None)
    with pytest.raises(InputError, match="only ImageFolder directories can be streamed"):
        open_dataset("builtin:digits", stream=True)
