"""Profiling a fleet on a local Ray cluster: 3 nodes profile 3 device specs (few-shot, --quick 30),
then one device's campaign sharded on 2 nodes against the same campaign on one machine.

Runs the real command line (``hwnas fleet profile --address ...``, each in its own process) against
a 3-node cluster started here with ``ray.cluster_utils.Cluster`` (a head that does not measure,
nodes ``{"hwnas_a": 1, "pool": 1}``, ``{"hwnas_b": 1, "pool": 1}``, ``{"hwnas_c": 1}``).

* **3 devices**: one ``fleet profile`` per device, placed by each node's own resource
  (``--resource hwnas_a``...), all three started at once; each few-shot profile is scored like
  ``benchmarks/new_device.py``: on the full profile ``profiles/<device>``'s architectures it did not
  measure (canary units), next to a control: the same few-shot profile made right after by plain
  ``hwnas profile`` on the head.  Then ``hwnas search`` over the three fleet directories, a budget
  per device (its profile's median measured latency).
* **Sharded**: a reduced campaign (resolution 160, width 1.0: 93 blocks + N architectures) on one
  machine with ``hwnas profile`` + ``hwnas train``, and split over the two ``pool`` nodes with
  ``--shard``; the held-out figures are ``hwnas train``'s (the same held-out half of the
  architectures in both).

All nodes run on THIS machine and share its cores: the machine lock lets one measurement run at a
time, so the fleet's wall time here is the sum of the nodes' work, not a speed-up.  The default
(one measuring node per physical machine) is overridden with ``--share-machine``.

    python benchmarks/fleet.py [--quick 30] [--shard-archs 60]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEVICES = ("cpu-1t", "cpu-2t", "cpu-1t-int8")
REDUCED = ["--resolutions", "160", "--width-mults", "1.0", "--n-kernels", "0", "--n-kernel-profiles", "0",
           "--zoo-per-family", "0"]


def hwnas(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hwnas", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)


def finish(p: subprocess.Popen, what: str) -> str:
    out, err = p.communicate()
    if p.returncode != 0:
        sys.exit(f"error: {what} failed: {(err.strip().splitlines() or ['?'])[-1]}")
    return out


def heldout(profile_dir: Path) -> dict:
    index = json.loads((profile_dir / "predictors" / "index.json").read_text())
    h = index["heldout"]
    return {"n_train": h["n_train"], "n_test": h["n_test"],
            "predictors": {k: {m: round(v[m], 4) for m in ("within_5pct", "within_10pct", "mape_pct") if m in v}
                           for k, v in h["predictors"].items() if "error" not in v}}


def score(prof, dev: str, label: str) -> dict:
    """A few-shot profile's noise, and its predictor on the full profile's architectures it did not measure."""
    from hwnas.predictors.evaluate import evaluate_fewshot
    from hwnas.profile import Profile

    arch = prof.table("arch")
    out = {"canary_reference_ms": round(prof.canary_reference_ms, 3),
           "median_noise_rel": round(float(arch["noise_rel"].median()), 4)}
    full_dir = ROOT / "profiles" / dev
    if (full_dir / "predictors" / "index.json").is_file():
        ev = evaluate_fewshot(prof, Profile.load(full_dir))
        out["heldout_vs_full_profile"] = {"n_test": ev["n_test"], "transfer": ev["transfer"],
                                          "reference_as_is": ev["reference_as_is"]}
        t = ev["transfer"]
        print(f"{dev:12s} {label:5s} transfer ±10% {100 * t['within_10pct']:5.1f}%  ±5% {100 * t['within_5pct']:5.1f}%  "
              f"MAPE {t['mape_pct']:.2f}%  (on {ev['n_test']} archs of profiles/{dev} it did not measure); canary "
              f"{out['canary_reference_ms']} ms, median noise {100 * out['median_noise_rel']:.1f}%", flush=True)
    return out


def main() -> None:
    import ray
    from ray.cluster_utils import Cluster

    from hwnas.fleet.layout import fleet_profiles
    from hwnas.profile import Profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", type=int, default=30)
    ap.add_argument("--shard-archs", type=int, default=60)
    ap.add_argument("--reference", default=str(ROOT / "profiles" / "cpu-1t"))
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=str(HERE / "results" / "fleet.json"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="hwnas-fleet-"))
    res: dict = {"machine_note": "all 3 nodes on one shared 2-core machine: they share its cores and the machine lock "
                                 "runs one measurement at a time, so wall times add up instead of dividing",
                 "quick": args.quick}
    t0 = time.perf_counter()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for tag, pool in (("a", True), ("b", True), ("c", False)):
        c.add_node(num_cpus=1, resources={f"hwnas_{tag}": 1, **({"pool": 1} if pool else {})})
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)  # only to wait for the nodes
    c.wait_for_nodes()
    res["cluster_start_s"] = round(time.perf_counter() - t0, 1)
    print(f"cluster of 3 nodes at {c.address} in {res['cluster_start_s']} s", flush=True)
    try:
        # -- 3 nodes, 3 device specs, few-shot ---------------------------------------------------
        t1 = time.perf_counter()
        procs = {}
        for dev, tag in zip(DEVICES, "abc"):
            procs[dev] = (time.perf_counter(), hwnas(
                "fleet", "profile", "--address", c.address, "--resource", f"hwnas_{tag}", "--device", dev,
                "--out", str(work / f"fleet-{dev}"), "--from-profile", args.reference, "--quick", str(args.quick)))
        walls = {}
        for dev, (ts, p) in procs.items():
            finish(p, f"fleet profile {dev}")
            walls[dev] = time.perf_counter() - ts
        res["devices_wall_s"] = round(time.perf_counter() - t1, 1)
        res["devices"] = {}
        for dev in DEVICES:
            (prof_dir,) = fleet_profiles(work / f"fleet-{dev}")
            prof = Profile.load(prof_dir)
            con = sqlite3.connect(f"file:{prof_dir / 'profile.sqlite'}?mode=ro", uri=True)
            measure_s = con.execute("SELECT sum(ended_at - started_at) FROM fleet_log").fetchone()[0]
            con.close()
            entry = {"profile": prof_dir.name, "wall_s": round(walls[dev], 1), "measuring_s_on_node": round(measure_s, 1),
                     **score(prof, dev, "fleet")}
            # control: the same few-shot profile by plain `hwnas profile` on the head, right after
            ts = time.perf_counter()
            finish(hwnas("profile", "--device", dev, "--out", str(work / f"plain-{dev}"), "--from-profile",
                         args.reference, "--quick", str(args.quick)), f"plain profile {dev}")
            entry["control_plain_profile"] = {"wall_s": round(time.perf_counter() - ts, 1),
                                              **score(Profile.load(work / f"plain-{dev}"), dev, "plain")}
            res["devices"][dev] = entry
        print(f"3 devices on 3 nodes: {res['devices_wall_s']} s wall (controls after it)", flush=True)
        # a budget per device: the median measured latency of its profile (ms on that machine today)
        budgets = {dev: f"{Profile.load(fleet_profiles(work / f'fleet-{dev}')[0]).table('arch')['corrected_ms'].median():.2f}"
                   for dev in DEVICES}
        args_s = [x for dev in DEVICES for x in ("--profile", str(work / f"fleet-{dev}"), "--budget-ms", budgets[dev])]
        out = finish(hwnas("search", *args_s, "--population", "50", "--generations", "50", "--json"), "fleet search")
        res["search"] = [{k: r[k] for k in ("profile", "arch", "budget_ms", "predicted_latency_ms", "accuracy_estimate")}
                         for r in json.loads(out)]
        for r in res["search"]:
            print(f"search {Path(r['profile']).name:32s} {r['budget_ms']} ms -> {r['arch']} "
                  f"({r['predicted_latency_ms']:.2f} ms predicted)", flush=True)

        # -- one campaign: one machine vs sharded on 2 nodes -------------------------------------
        plan = [*REDUCED, "--n-archs", str(args.shard_archs)]
        ts = time.perf_counter()
        finish(hwnas("profile", "--device", "cpu-1t", "--out", str(work / "single"), *plan, "--time-budget-min", "60"),
               "single-machine profile")
        single_wall = time.perf_counter() - ts
        finish(hwnas("train", "--profile", str(work / "single")), "train")
        ts = time.perf_counter()
        finish(hwnas("fleet", "profile", "--address", c.address, "--resource", "pool", "--share-machine", "--shard",
                     "--device", "cpu-1t", "--out", str(work / "sharded"), *plan), "sharded fleet profile")
        shard_wall = time.perf_counter() - ts
        (merged,) = fleet_profiles(work / "sharded")
        shards = sorted((work / "sharded" / "shards").iterdir())
        res["sharded"] = {
            "campaign": " ".join(plan),
            "single_machine": {"wall_s_incl_start": round(single_wall, 1), "heldout": heldout(work / "single")},
            "sharded_2_nodes": {"wall_s_incl_join_and_train": round(shard_wall, 1), "heldout": heldout(merged),
                                "per_shard_measurements": {p.name: len(Profile.load(p).measurements) for p in shards}},
        }
        for name, r in (("one machine", res["sharded"]["single_machine"]), ("2 shards", res["sharded"]["sharded_2_nodes"])):
            h = r["heldout"]
            figs = "  ".join(f"{k} ±10% {100 * v['within_10pct']:.1f}% ±5% {100 * v['within_5pct']:.1f}%"
                             for k, v in h["predictors"].items() if k in ("lut", "learned"))
            print(f"{name:12s} {h['n_test']} held out: {figs}", flush=True)
        print(f"wall: one machine {single_wall:.1f} s, sharded on 2 nodes {shard_wall:.1f} s; "
              f"shares {res['sharded']['sharded_2_nodes']['per_shard_measurements']}", flush=True)
    finally:
        ray.shutdown()
        c.shutdown()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
