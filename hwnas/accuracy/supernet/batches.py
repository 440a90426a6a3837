"""Batching and augmentation: normalised float batches of a dataset at each subnet's input
size, and the random integer shifts (zero fill) training augments them with."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...space import Arch, SearchSpace
from ..data import ImageDataset, input_size


class Batches:
    """Normalised float batches of a dataset at chosen input sizes (images kept as uint8)."""

    def __init__(self, data: ImageDataset, train_idx: np.ndarray, space: SearchSpace,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        self.data = data
        self.space = space
        if mean is None or std is None:
            mean, std = data.channel_stats(train_idx)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def size_of(self, arch: Arch) -> tuple[int, int]:
        return input_size(arch.resolution, self.data.hw, max(self.space.resolutions))

    def tensor(self, idx: np.ndarray, shifts: np.ndarray | None = None) -> torch.Tensor:
        return self.normalised(self.data.images[idx], shifts)

    def normalised(self, images: np.ndarray, shifts: np.ndarray | None = None) -> torch.Tensor:
        """Float batch of ``uint8 [n, 3, H, W]`` images: shifted (if ``shifts``), normalised, channels-last."""
        x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
        if shifts is not None:
            x = _shift(x, shifts)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    @staticmethod
    def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[2:]) == tuple(size):
            return x
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return y.contiguous(memory_format=torch.channels_last)


def _shift(x: torch.Tensor, shifts: np.ndarray) -> torch.Tensor:
    """Translate each image by integer (dy, dx) with zero fill (augmentation)."""
    n, c, h, w = x.shape
    pad = int(np.abs(shifts).max()) if shifts.size else 0
    if pad == 0:
        return x
    xp = F.pad(x, (pad, pad, pad, pad))
    out = torch.empty_like(x)
    for i, (dy, dx) in enumerate(shifts):
        out[i] = xp[i, :, pad - dy:pad - dy + h, pad - dx:pad - dx + w]
    return out


def _step_shifts(rng: np.random.Generator, n: int, hw: tuple[int, int], frac: float) -> np.ndarray | None:
    m = int(round(frac * min(hw)))
    if m <= 0:
        return None
    return rng.integers(-m, m + 1, size=(n, 2))
