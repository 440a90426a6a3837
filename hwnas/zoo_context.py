"""The graph context the zoo families are built with (:mod:`hwnas.zoo`, :mod:`hwnas.zoo_cnn`,
:mod:`hwnas.zoo_cnn_extra`, :mod:`hwnas.zoo_sealed`, :mod:`hwnas.zoo_transformers`).

:class:`_ZooContext` extends the search space's graph context (:mod:`hwnas.builders.onnx_graph`)
with ReLU6, swish, pools, real batch norms, int64 constants and convs whose activation is any of
those; :func:`_ch` rounds channels, :func:`_meta` is the ``hwnas.zoo`` metadata of a model.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from .builders.onnx_graph import _GAIN2, _GraphContext
from .layers import make_divisible

__all__ = ["_ZooContext", "_ch", "_meta"]

# 1 / E[act(z)^2] for z ~ N(0, 1): ReLU6 behaves as ReLU at unit scale; swish (SiLU) ~ 1 / 0.356.
_ZOO_GAIN2 = {**_GAIN2, "relu6": 2.0, "swish": 2.8}


class _ZooContext(_GraphContext):
    """The search-space graph context plus what the zoo families need: ReLU6, swish, pools,
    real batch norms, int64 constants and convs whose activation is any of those."""

    def __init__(self, name: str, seed: int) -> None:
        super().__init__(name, None, np.random.default_rng(seed))
        self._consts: set[str] = set()

    def const(self, name: str, arr: np.ndarray) -> str:
        """Initializer ``name`` holding ``arr`` with its own dtype (int64 shapes, split sizes...)."""
        if name not in self._consts:
            self.graph.initializer.add().CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            self._consts.add(name)
        return name

    def act(self, kind: str | None, x: str, name: str) -> str:
        if kind == "relu6":
            lo = self.const("relu6.min", np.array(0.0, dtype=np.float32))
            hi = self.const("relu6.max", np.array(6.0, dtype=np.float32))
            return self.node("Clip", [x, lo, hi], name)
        if kind == "swish":
            s = self.node("Sigmoid", [x], f"{name}.sigmoid")
            return self.node("Mul", [x, s], name)
        return super().act(kind, x, name)

    def conv(
        self,
        scope: str,
        x: str,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        act: str | None = None,
        gain: float = 1.0,
    ) -> str:
        """Conv + folded BN (node ``scope``, pad ``kernel // 2``) and activation ``scope.act``."""
        g = gain * math.sqrt(_ZOO_GAIN2[act])
        y = self.conv_bn(scope, x, in_ch, out_ch, kernel, stride, groups, act=None, gain=g)
        return self.act(act, y, f"{scope}.act")

    def batchnorm(self, scope: str, x: str, ch: int) -> str:
        """A real (unfoldable) ``BatchNormalization`` with near-identity seeded statistics."""
        scale = self._init(f"{scope}.weight", 1.0 + self._uniform((ch,), 0.1))
        bias = self._init(f"{scope}.bias", self._uniform((ch,), 0.05))
        mean = self._init(f"{scope}.running_mean", self._uniform((ch,), 0.05))
        var = self._init(f"{scope}.running_var", 1.0 + self._uniform((ch,), 0.1))
        return self.node("BatchNormalization", [x, scale, bias, mean, var], scope, epsilon=1e-5)

    def split(self, name: str, x: str, sizes: Sequence[int], axis: int = 1) -> list[str]:
        """``Split`` node ``name`` of ``x`` into parts of ``sizes``, outputs ``name.0``, ``name.1``..."""
        key = "split." + "_".join(map(str, sizes))
        sizes_t = self.const(key, np.array(sizes, dtype=np.int64))
        outs = [f"{name}.{i}" for i in range(len(sizes))]
        self._nodes.append(onnx.helper.make_node("Split", [x, sizes_t], outs, name=name, axis=axis))
        return outs

    def pool(self, op: str, scope: str, x: str, kernel: int, stride: int, pad: int = 0, ceil: bool = False) -> str:
        attrs: dict[str, Any] = dict(kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
        if ceil:
            attrs["ceil_mode"] = 1
        return self.node(op, [x], scope, **attrs)

    def classifier(self, x: str, in_ch: int, n_classes: int, scope: str = "fc") -> str:
        """``GlobalAveragePool`` + ``Flatten`` + ``Gemm`` to ``output``."""
        y = self.node("GlobalAveragePool", [x], "avgpool")
        y = self.node("Flatten", [y], "flatten", axis=1)
        return self.linear(scope, y, in_ch, n_classes, "output")

    def done(self, batch: int, resolution: int, n_classes: int, meta: dict[str, Any]) -> onnx.ModelProto:
        model = self.finish([batch, 3, resolution, resolution], "output", [batch, n_classes])
        model.producer_name = "hwnas.zoo"
        p = model.metadata_props.add()
        p.key, p.value = "hwnas.zoo", json.dumps(meta, sort_keys=True)
        return model


def _ch(v: float, divisor: int = 8) -> int:
    return make_divisible(v, divisor)


def _meta(family: str, **kw: Any) -> dict[str, Any]:
    return {"family": family, **{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}}

