import collections

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hwnas.devices import load_device
from hwnas.measure import MeasureConfig
from hwnas.profile import ProfilePlan, build_profile
from hwnas.space import SearchSpace

TINY_SPACE = SearchSpace(resolutions=(128,), width_mults=(1.0,))
TINY_PLAN = ProfilePlan(n_archs=36, n_kernels=24, n_token_kernels=6, n_lrn_kernels=2, n_patch_kernels=2, n_fc_kernels=0,
                        n_attention_kernels=0, n_fused_act_kernels=2,
                        n_kernel_profiles=3,
                        zoo_per_family=1, time_budget_min=10)


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory):
    """A real (small, quickly timed) cpu-1t profile: one resolution, one width."""
    d = tmp_path_factory.mktemp("prof") / "cpu-1t"
    # short timings, but enough rounds that a busy machine cannot scramble the ranking
    config = MeasureConfig(warmup_runs=1, warmup_s=0.0, rounds=3, max_rounds=6, round_min_runs=5, round_min_s=0.01,
                           canary_min_runs=3, canary_min_s=0.005)
    reports = build_profile(load_device("cpu-1t"), d, TINY_PLAN, space=TINY_SPACE, config=config)
    return d, reports


@pytest.fixture
def one_torch_thread():
    """Torch on one thread during a test (two threads spin on a busy machine), restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def conv_then(op: str, **attrs) -> onnx.ModelProto:
    """Conv (8 -> 16 channels, 12 x 12) followed by one ``op`` node."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 12, 12])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 16, 12, 12])
    w = onnx.numpy_helper.from_array(np.full((16, 8, 3, 3), 0.01, np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node(op, ["c"], ["output"], name=op.lower(), **attrs)]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def kernel_signature(records) -> collections.Counter:
    """Kernel records as a multiset of (op type, shapes, attributes): what two ways of listing a
    model's kernels must agree on."""
    return collections.Counter((r.op_type, r.input_shapes, r.output_shapes, str(sorted(r.attributes.items())))
                               for r in records)


def fitted_kernel_predictor(families: dict, op_base: dict[str, float]):
    """A kernel predictor in the state a fit leaves, with constant ``families`` (``{family: log rate}``)
    and per-op base rates ``op_base``: no profile needed."""
    from hwnas.predictors.kernel import KernelPredictor
    from hwnas.predictors.kernel_features import FEATURE_NAMES

    kp = KernelPredictor()
    kp.families_ = {f: {"rows": 9, "constant": c, "base": 0.0} for f, c in families.items()}
    kp.fallback_log_rate_ = -2.0
    kp.op_base_ = op_base
    kp.model_op_codes_ = []
    kp.n_features_ = len(FEATURE_NAMES)
    kp._compiled, kp._stacked = {}, None
    return kp


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` imported as a module (the benchmarks are scripts, not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    if str(bench) not in sys.path:  # their own imports (results_io, ...) resolve from there
        sys.path.insert(0, str(bench))
    spec = importlib.util.spec_from_file_location(name, bench / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
