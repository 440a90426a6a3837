"""Zero-cost proxy: NASWOT (Mellor et al., "Neural Architecture Search without Training", ICML 2021).

The real network of an architecture (:func:`~hwnas.builders.torch_model.build_torch`, freshly
initialised from a fixed seed, batch-norm in training mode) sees one mini-batch.  Each
activation unit (every ReLU and Hardswish output element) gives each image a binary code
``x > 0``; with ``c_i`` the concatenated code of image i, the kernel
``K[i, j] = N_units - hamming(c_i, c_j)`` counts the units on which two images agree, and the
score is ``log|det K|``.  Networks whose activation patterns separate the images of a batch
score higher.

Scores are deterministic (fixed initialisation seed and batch) and cached per architecture.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..builders.torch_model import build_torch
from ..space import Arch

__all__ = ["naswot_score"]


@torch.no_grad()
def naswot_score(arch: Arch, batch: torch.Tensor, n_classes: int = 10, seed: int = 0) -> float:
    """NASWOT ``log|det K|`` of ``arch`` at initialisation on ``batch`` ``[B, 3, H, W]``."""
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = build_torch(arch, n_classes)
    finally:
        torch.random.set_rng_state(gen_state)
    model.train()
    n = batch.shape[0]
    K = torch.zeros(n, n, dtype=torch.float64)

    def hook(_m: nn.Module, _inp, out: torch.Tensor) -> None:
        c = (out.reshape(n, -1) > 0).to(torch.float64)
        K.add_(c @ c.T).add_((1.0 - c) @ (1.0 - c).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.ReLU, nn.Hardswish))]
    try:
        model(batch)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = np.linalg.slogdet(K.numpy())
    return float(logdet) if sign > 0 else float("-inf")
