"""ONNX graphs of the vit space, built directly (no torch export), with the op patterns of the
ViT zoo family (:mod:`hwnas.zoo_transformers`): ORT fuses them the same way (``Gelu``,
``SkipLayerNormalization``, ``FusedMatMul``).

* :func:`build_vit_onnx` -- a whole architecture, ``input [B, 3, r, r]`` -> ``output [B, classes]``;
* the block lookup table's parts: :func:`build_stem` (patch embedding, class token, positions:
  image -> ``[B, T, E]``), :func:`build_layer` (one encoder layer at (embed, heads, mlp, tokens):
  ``[B, T, E]`` -> ``[B, T, E]``) and :func:`build_head` (final LayerNorm, class token, linear:
  ``[B, T, E]`` -> ``[B, classes]``).

Opset 17, static shapes, seeded weights.
"""

from __future__ import annotations

import json
import math

import onnx
from onnx import TensorProto, helper

from ..zoo_transformers import _TransformerContext
from .vit import N_CLASSES, VitArch


def _ctx(name: str, seed: int) -> _TransformerContext:
    return _TransformerContext(name, seed)


def _emit_stem(ctx: _TransformerContext, x: str, patch: int, resolution: int, embed: int, batch: int) -> str:
    side = resolution // patch
    w = ctx._init("patch_embed.weight", ctx._uniform((embed, 3, patch, patch), math.sqrt(3.0 / (3 * patch * patch))))
    b = ctx._init("patch_embed.bias", ctx._uniform((embed,), 0.02))
    x = ctx.node("Conv", [x, w, b], "patch_embed", kernel_shape=[patch, patch], strides=[patch, patch])
    x = ctx.tokens_from_map(x, embed, side)
    tokens = side * side + 1
    cls = ctx._init("cls_token", ctx._uniform((batch, 1, embed), 0.02))
    x = ctx.node("Concat", [cls, x], "cat_tokens", axis=1)
    return ctx.node("Add", [x, ctx._init("pos_embed", ctx._uniform((1, tokens, embed), 0.02))], "pos_add")


def _emit_head(ctx: _TransformerContext, x: str, embed: int, n_classes: int) -> str:
    x = ctx.layernorm("norm", x, embed)
    x = ctx.node("Gather", [x, ctx._index(0)], "cls_select", axis=1)
    return ctx.head(x, embed, n_classes)


def _finish(ctx: _TransformerContext, in_shape: list[int], out_shape: list[int], meta: dict) -> onnx.ModelProto:
    g = ctx.graph
    g.node.extend(ctx._nodes)
    g.input.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape))
    g.output.append(helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape))
    model = ctx.model
    model.producer_name = "hwnas.spaces.vit"
    p = model.metadata_props.add()
    p.key, p.value = "hwnas.vit", json.dumps(meta, sort_keys=True)
    return model


def build_vit_onnx(arch: VitArch, batch: int = 1, n_classes: int = N_CLASSES, seed: int = 0) -> onnx.ModelProto:
    """The whole architecture as one ONNX graph."""
    ctx = _ctx(f"vit_space_{arch.embed}_{arch.depth}", seed)
    x = _emit_stem(ctx, "input", arch.patch, arch.resolution, arch.embed, batch)
    for i, layer in enumerate(arch.layers):
        x = ctx.vit_layer(f"blocks.{i}", x, arch.tokens, arch.embed, layer.heads, float(layer.mlp))
    _emit_head(ctx, x, arch.embed, n_classes)
    return _finish(ctx, [batch, 3, arch.resolution, arch.resolution], [batch, n_classes], {"arch": str(arch)})


def build_stem(patch: int, resolution: int, embed: int, batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """Patch embedding + class token + position embedding: image -> ``[B, T, E]``."""
    ctx = _ctx(f"vit_stem_p{patch}_r{resolution}_e{embed}", seed)
    x = _emit_stem(ctx, "input", patch, resolution, embed, batch)
    tokens = (resolution // patch) ** 2 + 1
    ctx._nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    return _finish(ctx, [batch, 3, resolution, resolution], [batch, tokens, embed], {"part": "stem"})


def build_layer(tokens: int, embed: int, heads: int, mlp: int, batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """One encoder layer on ``[B, T, E]`` tokens."""
    ctx = _ctx(f"vit_layer_t{tokens}_e{embed}_h{heads}_m{mlp}", seed)
    x = ctx.vit_layer("blocks.0", "input", tokens, embed, heads, float(mlp))
    ctx._nodes.append(helper.make_node("Identity", [x], ["output"], name="output"))
    return _finish(ctx, [batch, tokens, embed], [batch, tokens, embed], {"part": "layer"})


def build_head(tokens: int, embed: int, batch: int = 1, n_classes: int = N_CLASSES, seed: int = 0) -> onnx.ModelProto:
    """Final LayerNorm, class-token select and linear head: ``[B, T, E]`` -> ``[B, classes]``."""
    ctx = _ctx(f"vit_head_t{tokens}_e{embed}", seed)
    _emit_head(ctx, "input", embed, n_classes)
    return _finish(ctx, [batch, tokens, embed], [batch, n_classes], {"part": "head"})


__all__ = ["build_vit_onnx", "build_stem", "build_layer", "build_head"]
