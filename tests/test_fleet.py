"""Fleet profiling on a real local Ray cluster (one module-scoped cluster: Ray's start-up stays
out of the other tests), plus the parts that must work without Ray."""

import json
import sqlite3
import subprocess
import sys

import pytest

from hwnas.devices import DeviceSpec, load_device
from hwnas.errors import InputError, ProfileError
from hwnas.fleet import layout
from hwnas.measure import MeasureConfig
from hwnas.paths import default_profile_dir
from hwnas.profile import ProfilePlan

from conftest import TINY_SPACE

N_QUICK = 6


def _cli(*args, env_code=""):
    code = env_code + "import sys; from hwnas.cli import main; sys.argv = ['hwnas', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_without_ray_everything_else_works_and_fleet_says_how_to_install(tmp_path):
    no_ray = "import sys; sys.modules['ray'] = None; "
    r = _cli("fleet", "profile", "--address", "127.0.0.1:6379", "--device", "cpu-1t", "--out", str(tmp_path / "f"),
             env_code=no_ray)
    assert r.returncode == 2 and "pip install 'hwnas[ray]'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "f").exists()
    r = _cli("space", "info", "--json", env_code=no_ray)
    assert r.returncode == 0 and json.loads(r.stdout)["size"] > 0
    r = _cli("fleet", "status", "--out", str(tmp_path), env_code=no_ray)
    assert r.returncode == 2 and "no fleet at" in r.stderr


def test_no_cluster_at_address_is_one_line(tmp_path):
    pytest.importorskip("ray")
    r = _cli("fleet", "profile", "--address", "127.0.0.1:1", "--device", "cpu-1t", "--out", str(tmp_path / "f"))
    assert r.returncode == 2 and r.stderr.strip().startswith("error: no Ray cluster at 127.0.0.1:1")
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "f").exists()


def test_fleet_dir_of_another_version_is_refused_untouched(tmp_path):
    d = tmp_path / "fleet"
    d.mkdir()
    (d / layout.FLEET_FILE).write_text(json.dumps({"format": layout.FORMAT, "format_version": 99, "hwnas_version": "9.0"}))
    before = (d / layout.FLEET_FILE).read_bytes()
    with pytest.raises(ProfileError, match="written by hwnas 9.0 .fleet format 99"):
        layout.check_out_dir(d)
    from hwnas.search import SearchConfig, run_search

    with pytest.raises(ProfileError, match="fleet format 99"):
        run_search(SearchConfig(budgets_ms=(8.0,), profiles=(str(d),)))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(ProfileError, match="not empty"):
        layout.check_out_dir(tmp_path / "other")
    assert (d / layout.FLEET_FILE).read_bytes() == before


def test_resuming_a_fleet_profile_ignores_how_the_time_budget_is_split(tmp_path):
    """A fleet directory started before the budget split changed resumes; any other plan change is refused."""
    from dataclasses import asdict

    from hwnas.fleet.run import _check_existing
    from hwnas.profile.store import ProfileStore

    dev = load_device("cpu-1t")
    settings = {"space": TINY_SPACE.to_dict(), "plan": asdict(ProfilePlan(n_archs=5)), "parts": ["arch"],
                "few_shot": None, "shard": False}
    old = {**settings["plan"], "time_budget_min": 30.0,
           "shares": {"block": 0.25, "kernel": 0.15, "kernel_profile": 0.08, "zoo": 0.10, "arch": 0.42}}
    st = ProfileStore(tmp_path, create=True)
    for k, v in (("device", dev.to_dict()), ("space", settings["space"]), ("plan", old), ("few_shot", None),
                 ("fleet", {"parts": ["arch"]})):
        st.set_meta(k, v)
    st.close()
    _check_existing(tmp_path, dev, settings, None)
    st = ProfileStore(tmp_path)
    st.set_meta("plan", {**old, "n_archs": 6})
    st.close()
    with pytest.raises(ProfileError, match="another plan"):
        _check_existing(tmp_path, dev, settings, None)


# --------------------------------------------------------------------------------------------
# on a real local cluster


@pytest.fixture(scope="module")
def cluster():
    """Two measuring nodes on this machine (each its own resource) and a head that does not measure."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from hwnas.fleet.run import runtime_env

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = {tag: c.add_node(num_cpus=1, resources={"hwnas": 1, f"hwnas_{tag}": 1}) for tag in ("a", "b")}
    ray.init(address=c.address, runtime_env=runtime_env(), logging_level="ERROR", log_to_driver=False)
    yield c, nodes
    ray.shutdown()
    c.shutdown()


def _quick_cfg(out, **kw):
    from hwnas.fleet.run import FleetConfig

    return FleetConfig(None, (load_device("cpu-1t"),), out, quick=N_QUICK, from_profile=default_profile_dir(),
                       share_machine=True, config=MeasureConfig.quick(), **kw)


def _rows(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        lat = {k: v for k, v in con.execute("SELECT key, latency_ms FROM measurements")}
        log = list(con.execute("SELECT node, started_at, ended_at FROM fleet_log ORDER BY started_at"))
        return lat, log
    finally:
        con.close()


@pytest.mark.slow
def test_node_killed_mid_profile_then_rerun_loses_and_duplicates_nothing(cluster, tmp_path):
    from hwnas.fleet.run import profile_fleet
    from hwnas.predictors import load_predictor
    from hwnas.profile import Profile

    c, nodes = cluster
    out = tmp_path / "fleet"
    killed = {}

    def kill_after_two(node, n_stored):
        if n_stored == 2 and not killed:
            # the node that just stored its 2nd record dies while measuring its 3rd
            tag = "a" if node.endswith("hwnas_a") else "b"
            c.remove_node(nodes[tag])
            killed.update(tag=tag, node=node)

    rep = profile_fleet(_quick_cfg(out), on_record=kill_after_two)
    assert len(rep.failed) == 1 and killed["node"] in rep.failed[0] and "rerun" in rep.failed[0]
    dead_dir = out / f"cpu-1t-{killed['node']}"
    before, _ = _rows(dead_dir / "profile.sqlite")
    assert len(before) == 2  # the measurement in flight is lost, nothing else
    st = {r["profile"]: r for r in layout.status_rows(out)}
    assert st[dead_dir.name]["done"] == 2 and st[dead_dir.name]["planned"] == N_QUICK

    nodes[killed["tag"]] = c.add_node(num_cpus=1, resources={"hwnas": 1, f"hwnas_{killed['tag']}": 1})
    rep = profile_fleet(_quick_cfg(out))
    assert not rep.failed
    assert {n["node"]: n["measured_now"] for n in rep.nodes}[killed["node"]] == N_QUICK - 2
    profiles = layout.fleet_profiles(out)
    assert len(profiles) == 2
    archs = None
    for p in profiles:
        lat, log = _rows(p / "profile.sqlite")
        assert len(lat) == N_QUICK == len(log)
        archs = archs or set(lat)
        assert set(lat) == archs  # both nodes measured the same few-shot architectures
        for (_, s0, e0), (_, s1, _) in zip(log, log[1:]):
            assert e0 <= s1  # no two measurements overlap on one node
        prof = Profile.load(p)
        assert prof.status == "complete" and prof.meta["few_shot"]["n"] == N_QUICK
        pred = load_predictor(p).predict(sorted(archs))
        assert (pred > 0).all()
    lat, _ = _rows(dead_dir / "profile.sqlite")
    assert {k: lat[k] for k in before} == before  # rows stored before the kill are untouched
    # search over the fleet directory: one architecture per node profile
    from hwnas.search import SearchConfig, run_search

    res = run_search(SearchConfig(budgets_ms=(9.0,), profiles=(str(out),), population=20, generations=5,
                                  accuracy="macs"))
    assert [b.profile for b in res.best] == [str(p) for p in profiles]
    # status from the CLI
    r = _cli("fleet", "status", "--out", str(out), "--json")
    assert r.returncode == 0 and {x["done"] for x in json.loads(r.stdout)} == {N_QUICK}


@pytest.mark.slow
def test_sharded_campaign_merges_into_one_profile(cluster, tmp_path):
    from hwnas.fleet.run import FleetConfig, profile_fleet
    from hwnas.profile import Profile

    out = tmp_path / "fleet"
    plan = ProfilePlan(n_archs=6, n_kernels=4, n_token_kernels=1, n_lrn_kernels=1, n_patch_kernels=1, n_fc_kernels=0,
                       n_attention_kernels=0, n_fused_act_kernels=1, n_kernel_profiles=1,
                       zoo_per_family=0)
    cfg = FleetConfig(None, (load_device("cpu-1t"),), out, plan, TINY_SPACE, parts=("kernel", "kernel_profile", "arch"),
                      shard=True, share_machine=True, config=MeasureConfig.quick(), train=False)
    rep = profile_fleet(cfg)
    assert not rep.failed
    (merged,) = layout.fleet_profiles(out)
    shards = sorted((out / layout.SHARDS).iterdir())
    assert len(shards) == 2
    keys = [set(_rows(s / "profile.sqlite")[0]) for s in shards]
    assert keys[0] and keys[1] and not keys[0] & keys[1]  # each node measured its own share
    prof = Profile.load(merged)
    assert prof.status == "complete" and len(prof.table("arch")) == 6 and len(prof.table("kernel")) == 4 + 1 + 1 + 1 + 1
    assert len(prof.kernel_profiles) == (4 + 1 + 1 + 1 + 1) + 1 and set(prof.measurements["key"]) == keys[0] | keys[1]
    assert prof.meta["fleet"]["role"] == "merged" and len(prof.meta["fleet"]["shards"]) == 2
    # trains and predicts like a local profile (no block table here, so the MACs predictor)
    from hwnas.predictors import load_predictor, train_all

    train_all(merged, ["macs"])
    assert (load_predictor(merged, "macs").predict(list(prof.table("arch")["key"])) > 0).all()
    # rerun: nothing left to measure, nothing added
    rep = profile_fleet(cfg)
    assert sum(n["measured_now"] for n in rep.nodes) == 0
    # archs; CNN, token, LRN, patch, fused-activation kernels
    assert len(Profile.load(merged).measurements) == 6 + 4 + 1 + 1 + 1 + 1


@pytest.mark.slow
def test_bad_nodes_are_refused_before_anything_is_written(cluster, tmp_path):
    from hwnas.fleet.run import FleetConfig, profile_fleet

    out = tmp_path / "fleet"
    # both test nodes run on this one machine: refused unless --share-machine
    with pytest.raises(InputError, match="one machine"):
        profile_fleet(FleetConfig(None, (load_device("cpu-1t"),), out, quick=N_QUICK, from_profile=default_profile_dir()))
    wide = DeviceSpec.from_dict(dict(load_device("cpu-1t").to_dict(), name="wide", core_affinity=[0, 4096]))
    with pytest.raises(InputError, match="cannot run device 'wide'.*4096"):
        profile_fleet(_quick_cfg(out).__class__(None, (wide,), out, quick=N_QUICK, from_profile=default_profile_dir(),
                                                share_machine=True))
    with pytest.raises(InputError, match="no node of the cluster offers the resource 'gpu_box'"):
        profile_fleet(_quick_cfg(out, resource="gpu_box"))
    assert not out.exists()
