"""The measurement engine on real ONNX Runtime sessions (short timings)."""

import subprocess
import sys
import time

import pytest

from hwnas.builders.onnx_graph import build_onnx
from hwnas.devices import load_device
from hwnas.measure import (CANARY_ARCH, LatencyStats, MeasureConfig, Measurer, machine_lock,
                           parse_kernel_trace)
from hwnas.space import DEFAULT_SPACE, Arch


@pytest.fixture(scope="module")
def measurer():
    with Measurer(load_device("cpu-1t"), MeasureConfig.quick()) as m:
        yield m


def test_latency_stats():
    s = LatencyStats.of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.median_ms == 3.0 and s.count == 5 and s.min_ms == 1.0
    assert s.p10_ms <= s.median_ms <= s.p90_ms
    assert s.iqr_ms == pytest.approx(2.0)
    with pytest.raises(ValueError):
        LatencyStats.of([])


def test_real_measurement_is_bracketed(measurer):
    canary = build_onnx(Arch.parse(CANARY_ARCH))
    small = build_onnx(DEFAULT_SPACE.smallest())
    big = build_onnx(DEFAULT_SPACE.largest())
    rc = measurer.measure(canary, "canary")
    rs = measurer.measure(small, "small")
    rb = measurer.measure(big, "big")
    for r in (rs, rb):
        assert r.stats.p10_ms <= r.latency_ms <= r.stats.p90_ms
        assert r.stats.count >= measurer.config.rounds * measurer.config.round_min_runs
        assert measurer.config.rounds <= len(r.round_ratios) <= measurer.config.max_rounds
        assert r.canary_ms > 0 and r.noise_rel >= 0
    # the canary measured as a target is about one canary
    assert 0.6 < rc.relative_to_canary < 1.6
    # the largest architecture has ~20x the smallest one's MACs: it must be far slower
    assert rs.relative_to_canary < rc.relative_to_canary < rb.relative_to_canary
    assert rb.relative_to_canary > 4 * rs.relative_to_canary
    d = rb.to_dict()
    for k in ("target", "latency_ms", "latency_p10_ms", "latency_p90_ms", "relative_to_canary"):
        assert k in d


def test_measure_requires_context():
    m = Measurer(load_device("cpu-1t"))
    with pytest.raises(RuntimeError, match="context manager"):
        m.measure(build_onnx(Arch.parse(CANARY_ARCH)))


def test_kernel_profile(measurer):
    kp = measurer.profile_kernels(build_onnx(DEFAULT_SPACE.sample_many(1, seed=4)[0]), runs=3, warmup=1)
    assert len(kp.records) > 20
    ops = {r.op_type for r in kp.records}
    assert ops & {"FusedConv", "Conv"}
    convs = [r for r in kp.records if r.op_type in ("FusedConv", "Conv")]
    # attributes come from the saved optimized graph
    assert all("kernel_shape" in r.attributes for r in convs)
    assert all(r.output_shapes and r.duration_ms >= 0 for r in kp.records)
    assert kp.e2e_ms > 0 and 0.2 < kp.kernel_sum_ratio < 2.0


def test_parse_trace_drops_warmup():
    ev = []
    for run, (t0, dur) in enumerate([(0, 100), (200, 100), (400, 100)]):
        ev.append({"cat": "Session", "name": "model_run", "ts": t0, "dur": dur})
        ev.append({"cat": "Node", "name": "conv_kernel_time", "ts": t0 + 1, "dur": [50, 10, 20][run],
                   "args": {"op_name": "FusedConv", "node_index": "0",
                            "input_type_shape": [{"float": [1, 3, 8, 8]}], "output_type_shape": [{"float": [1, 4, 8, 8]}]}})
    recs = parse_kernel_trace(ev, {"conv": {"op_type": "FusedConv", "domain": "com.microsoft",
                                            "attributes": {"kernel_shape": [3, 3]}}}, skip_runs=1)
    assert len(recs) == 1
    r = recs[0]
    assert r.duration_ms == pytest.approx(0.015)  # median of 10 and 20 us, warm-up 50 us dropped
    assert r.input_shapes == ((1, 3, 8, 8),) and r.attributes["kernel_shape"] == [3, 3]


def test_machine_lock_excludes_other_process(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_LOCK_DIR", str(tmp_path))
    code = (
        "import time; from hwnas.measure import machine_lock\n"
        "with machine_lock():\n    print('held', flush=True); time.sleep(1.5)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env={**__import__("os").environ, "HWNAS_LOCK_DIR": str(tmp_path)})
    assert p.stdout.readline().strip() == "held"
    t0 = time.perf_counter()
    with machine_lock(wait_message=False):
        waited = time.perf_counter() - t0
    p.wait()
    assert waited > 0.5
