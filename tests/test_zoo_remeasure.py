"""benchmarks/zoo_remeasure.py --passes: every model measured N times, round robin, and the median
pass is the one the profile keeps."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwnas.predictors.evaluate import zoo_table
from hwnas.profile import Profile
from hwnas.zoo_transformers import TRANSFORMER_FAMILIES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_passes_keep_the_median_pass(tiny_profile, tmp_path):
    src, _ = tiny_profile
    prof_dir = tmp_path / "cpu-1t"
    shutil.copytree(src, prof_dir)
    before = zoo_table(Profile.load(prof_dir))
    before = before[before["family"].isin(TRANSFORMER_FAMILIES)].set_index("name")["relative_to_canary"]
    out = tmp_path / "remeasure.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "zoo_remeasure.py"), "--profile", str(prof_dir),
                        "--set", "transformers", "--replace", "--passes", "3", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["passes"] == 3 and res["n"] == len(before) > 0
    after = zoo_table(Profile.load(prof_dir))
    after = after[after["family"].isin(TRANSFORMER_FAMILIES)].set_index("name")["relative_to_canary"]
    for row in res["models"]:
        assert len(row["passes"]) == 3 and row["stored"] == pytest.approx(before[row["name"]])
        assert row["again"] == pytest.approx(float(np.median(row["passes"])))
        assert after[row["name"]] == pytest.approx(row["again"])  # the profile now holds the median pass


def test_passes_must_be_positive(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "zoo_remeasure.py"), "--passes", "0",
                        "--out", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--passes must be at least 1" in r.stderr
    assert not (tmp_path / "x.json").exists()
