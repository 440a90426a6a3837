"""The graph a device runs: ``onnxruntime.transformers``' fusions (a device option), then its precision.

A device with ``transformer_fusion = "bert"`` (or ``"vit"``, ``"swin"``, ``"gpt2"``, ``"clip"``)
passes every model through ONNX Runtime's transformer optimizer before it is timed, profiled per
kernel or predicted, as a deployment that runs ``python -m onnxruntime.transformers.optimizer`` does:
attention subgraphs it recognizes become one ``Attention`` / ``MultiHeadAttention`` kernel,
LayerNorm + residual ``SkipLayerNormalization``, GELU + bias ``BiasGelu``.  Only its own fusions
are applied (``opt_level=0``); the session then optimizes at the device's level as always.  A graph
it recognizes nothing in (a CNN, or a transformer exported in a layout its patterns do not match)
passes unchanged.  ``"none"`` (the default, and what profiles made before the option mean) leaves
every model as it is.

Then :func:`hwnas.quantize.for_device` applies the device's precision (int8: static QDQ).
"""

from __future__ import annotations

import logging
import os
import warnings

import onnx

from .devices import TRANSFORMER_FUSIONS
from .errors import HwnasError, first_line


def fuse_transformer(model, model_type: str):
    """``model`` (proto, bytes or path) after ``onnxruntime.transformers``' fusions for ``model_type``
    (heads and width detected from the graph); ``"none"`` returns it untouched."""
    if model_type == "none":
        return model
    if model_type not in TRANSFORMER_FUSIONS:
        raise HwnasError(f"unknown transformer fusion {model_type!r}; expected one of {', '.join(TRANSFORMER_FUSIONS)}")
    if isinstance(model, bytes):
        model = onnx.load_from_string(model)
    elif isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    from onnxruntime.transformers.optimizer import optimize_model

    heads, width = attention_shape(model)
    # the optimizer rewrites the graph it is given: it gets a copy, so the caller's model (and the one
    # returned when it fails) stays as it was.  It logs every pattern it could not match and every
    # shape it could not infer: errors only
    quiet = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        fused = optimize_model(_copy(model), model_type=model_type, num_heads=heads, hidden_size=width, opt_level=0)
    except Exception as e:  # the optimizer asserts on graphs it half-matches: the device runs those unfused
        warnings.warn(f"transformer fusion ({model_type}) left this model unfused: the optimizer failed "
                      f"({type(e).__name__}: {first_line(e)})", stacklevel=2)
        return model
    finally:
        logging.disable(quiet)
    return fused.model


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def attention_shape(model: onnx.ModelProto) -> tuple[int, int]:
    """(heads, width) of a transformer graph, 0 where unknown (the optimizer then looks itself).

    The optimizer reads heads from the reshape that splits them, which exporters often write as
    ``(batch, tokens, -1, head size)``; so: the width is the commonest ``LayerNormalization`` scale
    length, the head size the commonest last entry of a constant 4-element reshape target that
    divides it."""
    from collections import Counter

    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    widths = Counter(int(consts[n.input[1]].size) for n in model.graph.node
                     if n.op_type == "LayerNormalization" and len(n.input) > 1 and n.input[1] in consts)
    if not widths:
        return 0, 0
    width = widths.most_common(1)[0][0]
    sizes = Counter(int(v[-1]) for n in model.graph.node if n.op_type == "Reshape" and n.input[1] in consts
                    for v in [consts[n.input[1]].ravel()] if v.size == 4 and 0 < v[-1] < width and width % v[-1] == 0)
    if not sizes:
        return 0, width
    return width // sizes.most_common(1)[0][0], width


def device_graph(model, device, *, seed: int = 0):
    """``model`` as ``device`` runs it: its transformer fusion, then its precision."""
    from .quantize import for_device

    return for_device(fuse_transformer(model, device.transformer_fusion), device.precision, seed=seed)
