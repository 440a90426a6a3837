import pytest

from hwnas import fingerprint
from hwnas.devices import DeviceSpec, list_devices, load_device
from hwnas.errors import InputError

GOOD = """
name = "t"
description = "test"
execution_provider = "CPUExecutionProvider"
intra_op_threads = 1
inter_op_threads = 1
execution_mode = "sequential"
graph_optimization_level = "all"
precision = "fp32"
batch_size = 1
core_affinity = [0]
"""


def test_bundled_devices():
    names = {d.name for d in list_devices()}
    assert {"cpu-1t", "cpu-2t"} <= names
    d = load_device("cpu-1t")
    assert d.intra_op_threads == 1 and d.core_affinity == (0,)
    assert load_device("cpu-2t").intra_op_threads == 2
    assert DeviceSpec.from_dict(d.to_dict()) == d


def test_unknown_device_lists_known():
    with pytest.raises(InputError, match="unknown device 'cpu-9t'.*cpu-1t"):
        load_device("cpu-9t")


def test_device_file(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text(GOOD)
    assert load_device(str(p)).name == "t"


@pytest.mark.parametrize(
    "edit, msg",
    [
        (lambda s: s.replace('precision = "fp32"\n', ""), "missing key 'precision'"),
        (lambda s: s.replace("intra_op_threads = 1", "intra_op_threads = 0"), "intra_op_threads"),
        (lambda s: s.replace("intra_op_threads = 1", 'intra_op_threads = "one"'), "intra_op_threads"),
        (lambda s: s.replace('"sequential"', '"turbo"'), "execution_mode"),
        (lambda s: s.replace('precision = "fp32"', 'precision = "fp8"'), "precision"),
        (lambda s: s.replace('"all"', '"max"'), "graph_optimization_level"),
        (lambda s: s.replace("core_affinity = [0]", 'core_affinity = "0"'), "core_affinity"),
        (lambda s: s + "threads = 4\n", "unknown key 'threads'"),
        (lambda s: s.replace("name = ", "name = = "), "not valid TOML"),
    ],
)
def test_bad_device_file(tmp_path, edit, msg):
    p = tmp_path / "bad.toml"
    p.write_text(edit(GOOD))
    with pytest.raises(InputError, match=msg):
        load_device(str(p))


def test_missing_device_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_device(str(tmp_path / "nope.toml"))


def test_unrunnable_device(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text(GOOD.replace("core_affinity = [0]", "core_affinity = [4096]"))
    with pytest.raises(InputError, match="4096"):
        load_device(str(p)).check_runnable()
    p.write_text(GOOD.replace("CPUExecutionProvider", "FooExecutionProvider"))
    with pytest.raises(InputError, match="not available"):
        load_device(str(p)).check_runnable()
    p.write_text(GOOD.replace('"fp32"', '"int8"'))
    load_device(str(p)).check_runnable()  # int8 is supported


def test_optional_allow_spinning(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text(GOOD)
    assert load_device(str(p)).allow_spinning is True  # older specs lack the key
    p.write_text(GOOD + "allow_spinning = false\n")
    d = load_device(str(p))
    assert d.allow_spinning is False
    assert DeviceSpec.from_dict(d.to_dict()) == d
    p.write_text(GOOD + 'allow_spinning = "no"\n')
    with pytest.raises(InputError, match="allow_spinning"):
        load_device(str(p))


def test_fingerprint():
    fp = fingerprint.capture()
    for k in ("cpu_model", "logical_cores", "physical_cores", "isa_flags", "memory_gib", "os", "python",
              "onnxruntime_version", "onnxruntime_providers"):
        assert k in fp
    assert fp["logical_cores"] >= 1
    assert "CPUExecutionProvider" in fp["onnxruntime_providers"]
    assert fingerprint.differences(fp, dict(fp)) == []
    other = dict(fp, cpu_model="Imaginary CPU 9000")
    assert any("cpu_model" in d for d in fingerprint.differences(other, fp))
