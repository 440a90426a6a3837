"""benchmarks/outside_sets.py: the judge's arithmetic, and bad input."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def outside_sets():
    return load_benchmark("outside_sets")


def test_judge_counts_errors_against_the_measurement(outside_sets):
    meas = {"/a/x.onnx": 2.0, "/a/y.onnx": 4.0, "/a/z.onnx": 1.0}
    pred = {"/a/x.onnx": 2.08, "/a/y.onnx": 3.5, "/a/z.onnx": 1.02}  # +4%, -12.5%, +2%
    j = outside_sets.judge(pred, meas)
    assert j["n"] == 3 and j["within_10pct"] == pytest.approx(2 / 3) and j["within_5pct"] == pytest.approx(2 / 3)
    assert j["mape_pct"] == pytest.approx((4 + 12.5 + 2) / 3)
    assert j["models"]["y"]["error_pct"] == pytest.approx(-12.5) and j["spearman"] == pytest.approx(1.0)


def test_a_set_without_models_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "outside_sets.py"), "--profile", "p",
                        "--set", f"empty={tmp_path}", "--harness", __file__, "--out", str(tmp_path / "o.json")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "expected NAME=DIR with .onnx files" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.json").exists()
