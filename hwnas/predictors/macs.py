"""The MACs baseline: latency = a * MACs + b (variant ``macs+``: + c * params + d * bytes moved).

It exists to be beaten, and to put a number on how far MACs mislead on a device.  Works on
architectures (analytic MACs) and on any ONNX model (MACs from shape inference).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..cost import arch_cost
from ..layers import plan
from ..profile import Profile
from .base import LatencyPredictor, TargetSpec, finite_array, require_archs, saved_positive
from .data import arch_data

FEATURES = {"macs": ("macs",), "macs+": ("macs", "params", "bytes")}


def arch_bytes(arch) -> int:
    """Bytes moved by the convolutions and the classifier (fp32 inputs + outputs + weights)."""
    p = plan(arch)
    total = 0
    s = p.stem
    total += 3 * s.in_res**2 + s.out_ch * s.out_res**2 + 27 * s.out_ch
    for b in p.all_blocks():
        mid = b.mid_ch
        if b.expand != 1:
            total += b.in_ch * b.in_res**2 + mid * b.in_res**2 + b.in_ch * mid
        total += mid * b.in_res**2 + mid * b.out_res**2 + mid * b.kernel**2
        total += mid * b.out_res**2 + b.out_ch * b.out_res**2 + mid * b.out_ch
    h = p.head
    total += h.in_ch * h.in_res**2 + h.final_expand * h.in_res**2 + h.in_ch * h.final_expand
    total += h.final_expand + h.last_ch + h.final_expand * h.last_ch + h.last_ch * (1 + h.n_classes) + h.n_classes
    return 4 * total


def onnx_bytes(model) -> int:
    """Bytes moved by Conv/Gemm/MatMul nodes of an ONNX model (fp32 inputs + outputs)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if dims and all(d > 0 for d in dims):
            shapes[vi.name] = dims
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for node in inferred.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            for t in list(node.input) + list(node.output):
                if t in shapes:
                    total += int(np.prod(shapes[t]))
    return 4 * total


def target_features(spec: TargetSpec, names: Sequence[str]) -> list[float]:
    if spec.arch is not None:
        c = arch_cost(spec.arch)
        vals = {"macs": c.macs, "params": c.params}
        if "bytes" in names:
            vals["bytes"] = arch_bytes(spec.arch)
    else:
        from ..onnx_io import onnx_macs, onnx_params

        vals = {"macs": onnx_macs(spec.model), "params": onnx_params(spec.model)}
        if "bytes" in names:
            vals["bytes"] = onnx_bytes(spec.model)
    return [float(vals[n]) for n in names]


class MacsPredictor(LatencyPredictor):
    """Linear in MACs (``features="macs"``) or in MACs, params and bytes (``"macs+"``)."""

    name = "macs"
    handles_onnx = True
    min_archs = 3

    def __init__(self, features: str = "macs") -> None:
        self.features = features

    @property
    def label(self) -> str:
        return self.features

    def fit(self, profile: Profile, archs: Sequence[str] | None = None) -> "MacsPredictor":
        if self.features not in FEATURES:
            raise ValueError(f"unknown feature set {self.features!r}; choose from {sorted(FEATURES)}")
        names = FEATURES[self.features]
        data = arch_data(profile, archs)
        require_archs(self.name, len(data.archs), len(names) + 2)
        X = np.array([target_features(TargetSpec(str(a), arch=a), names) for a in data.archs])
        self.scale_ = X.max(axis=0)
        Xs = X / self.scale_
        A = np.hstack([Xs, np.ones((len(Xs), 1))])
        coef, *_ = np.linalg.lstsq(A, data.relative, rcond=None)
        self.coef_ = coef.tolist()
        self.space_ = profile.space
        self.canary_reference_ms_ = profile.canary_reference_ms
        return self

    def _predict_relative(self, specs: Sequence[TargetSpec]) -> np.ndarray:
        names = FEATURES[self.features]
        X = np.array([target_features(s, names) for s in specs]) / np.asarray(self.scale_)
        return X @ np.asarray(self.coef_[:-1]) + self.coef_[-1]

    def to_dict(self) -> dict:
        self._check_fitted()
        return {"name": self.name, "params": self.get_params(), "space": self.space_.to_dict(),
                "canary_reference_ms": self.canary_reference_ms_, "coef": self.coef_,
                "scale": list(map(float, self.scale_))}

    @classmethod
    def from_dict(cls, d: dict) -> "MacsPredictor":
        from ..space import SearchSpace

        p = cls(**d["params"])
        if p.features not in FEATURES:
            raise ValueError(f"unknown feature set {p.features!r}")
        p.coef_ = [float(x) for x in finite_array(d["coef"], "coef")]
        p.scale_ = finite_array(d["scale"], "scale")
        if (p.scale_ <= 0).any():
            raise ValueError("scale must be positive")
        if len(p.coef_) != len(FEATURES[p.features]) + 1 or len(p.scale_) != len(FEATURES[p.features]):
            raise ValueError("coefficient count does not match the feature set")
        p.space_ = SearchSpace.from_dict(d["space"])
        p.canary_reference_ms_ = saved_positive(d["canary_reference_ms"], "canary_reference_ms")
        return p
