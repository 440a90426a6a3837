"""int8 precision: static QDQ quantization with ONNX Runtime's quantization tool.

A device with ``precision = "int8"`` runs every model through :func:`quantize_int8` before
it is timed, profiled per kernel or predicted: activations uint8 (asymmetric), weights int8
per output channel where ORT supports it (U8S8, ORT's recommended format on x86 CPUs),
MinMax calibration on seeded random inputs.  Random calibration data gives different scales
from real images, but the same graph, kernels and therefore latency.
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
import onnx

from .errors import HwnasError, first_line

CALIBRATION_SAMPLES = 4


class _SeededReader:
    """Calibration inputs: ``n`` seeded standard-normal batches for every graph input."""

    def __init__(self, model: onnx.ModelProto, n: int, seed: int) -> None:
        from .onnx_io import check_feed_size

        inits = {i.name for i in model.graph.initializer}
        rng = np.random.default_rng(seed)
        self._batches = []
        feeds = []
        for vi in model.graph.input:
            if vi.name in inits:
                continue
            dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            if any(d <= 0 for d in dims):
                raise HwnasError(f"input {vi.name!r} has a dynamic shape; int8 calibration needs static shapes")
            feeds.append((vi.name, dims, np.float32))
        check_feed_size(feeds, copies=n, what=f"int8 calibration inputs ({n} batches)")  # before anything is drawn
        for _ in range(n):
            # drawn in float64 and cast, as always: the same calibration values, so the same scales
            # and quantized graphs as profiles made before
            self._batches.append({name: rng.standard_normal(dims).astype(np.float32) for name, dims, _ in feeds})
        self._it = iter(self._batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches)


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type in ("QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger") for n in model.graph.node)


def quantize_int8(model: onnx.ModelProto, *, seed: int = 0, samples: int = CALIBRATION_SAMPLES) -> onnx.ModelProto:
    """A static QDQ int8 copy of ``model`` (fp32 in and out).  Already-quantized models pass through."""
    if is_quantized(model):
        return model
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="hwnas-int8-") as tmp:
        out = os.path.join(tmp, "int8.onnx")
        src = os.path.join(tmp, "fp32.onnx")
        onnx.save(model, src)  # the tool may rewrite a ModelProto given to it in place
        import onnxruntime as ort

        # the tool logs advice ("consider pre-processing") on every call, and its calibration
        # sessions warn about the initializers QDQ leaves unused: errors only
        quiet = logging.root.manager.disable
        logging.disable(logging.WARNING)
        ort.set_default_logger_severity(3)
        try:
            quantize_static(
                src,
                out,
                _SeededReader(model, samples, seed),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                calibration_providers=["CPUExecutionProvider"],
            )
        except HwnasError:
            raise
        except Exception as e:  # the quantization tool raises assorted types
            raise HwnasError(f"int8 quantization failed: {first_line(e)}") from None
        finally:
            logging.disable(quiet)
        q = onnx.load(out)  # reads any external weights before the folder goes
        onnx.external_data_helper.convert_model_from_external_data(q)
        return q


def for_device(model, precision: str, *, seed: int = 0):
    """``model`` (proto, bytes or path) as a device of ``precision`` runs it; fp32 passes through."""
    if precision != "int8":
        return model
    if isinstance(model, bytes):
        model = onnx.load_from_string(model)
    elif isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    return quantize_int8(model, seed=seed)
