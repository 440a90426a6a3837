"""benchmarks/cache_state.py: the kernel it cuts out of a model is that model's kernel."""

import numpy as np
import onnxruntime as ort
import pytest

from conftest import load_benchmark
from hwnas.devices import load_device
from hwnas.zoo_transformers import build_vit


@pytest.fixture(scope="module")
def cache_state():
    return load_benchmark("cache_state")


def test_extracted_patch_conv_computes_what_the_model_computes(cache_state):
    full = build_vit(width=64, depth=1, heads=2, patch=16, resolution=64, n_classes=10)
    alone, node, shape = cache_state._extract(full, "Conv", 0)
    assert [n.op_type for n in alone.graph.node] == ["Conv"]
    assert shape == (1, 3, 64, 64)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = ort.InferenceSession(alone.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    w = {i.name: i for i in full.graph.initializer}
    from onnx import numpy_helper

    weight = numpy_helper.to_array(w[node.input[1]])
    bias = numpy_helper.to_array(w[node.input[2]])
    # stride = kernel: each output pixel is one patch times the weights
    patches = x.reshape(1, 3, 4, 16, 4, 16).transpose(0, 2, 4, 1, 3, 5).reshape(16, -1)
    want = (patches @ weight.reshape(64, -1).T + bias).T.reshape(1, 64, 4, 4)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_profile_finds_the_kernel_warm_and_cold(cache_state):
    full = build_vit(width=64, depth=1, heads=2, patch=16, resolution=64, n_classes=10)
    alone, _, shape = cache_state._extract(full, "Conv", 0)
    device = load_device("cpu-1t")
    evict = np.ones(2**20, np.float32)
    for model in (full, alone):
        for buf in (None, evict):
            assert cache_state._profile(model, device, "Conv", shape, 2, buf) > 0
    assert evict[0] == 1.0 + 2 * 5  # written before each of the 3 warm-up and 2 timed runs, for both graphs


def test_bad_options_are_one_line_errors(cache_state, capsys):
    assert cache_state.main(["--rounds", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
