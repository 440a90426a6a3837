"""An AutoFormer-style weight-sharing super-transformer for the vit space (accuracy estimator).

One network at the space's largest shape -- largest embed ``E``, largest MLP ratio, largest depth
-- whose weights every architecture of the space shares (*weight entanglement*).  A subnet
``arch`` uses

* patch embedding: the first ``arch.embed`` output channels of one conv (kernel = stride = the
  proxy patch), its bias, the class token's first ``embed`` channels;
* position embedding: the class token's entry and the top-left ``g x g`` corner of the largest
  ``G x G`` patch grid, first ``embed`` channels (``g`` = the subnet's proxy grid);
* layer ``i < depth``: both LayerNorms' first ``embed`` weights and biases; the fused QKV matrix's
  first ``embed`` rows of each of Q, K, V and first ``embed`` columns; the projection's
  ``embed x embed`` corner; the MLP's first ``mlp * embed`` hidden units;
* the final LayerNorm and the classifier's first ``embed`` input columns.

Heads.  In this space the QKV width equals ``embed`` (``layer_params``: ``3 e^2``), so the head
dimension is ``embed / heads``: it is *not* fixed (AutoFormer fixes 64 and varies the QKV width).
A subnet's heads therefore partition the same first ``embed`` Q/K/V channels into ``heads``
groups: the number of heads changes the attention pattern, not which weights are used, and not
the parameter count (as in :func:`hwnas.spaces.vit.layer_params`).

Proxy task (the 32 px images of ``builtin:digits`` / ``builtin:shapes``).  The space's patch 16
at 160-224 px gives 10x10-14x14 patch grids; the proxy keeps the *relative* scale: the space's
largest resolution maps to the dataset's native size (as the CNN supernet's
:func:`hwnas.accuracy.data.input_size` does) and the patch is divided by the same factor,
rounded, so that the grid stays ``resolution / patch`` scaled: at 32 px, patch 16 -> 4 px (16 x
32 / 224 = 2.3 would give 256 tokens, too slow on a CPU; we use ``PROXY_PATCH_DIVISOR`` = 4),
and r224 / r192 / r160 -> 32 / 28 / 24 px -> 8x8 / 7x7 / 6x6 grids (65 / 50 / 37 tokens
instead of 197 / 145 / 101).  The class count is the dataset's (10 / 12), not 1000.  So a
subnet's parameter count equals :func:`hwnas.spaces.vit.vit_cost` of its *proxy* architecture
(:func:`proxy_arch`) with the dataset's classes; the encoder layers' params are exactly the
space's ``layer_params``; only the stem (position table, conv kernel) and the head differ.

A supernet needs one patch size (the default space has one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .vit import VitArch, VitSpace

PROXY_PATCH_DIVISOR = 4
"""The space's patch size divided by this is the patch on the 32 px proxy images (16 -> 4 px)."""


@dataclass(frozen=True)
class ProxyGeometry:
    """How the space's patch / resolutions map to the proxy dataset's images (``native_px`` square)."""

    native_px: int
    patch_px: int
    input_px: dict[int, int]  # the space's resolution -> proxy input size (px, a multiple of patch_px)

    @property
    def max_grid(self) -> int:
        return max(self.input_px.values()) // self.patch_px

    def to_dict(self) -> dict:
        return {"native_px": self.native_px, "patch_px": self.patch_px,
                "input_px": {str(k): v for k, v in self.input_px.items()}}


def proxy_geometry(space: VitSpace, native_px: int) -> ProxyGeometry:
    """Proxy patch and input sizes (see the module docstring); one-line InputError when impossible."""
    if len(space.patches) != 1:
        raise InputError(f"the vit supernet needs one patch size; the space has {list(space.patches)}")
    pp = max(1, space.patches[0] // PROXY_PATCH_DIVISOR)
    top = max(space.resolutions)
    px = {r: max(pp, int(round(native_px * r / top / pp)) * pp) for r in space.resolutions}
    if max(px.values()) > native_px:
        raise InputError(f"{native_px} px images are too small for proxy patch {pp} px")
    return ProxyGeometry(int(native_px), pp, px)


def proxy_arch(arch: VitArch, geo: ProxyGeometry) -> VitArch:
    """``arch`` at the proxy task's patch and input size (same embed and layers)."""
    return VitArch(geo.patch_px, geo.input_px[arch.resolution], arch.embed, arch.layers)


def init_vit_weights(model: nn.Module) -> nn.Module:
    """The super-transformer's initialisation, also of a stand-alone subnet (``pos`` and
    ``cls_token`` parameters): truncated normal (std 0.02) position embedding, class token and
    every linear / attention projection weight; zero biases.  Draws from torch's current generator."""
    nn.init.trunc_normal_(model.pos, std=0.02)
    nn.init.trunc_normal_(model.cls_token, std=0.02)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.MultiheadAttention):
            nn.init.trunc_normal_(m.in_proj_weight, std=0.02)
            nn.init.zeros_(m.in_proj_bias)
    return model


class _SuperLayer(nn.Module):
    """One pre-LN encoder layer at the largest width; :meth:`forward` slices it."""

    def __init__(self, e_max: int, hidden_max: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(e_max)
        self.qkv = nn.Linear(e_max, 3 * e_max)
        self.proj = nn.Linear(e_max, e_max)
        self.ln2 = nn.LayerNorm(e_max)
        self.fc1 = nn.Linear(e_max, hidden_max)
        self.fc2 = nn.Linear(hidden_max, e_max)

    def sliced(self, e: int, hidden: int) -> dict[str, torch.Tensor]:
        """The subnet's weights (views of the shared ones), named as in :class:`VitModel`'s layer."""
        E = self.ln1.weight.shape[0]
        return {
            "ln1.weight": self.ln1.weight[:e], "ln1.bias": self.ln1.bias[:e],
            "attn.in_proj_weight": self.qkv.weight.view(3, E, E)[:, :e, :e].reshape(3 * e, e),
            "attn.in_proj_bias": self.qkv.bias.view(3, E)[:, :e].reshape(3 * e),
            "attn.out_proj.weight": self.proj.weight[:e, :e], "attn.out_proj.bias": self.proj.bias[:e],
            "ln2.weight": self.ln2.weight[:e], "ln2.bias": self.ln2.bias[:e],
            "fc1.weight": self.fc1.weight[:hidden, :e], "fc1.bias": self.fc1.bias[:hidden],
            "fc2.weight": self.fc2.weight[:e, :hidden], "fc2.bias": self.fc2.bias[:e],
        }

    def forward(self, x: torch.Tensor, heads: int, hidden: int) -> torch.Tensor:
        B, T, e = x.shape
        w = self.sliced(e, hidden)
        h = F.layer_norm(x, (e,), w["ln1.weight"], w["ln1.bias"])
        q, k, v = F.linear(h, w["attn.in_proj_weight"], w["attn.in_proj_bias"]) \
            .view(B, T, 3, heads, e // heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, e)
        x = x + F.linear(a, w["attn.out_proj.weight"], w["attn.out_proj.bias"])
        h = F.layer_norm(x, (e,), w["ln2.weight"], w["ln2.bias"])
        h = F.gelu(F.linear(h, w["fc1.weight"], w["fc1.bias"]))
        return x + F.linear(h, w["fc2.weight"], w["fc2.bias"])


class SuperVit(nn.Module):
    """The super-transformer of ``space`` on a proxy task with ``n_classes`` classes and
    ``native_px`` square images; ``forward(x, arch)`` runs the subnet ``arch`` on ``x`` already
    at ``geometry.input_px[arch.resolution]`` pixels (:meth:`resize`)."""

    def __init__(self, space: VitSpace, n_classes: int, native_px: int) -> None:
        super().__init__()
        self.space, self.n_classes = space, int(n_classes)
        self.geometry = proxy_geometry(space, native_px)
        E, p, G = max(space.embeds), self.geometry.patch_px, self.geometry.max_grid
        self.patch = nn.Conv2d(3, E, p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, E))
        self.pos = nn.Parameter(torch.zeros(1, 1 + G * G, E))
        self.layers = nn.ModuleList(_SuperLayer(E, max(space.mlp_ratios) * E) for _ in range(space.max_depth))
        self.norm = nn.LayerNorm(E)
        self.head = nn.Linear(E, self.n_classes)
        init_vit_weights(self)

    def meta(self) -> dict:
        return {"space": self.space.to_dict(), "n_classes": self.n_classes, "geometry": self.geometry.to_dict()}

    def check(self, arch: VitArch) -> VitArch:
        try:
            return self.space.validate(arch)
        except ValueError as e:
            raise InputError(f"{arch} is outside the supernet's vit space: {e}") from None

    def resize(self, x: torch.Tensor, arch: VitArch) -> torch.Tensor:
        return resize_px(x, self.geometry.input_px[arch.resolution])

    def stem_weights(self, arch: VitArch, grid: int) -> dict[str, torch.Tensor]:
        e, G = arch.embed, self.geometry.max_grid
        pos = self.pos[:, 1:].view(1, G, G, -1)[:, :grid, :grid, :e].reshape(1, grid * grid, e)
        return {"patch.weight": self.patch.weight[:e], "patch.bias": self.patch.bias[:e],
                "cls_token": self.cls_token[:, :, :e], "pos": torch.cat([self.pos[:, :1, :e], pos], 1),
                "norm.weight": self.norm.weight[:e], "norm.bias": self.norm.bias[:e],
                "head.weight": self.head.weight[:, :e], "head.bias": self.head.bias}

    def forward(self, x: torch.Tensor, arch: VitArch) -> torch.Tensor:
        e = arch.embed
        grid = x.shape[-1] // self.geometry.patch_px
        w = self.stem_weights(arch, grid)
        x = F.conv2d(x, w["patch.weight"], w["patch.bias"], stride=self.geometry.patch_px)
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([w["cls_token"].expand(x.shape[0], -1, -1), x], 1) + w["pos"]
        for layer, block in zip(arch.layers, self.layers):
            x = block(x, layer.heads, layer.mlp * e)
        x = F.layer_norm(x[:, 0], (e,), w["norm.weight"], w["norm.bias"])
        return F.linear(x, w["head.weight"], w["head.bias"])


class _Layer(nn.Module):
    def __init__(self, e: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(e)
        self.attn = nn.MultiheadAttention(e, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(e)
        self.fc1 = nn.Linear(e, hidden)
        self.fc2 = nn.Linear(hidden, e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class VitModel(nn.Module):
    """A stand-alone vit (built from ``torch.nn`` modules, no slicing) for one proxy architecture."""

    def __init__(self, arch: VitArch, n_classes: int) -> None:
        super().__init__()
        e, self.arch = arch.embed, arch
        self.patch = nn.Conv2d(3, e, arch.patch, stride=arch.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e))
        self.pos = nn.Parameter(torch.zeros(1, arch.tokens, e))
        self.layers = nn.ModuleList(_Layer(e, x.heads, x.mlp * e) for x in arch.layers)
        self.norm = nn.LayerNorm(e)
        self.head = nn.Linear(e, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x[:, 0]))


def subnet_state(net: SuperVit, arch: VitArch) -> dict[str, torch.Tensor]:
    """The subnet's weights (copies), keyed as :class:`VitModel`'s state dict."""
    net.check(arch)
    grid = net.geometry.input_px[arch.resolution] // net.geometry.patch_px
    out = dict(net.stem_weights(arch, grid))
    for i, (layer, block) in enumerate(zip(arch.layers, net.layers)):
        out.update({f"layers.{i}.{k}": v for k, v in block.sliced(arch.embed, layer.mlp * arch.embed).items()})
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def extract_vit(net: SuperVit, arch: VitArch) -> VitModel:
    """A stand-alone :class:`VitModel` carrying the subnet's inherited weights."""
    model = VitModel(proxy_arch(arch, net.geometry), net.n_classes)
    model.load_state_dict(subnet_state(net, arch), strict=True)
    return model.eval()


def subnet_params(net: SuperVit, arch: VitArch) -> int:
    """Number of shared weights the subnet uses."""
    return int(sum(v.numel() for v in subnet_state(net, arch).values()))


def resize_px(x: torch.Tensor, px: int) -> torch.Tensor:
    """Images ``[N, C, H, W]`` resized to ``px`` x ``px`` (bilinear, antialiased; unchanged if already so)."""
    if x.shape[-1] == px and x.shape[-2] == px:
        return x
    return F.interpolate(x, size=(px, px), mode="bilinear", align_corners=False, antialias=True)


def normalize(images_u8: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` -> float tensor normalized per channel."""
    x = torch.from_numpy(np.ascontiguousarray(images_u8)).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


@torch.no_grad()
def evaluate_vit_archs(net: SuperVit, x: torch.Tensor, y: torch.Tensor, archs: list[VitArch],
                       batch_size: int = 256, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 % of each subnet on ``(x, y)`` (normalized images at native size) and the per-image
    correctness ``bool [n_archs, n_images]`` (for :func:`hwnas.accuracy.noise.accuracy_noise`)."""
    was = net.training
    net.eval()
    items = np.zeros((len(archs), len(y)), dtype=bool)
    try:
        for a_i, arch in enumerate(archs):
            net.check(arch)
            items[a_i] = correct_per_image(lambda xb, a=arch: net(net.resize(xb, a), a), x, y, batch_size)
            if progress is not None:
                progress(a_i + 1, len(archs))
    finally:
        net.train(was)
    return 100.0 * items.mean(axis=1), items


@torch.no_grad()
def correct_per_image(forward, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """``bool [n_images]``: whether ``forward`` (images at native size -> logits) gets each of
    ``(x, y)`` right, in batches of ``batch_size``."""
    out = np.zeros(len(y), dtype=bool)
    for s in range(0, len(y), batch_size):
        out[s:s + batch_size] = (forward(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).numpy()
    return out


__all__ = ["PROXY_PATCH_DIVISOR", "ProxyGeometry", "proxy_geometry", "proxy_arch", "SuperVit", "VitModel",
           "subnet_state", "extract_vit", "subnet_params", "resize_px", "normalize", "evaluate_vit_archs", "correct_per_image"]
