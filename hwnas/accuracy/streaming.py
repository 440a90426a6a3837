"""ImageFolder data streamed from disk, for folders too large to hold in memory.

:func:`open_dataset` is :func:`~hwnas.accuracy.data.load_dataset` with a size limit: an
ImageFolder-style directory whose decoded images (``N x 3 x H x W`` bytes, estimated from the
file count and the first image's size) exceed ``memory_limit_mb`` (default
:data:`DEFAULT_MEMORY_LIMIT_MB`, per process) is opened as a :class:`StreamedFolder`, which
keeps only the file list and labels in memory and reads images when indexed; ``stream=True``
or ``False`` forces either way.  ``builtin:`` datasets and ``.npz`` files are always loaded.

Streamed images go through the same decoding as the in-memory loader (grayscale copied to
three channels, an alpha channel dropped) and, in training, the same normalisation, shifts and
resizing (:class:`~hwnas.accuracy.supernet.batches.Batches`); training reads them with worker
processes (:class:`~hwnas.accuracy.supernet.feed.Feed`).  An image whose size or channels
differ from the first one is a one-line error when it is read.

A streamed folder's fingerprint covers the files' relative paths, sizes and labels (not their
pixels, which would mean reading every file); its channel statistics come from a seeded sample
of at most :data:`STATS_SAMPLE` training images (all of them below that).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from .data import ImageDataset, _check_classes, _check_same_format, _folder_files, _read_image, load_dataset

DEFAULT_MEMORY_LIMIT_MB = 2048.0
"""Decoded size (MB, per process) above which an ImageFolder is streamed instead of loaded."""
STATS_SAMPLE = 4096
"""Training images sampled for a streamed folder's channel mean and std."""

__all__ = ["DEFAULT_MEMORY_LIMIT_MB", "STATS_SAMPLE", "FolderImages", "StreamedFolder", "open_dataset"]


def open_dataset(spec: str | os.PathLike, memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB,
                 stream: bool | None = None) -> ImageDataset:
    """Load ``spec`` like :func:`load_dataset`, but stream an ImageFolder from disk when its
    decoded size exceeds ``memory_limit_mb`` (``stream`` True / False forces the choice)."""
    if not memory_limit_mb >= 0:
        raise InputError(f"memory limit must be a non-negative number of MB, got {memory_limit_mb}")
    path = Path(str(spec))
    if str(spec).startswith("builtin:") or not path.is_dir():
        if stream:
            raise InputError(f"only ImageFolder directories can be streamed; {spec} is loaded in memory")
        return load_dataset(spec)
    class_dirs, files = _folder_files(path)
    first, ch = _read_image(files[0][0])
    hw = (int(first.shape[1]), int(first.shape[2]))
    mb = len(files) * 3 * hw[0] * hw[1] / 1e6
    if stream is None:
        stream = mb > memory_limit_mb
    if not stream:
        return load_dataset(path)
    return StreamedFolder(path, [d.name for d in class_dirs], files, hw, ch, mb)


class FolderImages:
    """``uint8 [N, 3, H, W]`` images of a list of files, read (and checked) when indexed."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths: Sequence[Path], hw: tuple[int, int], channels: int) -> None:
        self.paths = [Path(p) for p in paths]
        self.channels = channels
        self.shape = (len(self.paths), 3, hw[0], hw[1])

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, i: int) -> np.ndarray:
        """Image ``i`` as ``uint8 [3, H, W]``."""
        p = self.paths[i]
        arr, ch = _read_image(p)
        _check_same_format((self.paths[0], self.shape[2:], self.channels), p, (arr.shape[1], arr.shape[2]), ch)
        return np.repeat(arr, 3, axis=0) if ch == 1 else arr

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self.read(int(idx))
        if isinstance(idx, slice):
            idx = range(*idx.indices(len(self)))
        idx = np.asarray(idx)
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        if idx.size == 0:
            return np.empty((0,) + self.shape[1:], dtype=np.uint8)
        return np.stack([self.read(int(i)) for i in idx.reshape(-1)]).reshape(idx.shape + self.shape[1:])


class StreamedFolder(ImageDataset):
    """An ImageFolder whose images stay on disk (:class:`FolderImages`); the file list and
    labels are in memory.  Same interface as :class:`ImageDataset`."""

    def __init__(self, root: Path, classes: list[str], files: list[tuple[Path, int]], hw: tuple[int, int],
                 channels: int, decoded_mb: float) -> None:
        self.root = Path(root)
        self.images = FolderImages([p for p, _ in files], hw, channels)  # type: ignore[assignment]
        self.labels = np.array([c for _, c in files], dtype=np.int64)
        self.classes = list(classes)
        self.source = str(root)
        self.description = (f"image folder {root}: {len(files)} images, {len(classes)} classes, {hw[1]}x{hw[0]}, "
                            f"streamed from disk ({decoded_mb:.0f} MB decoded)")
        self._fingerprint = None
        _check_classes(self.labels, self.classes, self.source)

    @property
    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) of the image size, the files' relative paths, sizes and labels, and the class names."""
        if self._fingerprint is None:
            h = hashlib.sha256(f"streamed {self.images.shape}".encode())
            for p, c in zip(self.images.paths, self.labels):
                h.update(f"{p.relative_to(self.root).as_posix()}\0{p.stat().st_size}\0{c}\n".encode())
            h.update("\0".join(self.classes).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def channel_stats(self, idx: np.ndarray | None = None) -> tuple[list[float], list[float]]:
        """Per-channel mean and std (pixel values in [0, 1]) over ``idx`` (all images if None),
        from a seeded sample of at most :data:`STATS_SAMPLE` of them."""
        idx = np.arange(self.n) if idx is None else np.asarray(idx)
        if len(idx) > STATS_SAMPLE:
            idx = np.sort(np.random.default_rng(0).choice(idx, STATS_SAMPLE, replace=False))
        s1, s2, n = np.zeros(3), np.zeros(3), 0
        for k in range(0, len(idx), 256):
            x = self.images[idx[k:k + 256]].astype(np.float64) / 255.0
            s1 += x.sum(axis=(0, 2, 3))
            s2 += (x * x).sum(axis=(0, 2, 3))
            n += x.shape[0] * x.shape[2] * x.shape[3]
        mean = s1 / max(n, 1)
        std = np.maximum(np.sqrt(np.maximum(s2 / max(n, 1) - mean * mean, 0.0)), 1e-3)
        return [float(v) for v in mean], [float(v) for v in std]

    def describe(self) -> dict:
        return super().describe() | {"storage": "streamed"}
