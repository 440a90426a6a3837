"""MACs vs latency statistics, the report, and `hwnas compare` on bad input (issue #6)."""

import base64
import itertools
import json
import re
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from hwnas.builders.onnx_graph import build_onnx
from hwnas.compare import (MIN_ARCHS, budget_picks, compare, counterexamples, kernel_breakdown, largest_gap,
                           misranked_pairs, near_equal_spread, proxy_stats)
from hwnas.errors import InputError
from hwnas.measure import MeasureConfig
from hwnas.paths import default_profile_dir
from hwnas.report import pareto_mask, plot_pareto, write_report
from hwnas.space import DEFAULT_SPACE

BUNDLED = default_profile_dir()


# -- statistics against hand-computed values --------------------------------------------------


def test_misranked_pairs_by_hand():
    # pairs of (1,2,3,4) vs (1,3,2,4): only (2,3) is ordered one way by the proxy, the other by latency
    assert misranked_pairs([1, 2, 3, 4], [1, 3, 2, 4]) == (1, 6)
    # a tie in the proxy leaves that pair out
    assert misranked_pairs([1, 1, 2], [1, 2, 3]) == (0, 2)
    assert misranked_pairs([3, 2, 1], [1, 2, 3]) == (3, 3)


def test_near_equal_spread_by_hand():
    names = ["a", "b", "c", "d"]
    r = near_equal_spread(names, [100, 104, 200, 300], [1.0, 1.3, 2.0, 2.9])
    assert r["pairs"] == 1  # only a/b: 104/100 <= 1.05
    assert r["median"] == pytest.approx(0.3) and r["max"] == pytest.approx(0.3)
    assert r["worst"]["fast"] == "a" and r["worst"]["slow"] == "b"
    assert near_equal_spread(names, [100, 200, 400, 800], [1, 2, 3, 4])["pairs"] == 0


def test_counterexamples_and_largest_gap_by_hand():
    names = ["a", "b", "c", "d"]
    proxy, lat = [1, 2, 3, 4], [4.0, 1.0, 2.0, 3.0]  # a: fewest MACs, slowest
    cs = counterexamples(names, proxy, lat)
    assert [(c["a"], c["b"]) for c in cs] == [("a", "b")]  # each model in one pair at most
    assert cs[0]["latency_ratio"] == pytest.approx(4.0)
    g = largest_gap(names, proxy, lat)
    assert (g["a"], g["b"]) == ("a", "d") and g["proxy_ratio"] == pytest.approx(0.25)
    assert counterexamples(names, [1, 2, 3, 4], [1, 2, 3, 4]) == []


def test_budget_picks_by_hand():
    keys = ["s", "m", "l", "xl"]
    macs, lat = [100, 200, 300, 400], [1.0, 2.5, 3.2, 4.0]
    r = budget_picks(keys, macs, lat, 3.0, fit=(0.01, 0.0))  # 3 ms -> 300 MACs by the fit
    assert r["macs_budget"] == pytest.approx(300)
    assert r["macs_pick"]["key"] == "l" and not r["macs_pick"]["fits"]  # 3.2 ms: misses the budget
    assert r["latency_pick"]["key"] == "m" and r["latency_pick"]["fits"]
    assert r["latency_diff"] == pytest.approx(3.2 / 2.5 - 1)
    assert r["budget_overshoot"] == pytest.approx(3.2 / 3.0 - 1)


def test_proxy_stats_on_bundled_profile():
    from hwnas.profile import Profile

    arch = Profile.load(BUNDLED).table("arch")
    assert len(arch) >= MIN_ARCHS
    m, y = arch["macs"].to_numpy(float), arch["corrected_ms"].to_numpy(float)
    s = proxy_stats(list(arch["key"]), m, y)
    assert s["spearman"] == pytest.approx(sps.spearmanr(m, y).statistic)
    assert s["comparable_pairs"] == len(arch) * (len(arch) - 1) // 2  # no ties among 400 measurements
    # with no ties, the misranked share is (1 - Kendall's tau) / 2
    assert s["misranked_share"] == pytest.approx((1 - s["kendall"]) / 2, abs=1e-9)
    assert 0 < s["near_equal"]["pairs"] and s["near_equal"]["max"] >= s["near_equal"]["median"] >= 0


# -- the whole comparison and its report -------------------------------------------------------


class _Tables(HTMLParser):
    """Rows (cell texts) of every table with an id."""

    def __init__(self):
        super().__init__()
        self.tables, self._id, self._row, self._cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._id = a.get("id")
            self.tables.setdefault(self._id, [])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._id].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    small = out / "small.onnx"
    import onnx

    onnx.save(build_onnx(DEFAULT_SPACE.smallest()), str(small))
    comp = compare([BUNDLED], models=[small], measure_config=MeasureConfig.quick())
    rng = np.random.default_rng(0)
    lat = rng.uniform(3, 12, 200)
    cand = pd.DataFrame({"arch": [f"a{i}" for i in range(200)], "predicted_latency_ms": lat,
                         "accuracy_estimate": 70 + 10 * np.log(lat) + rng.normal(0, 1, 200)})
    cand["measured_latency_ms"] = np.where(np.arange(200) < 3, lat * 1.02, np.nan)
    path = write_report(comp, out / "rep", candidates=cand, breakdown=kernel_breakdown(comp.profile),
                        budgets_ms=[5, 8])
    return comp, path


def test_report_tables_agree_with_data(report):
    comp, path = report
    d = path.parent
    pts = pd.read_csv(d / "points.csv")
    space = pts[pts["source"] == "space"]
    m, y = space["macs"].to_numpy(float), space["latency_ms"].to_numpy(float)
    # recompute, from the report's own data, the statistics its table shows
    rho = sps.spearmanr(m, y).statistic
    mis = sum(1 for i, j in itertools.combinations(range(len(m)), 2) if (m[i] - m[j]) * (y[i] - y[j]) < 0)
    parser = _Tables()
    parser.feed(path.read_text())
    header, *rows = parser.tables["proxy-stats"]
    row = next(r for r in rows if r[0].startswith("MACs, all"))
    cell = dict(zip(header, row))
    assert cell["n"] == str(len(space))
    assert float(cell["Spearman"]) == pytest.approx(rho, abs=5e-4)
    assert re.search(r"\((\d+)/", cell["misranked pairs"]).group(1) == str(mis)
    saved = json.loads((d / "compare.json").read_text())
    assert saved["archs"]["macs"]["misranked_pairs"] == mis
    # the held-out predictions file gives the predictor's Spearman in the JSON
    ho = pd.read_csv(d / "heldout.csv")
    assert saved["predictor"]["heldout"]["spearman"] == pytest.approx(
        sps.spearmanr(ho["predicted_ms"], ho["measured_ms"]).statistic)
    # the budget rules' table counts the misses its saved picks show
    br = saved["budget_rules"]
    pairs = [r for r in br["rows"] if r["macs_rule"] and r["predictor_rule"]]
    header, *rows = parser.tables["budget-rules-profile_ms"]
    for row, rule in zip(rows, ("macs_rule", "predictor_rule")):
        misses = sum(r[rule]["profile_ms"] > r["budget_ms"] for r in pairs)
        assert row[1] == f"{misses}/{len(pairs)}"


def test_report_embeds_every_png(report):
    _, path = report
    html = path.read_text()
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    assert set(pngs) >= {"macs_vs_latency.png", "macs_residual.png", "predicted_vs_measured.png",
                         "kernel_breakdown.png", "pareto.png"}
    for name in pngs:
        data = (path.parent / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert base64.b64encode(data).decode() in html, name  # embedded: the report opens offline
        assert f'href="{name}"' in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from the network


def test_families_and_onnx_models_in_comparison(report):
    comp, _ = report
    st = comp.stats
    # every zoo model the profile measured (CNN tuning, opened, transformer and sealed families, 19
    # families today) + the ONNX model
    zoo = comp.profile.table("zoo")
    fams = {t["family"] for t in zoo["target"]}
    assert len(zoo) >= 120 and len(fams) >= 19
    assert st["families"]["n"] == len(zoo) + 1
    assert set(comp.points.loc[comp.points["source"] == "zoo", "family"]) == fams
    (model,) = st["models"]
    assert model["name"] == "small.onnx" and model["macs"] > 0 and model["latency_ms"] > 0
    assert len(st["devices"]["rows"]) == 3  # three default budgets on the one device
    assert st["predictor"]["n_test"] + st["predictor"]["n_train"] == st["n_archs"]


def test_pareto_mask_and_plot(tmp_path):
    lat = [1, 2, 3, 4, 2.5]
    acc = [10, 12, 11, 15, 12]
    assert pareto_mask(lat, acc).tolist() == [True, True, False, True, False]
    with pytest.raises(InputError, match="accuracy_estimate"):
        plot_pareto(pd.DataFrame({"predicted_latency_ms": [1.0]}), tmp_path / "p.png")


# -- bad input via the CLI: exit 2, one line, no traceback -------------------------------------


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "hwnas.cli", "compare", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def _one_line_error(r, pattern):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_cli_rejects_non_onnx_model(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model\n")
    _one_line_error(_cli("--models", "notes.txt", cwd=tmp_path), r"notes\.txt is not an ONNX model")


@pytest.mark.slow  # tens of seconds (CLI subprocesses): run by .ci/run's slow step
def test_cli_rejects_output_path_that_is_a_file(tmp_path):
    (tmp_path / "out").write_text("x")
    _one_line_error(_cli("--out", "out", cwd=tmp_path), r"output path out is a file")


@pytest.mark.slow  # 4-7 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_cli_rejects_profile_with_too_few_archs(tmp_path):
    d = tmp_path / "small"
    d.mkdir()
    # a copy of the bundled profile cut down to 5 measured architectures (the bundled one stays read-only)
    src = sqlite3.connect(f"file:{BUNDLED / 'profile.sqlite'}?mode=ro", uri=True)
    dst = sqlite3.connect(d / "profile.sqlite")
    src.backup(dst)
    src.close()
    dst.execute("DELETE FROM measurements WHERE kind = 'arch' AND key NOT IN "
                "(SELECT key FROM measurements WHERE kind = 'arch' ORDER BY key LIMIT 5)")
    dst.commit()
    dst.close()
    _one_line_error(_cli("--profile", str(d), cwd=tmp_path), rf"has 5 measured architectures; .* at least {MIN_ARCHS}")


def test_compare_devices_two_profiles():
    """Two devices, one budget: MACs- and latency-optimal picks on each, priced on both."""
    from types import SimpleNamespace

    from hwnas.compare import compare_devices
    from hwnas.profile import Profile

    real = Profile.load(BUNDLED)
    arch = real.table("arch")
    # a second device where low resolutions are relatively slower (fixed per-layer overheads)
    res = arch["key"].str.slice(1, 4).astype(int)
    other = arch.assign(corrected_ms=arch["corrected_ms"] * 0.6 * (224 / res) ** 0.3)
    fake = SimpleNamespace(device=SimpleNamespace(name="cpu-2t"), dir="fake",
                           table=lambda kind: other.copy())
    r = compare_devices([real, fake], budgets_ms=[6.0])
    assert r["devices"] == ["cpu-1t", "cpu-2t"] and r["n_common_archs"] == len(arch)
    rows = {x["device"]: x for x in r["rows"]}
    assert set(rows) == {"cpu-1t", "cpu-2t"}
    for dev, x in rows.items():
        lp = x["latency_pick"]
        assert lp["fits"] and lp["latency_ms"] <= 6.0
        assert set(lp["on_devices"]) == {"cpu-1t", "cpu-2t"}
        assert lp["on_devices"][dev] == pytest.approx(lp["latency_ms"])
        # no measured architecture with more MACs fits the budget on this device
        t = (arch if dev == "cpu-1t" else other)
        assert not ((t["corrected_ms"] <= 6.0) & (t["macs"] > lp["macs"])).any()
    # the same budget admits bigger models on the faster device
    assert rows["cpu-2t"]["latency_pick"]["macs"] > rows["cpu-1t"]["latency_pick"]["macs"]
