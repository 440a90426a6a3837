"""Profiling a fleet from the head: one measuring actor per node of a Ray cluster.

A node measures when it offers the custom resource ``resource`` (default ``hwnas``); its actor
takes one unit of it and is pinned to the node, and ``max_concurrency=1`` makes the node run one
call at a time, so the scheduling itself keeps two measurements off one node (the machine lock
in :class:`~hwnas.measure.Measurer` stays as the second line).  By default two measuring nodes on
one physical machine are refused: they would share its cores.

The head sends each actor one task at a time and stores each returned record in the node's
profile (SQLite on the head, one transaction per measurement, with the node's start and end
time in ``fleet_log``), so a node that dies loses at most the measurement in flight; rerunning
skips whatever is stored.  With ``shard`` the nodes (machines of one kind) split one device's
campaign and the shares are merged in canary units (:mod:`hwnas.fleet.merge`).
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from .. import fingerprint
from ..devices import DeviceSpec
from ..errors import HwnasError, InputError, ProfileError, first_line
from ..measure import MeasureConfig
from ..profile.campaign import PARTS, ProfilePlan, Task, write_new_meta
from ..profile.store import ProfileStore
from ..space import SearchSpace
from . import layout, require_ray
from .node import NodeProfiler, campaign_tasks

START_TIMEOUT_S = 180.0
_STANDARD_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}


@dataclass
class FleetConfig:
    """One ``hwnas fleet profile`` run."""

    address: str | None
    devices: tuple[DeviceSpec, ...]
    out_dir: Path
    pplan: ProfilePlan = field(default_factory=ProfilePlan)
    space: SearchSpace = field(default_factory=SearchSpace)
    parts: tuple[str, ...] = PARTS
    quick: int | None = None  # few-shot: N architectures per profile, adapted from ``from_profile``
    from_profile: Path | None = None
    shard: bool = False
    share_machine: bool = False
    resource: str = "hwnas"
    config: MeasureConfig | None = None
    train: bool = True


@dataclass
class Node:
    node_id: str
    tag: str
    actor: object = None
    desc: dict = field(default_factory=dict)
    dead: str | None = None
    done_now: int = 0

    @property
    def name(self) -> str:
        key = layout.machine_key(self.desc["fingerprint"], self.desc["host"], self.desc["machine_id"])
        return f"{key}-{self.tag}" if self.tag else key

    @property
    def host(self) -> str:
        return self.desc.get("host", "?")


@dataclass
class Campaign:
    """One profile directory being measured: its device, its store, the tasks it still needs."""

    rel: str  # path under the fleet directory
    device: DeviceSpec
    role: str  # node | shard
    node: Node
    planned: int
    store: ProfileStore | None = None
    measured_now: int = 0


@dataclass
class FleetReport:
    nodes: list[dict]
    profiles: dict[str, dict]
    wall_s: float
    failed: list[str]


def runtime_env() -> dict:
    """Ship this hwnas package to every worker, so nodes run the head's code."""
    import hwnas

    return {"py_modules": [str(Path(hwnas.__file__).parent)]}


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` unless this process already has; True when we joined."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    if not address:
        raise InputError("give the cluster's address with --address HOST:PORT (printed by `ray start --head`)")
    if address != "auto" and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise InputError(f"--address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:6379")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
        except OSError as e:
            raise InputError(f"no Ray cluster at {address} ({e.strerror or e}); start one with `ray start --head`") from None
    try:
        ray.init(address=address, runtime_env=runtime_env(), logging_level="ERROR", log_to_driver=False)
    except Exception as e:  # Ray raises ConnectionError, RuntimeError, ...
        raise InputError(f"cannot join the Ray cluster at {address}: {first_line(e)}") from None
    return True


def _start_nodes(cfg: FleetConfig) -> list[Node]:
    ray = require_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    found = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get(cfg.resource, 0) >= 1]
    if not found:
        raise InputError(f"no node of the cluster offers the resource {cfg.resource!r}; start measuring nodes with "
                         f"`ray start --address ADDR --resources '{{\"{cfg.resource}\": 1}}'`")
    remote = ray.remote(NodeProfiler)
    nodes = []
    for n in found:
        extra = sorted(r for r in n["Resources"] if r not in _STANDARD_RESOURCES and r != cfg.resource
                       and not r.startswith("node:") and not r.startswith("accelerator_type:"))
        node = Node(n["NodeID"], "+".join(extra))
        node.actor = remote.options(
            num_cpus=0, resources={cfg.resource: 1}, max_concurrency=1, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
        nodes.append(node)
    try:
        descs = ray.get([n.actor.describe.remote() for n in nodes], timeout=START_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise InputError(f"the measuring nodes did not start within {START_TIMEOUT_S:.0f} s (is their "
                         f"{cfg.resource!r} resource held by another fleet run?)") from None
    for node, d in zip(nodes, descs):
        node.desc = d
        if d["fleet_format"] != layout.FORMAT_VERSION:
            raise InputError(f"node {node.host}: runs hwnas {d['hwnas_version']} (fleet format {d['fleet_format']}), "
                             f"the head format {layout.FORMAT_VERSION}")
    return sorted(nodes, key=lambda n: n.name)


def _check_nodes(cfg: FleetConfig, nodes: list[Node]) -> None:
    """Everything that can be wrong with the nodes, before anything is written."""
    ray = require_ray()
    by_machine: dict[str, list[Node]] = {}
    for n in nodes:
        key = layout.machine_key(n.desc["fingerprint"], n.desc["host"], n.desc["machine_id"])
        by_machine.setdefault(key, []).append(n)
    for same in by_machine.values():
        if len(same) < 2:
            continue
        if not cfg.share_machine:
            raise InputError(f"{len(same)} measuring nodes run on one machine ({same[0].host}): their measurements "
                             f"would share its cores; give the {cfg.resource!r} resource to one node per machine "
                             f"(or pass --share-machine on a test cluster)")
        if len({n.tag for n in same}) < len(same) or not all(n.tag for n in same):
            raise InputError(f"nodes sharing machine {same[0].host} must each have their own custom resource "
                             f"(e.g. --resources '{{\"{cfg.resource}\": 1, \"{cfg.resource}_a\": 1}}') to be told apart")
    for dev in cfg.devices:
        why = ray.get([n.actor.check.remote(dev.to_dict()) for n in nodes])
        for n, w in zip(nodes, why):
            if w:
                raise InputError(f"node {n.host} ({n.name}) cannot run device {dev.name!r}: {w}")
    if cfg.shard:
        ref = nodes[0].desc["fingerprint"]
        for n in nodes[1:]:
            diffs = fingerprint.differences(ref, n.desc["fingerprint"])
            if diffs:
                raise InputError(f"--shard needs machines of one kind: {nodes[0].name} and {n.name} differ "
                                 f"({diffs[0].replace('profile has', 'one has')})")


def _settings(cfg: FleetConfig, few: dict | None) -> dict:
    return {"space": cfg.space.to_dict(), "plan": asdict(cfg.pplan), "parts": list(cfg.parts), "few_shot": few,
            "shard": cfg.shard}


def _without_budget(plan: dict) -> dict:
    return {k: v for k, v in plan.items() if k not in ("shares", "time_budget_min")}


def _check_existing(path: Path, device: DeviceSpec, settings: dict, node: Node | None) -> None:
    """A profile directory being resumed was started by the same command on the same machine."""
    if not (path / "profile.sqlite").is_file():
        return
    st = ProfileStore(path, readonly=True)
    try:
        meta = st.meta()
    finally:
        st.close()
    plan = meta.get("plan")
    # plan fields added since (n_lrn_kernels, n_patch_kernels, n_fc_kernels, n_attention_kernels,
    # n_fused_act_kernels) are no difference: resuming adds them; nor is how the time budget is split
    # (``shares``, changed in the eighth session): it decides when a part stops, not what is measured
    if isinstance(plan, dict):
        plan = _without_budget({**settings["plan"], **plan})
    then = {"device": meta.get("device"), "space": meta.get("space"), "plan": plan,
            "few_shot": meta.get("few_shot"), "parts": meta.get("fleet", {}).get("parts")}
    now = {"device": device.to_dict(), "space": settings["space"], "plan": _without_budget(settings["plan"]),
           "few_shot": settings["few_shot"], "parts": settings["parts"]}
    diff = next((k for k in now if then[k] != now[k]), None)
    if diff:
        raise ProfileError(f"{path} was started with another {diff.replace('_', '-')}; rerun with the same options "
                           f"or choose another --out (nothing was changed)")
    if node is not None:
        d = fingerprint.differences(meta.get("fingerprint", {}), node.desc["fingerprint"])
        if d:
            raise ProfileError(f"{path} was measured on another machine than node {node.host} ({d[0]})")


def _open_store(path: Path, cfg: FleetConfig, device: DeviceSpec, node: Node, role: str, few: dict | None) -> ProfileStore:
    import hwnas

    new = not (path / "profile.sqlite").is_file()
    store = ProfileStore(path, create=True)
    store.conn.executescript(layout.LOG_SCHEMA)
    if new:
        extra = {"few_shot": few} if few else {}
        write_new_meta(store, device, cfg.space, cfg.pplan, **extra)
        store.set_meta("fingerprint", node.desc["fingerprint"])  # the node's machine, not the head's
        store.set_meta("fleet", {"node": node.name, "host": node.host, "role": role, "parts": list(cfg.parts)})
    store.set_meta("hwnas_version", hwnas.__version__)
    return store


def _logged(path: Path) -> set[tuple[str, str]]:
    import sqlite3

    db = path / "profile.sqlite"
    if not db.is_file():
        return set()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return {(k, key) for k, key in con.execute("SELECT kind, key FROM fleet_log")}
    except sqlite3.OperationalError:
        return set()
    finally:
        con.close()


def _store_record(store: ProfileStore, part: str, t: Task, rec: dict, node: str) -> None:
    """The record and its log row in ONE transaction: the log insert opens it, ``add_*`` commits
    both (or rolls both back)."""
    store.conn.execute("INSERT INTO fleet_log VALUES (?,?,?,?,?)", (part, t.key, node, rec["started_at"], rec["ended_at"]))
    if rec["measurement"] is None:
        store.add_kernel_profile(t.key, rec["kernel_profile"])
    else:
        store.add_measurement(part, t.key, t.target, rec["measurement"], t.macs, t.params,
                              kernel_profile=rec["kernel_profile"])


def profile_fleet(cfg: FleetConfig, log: Callable[[str], None] = lambda m: None,
                  on_record: Callable[[str, int], None] | None = None) -> FleetReport:
    """Profile every device of ``cfg`` on every measuring node (or, sharded, on all nodes together)."""
    from ..profile.fewshot import MIN_SHOTS, fewshot_archs, load_reference

    ray = require_ray()
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    fleet = layout.check_out_dir(out) or {}
    if fleet and fleet.get("settings", {}).get("shard", cfg.shard) != cfg.shard:
        raise ProfileError(f"{out} holds a {'per-node' if cfg.shard else 'sharded'} fleet; rerun "
                           f"{'without' if cfg.shard else 'with'} --shard or choose another --out (nothing was changed)")
    few, archs, reference = None, None, None
    if cfg.quick is not None:
        if cfg.from_profile is None:
            raise InputError("--quick N makes few-shot profiles and needs --from-profile REF (a trained profile)")
        if cfg.quick < MIN_SHOTS:
            raise InputError(f"--quick {cfg.quick}: a few-shot profile needs at least {MIN_SHOTS} measured architectures")
        reference = load_reference(cfg.from_profile)
        cfg = replace(cfg, space=reference[2].space, parts=("arch",),
                      pplan=ProfilePlan.archs_only(cfg.quick, cfg.pplan.seed))
        few = {"reference": str(cfg.from_profile), "reference_device": reference[2].device.name, "n": cfg.quick,
               "seed": cfg.pplan.seed}
        archs = [str(a) for a in fewshot_archs(cfg.space, reference[0], cfg.quick, cfg.pplan.seed)]
    settings = _settings(cfg, few)
    joined = connect(cfg.address)
    try:
        try:
            nodes = _start_nodes(cfg)
            _check_nodes(cfg, nodes)
        except ray.exceptions.RayError as e:
            raise InputError(f"a measuring node failed while starting: {first_line(e)}") from None
        tasks = {d.name: campaign_tasks(d, cfg.space, cfg.pplan, cfg.parts, archs) for d in cfg.devices}
        camps: list[Campaign] = []
        for dev in cfg.devices:
            n_tasks = sum(len(v) for v in tasks[dev.name].values())
            for node in nodes:
                rel = (f"{layout.SHARDS}/" if cfg.shard else "") + f"{dev.name}-{node.name}"
                camps.append(Campaign(rel, dev, "shard" if cfg.shard else "node", node, n_tasks))
        merged = {d.name: f"{d.name}-{layout.class_key(nodes[0].desc['fingerprint'])}" for d in cfg.devices}
        for c in camps:
            _check_existing(out / c.rel, c.device, settings, c.node)
        for dev in cfg.devices if cfg.shard else ():
            _check_existing(out / merged[dev.name], dev, settings, None)
        # every check passed: from here on things are written
        profiles = dict(fleet.get("profiles", {}))
        shards = dict(fleet.get("shards", {}))
        for c in camps:
            entry = {"device": c.device.name, "host": c.node.host, "node": c.node.name, "role": c.role,
                     "planned": None if cfg.shard else c.planned}
            (shards if cfg.shard else profiles)[Path(c.rel).name] = entry
        if cfg.shard:
            for dev in cfg.devices:
                profiles[merged[dev.name]] = {"device": dev.name, "host": "", "node": "merged", "role": "merged",
                                              "planned": camps[[c.device.name for c in camps].index(dev.name)].planned}
        layout.write_fleet(out, {"settings": settings, "profiles": profiles, "shards": shards,
                                 "created_at": fleet.get("created_at", time.time())})
        queues = _plan_queues(cfg, out, nodes, camps, tasks)
        for node in nodes:
            for dev in cfg.devices:
                ray.get(node.actor.load.remote(dev.name, dev.to_dict(), cfg.space.to_dict(), asdict(cfg.pplan),
                                               tuple(cfg.parts), archs))
        for c in camps:
            c.store = _open_store(out / c.rel, cfg, c.device, c.node, c.role, few)
        for n in nodes:
            if n.desc["niceness"] > 0:
                log(f"warning: node {n.name} measures at niceness {n.desc['niceness']}: other processes on {n.host} "
                    f"slow its measurements (start its raylet at niceness 0, with RAY_worker_niceness=0)")
        log(f"{len(nodes)} measuring node(s): " + ", ".join(f"{n.name} on {n.host}" for n in nodes) + "; "
            + ", ".join(f"{n.name}: {len(queues[n.name])} to measure" for n in nodes))
        try:
            _dispatch(cfg, nodes, queues, on_record)
        finally:
            for c in camps:
                done = len(_logged_store(c.store))
                c.store.set_meta("status", "complete" if not cfg.shard and done == c.planned else "partial")
                c.store.close(compact=True)
        results = _finish(cfg, out, camps, merged, few, reference, log)
    finally:
        if joined:
            ray.shutdown()
    failed = [f"node {n.name} on {n.host}: {n.dead}" for n in nodes if n.dead]
    return FleetReport([{"node": n.name, "host": n.host, "measured_now": n.done_now, "dead": n.dead} for n in nodes],
                       results, time.perf_counter() - t0, failed)


def _shard_dirs(out: Path, device: str) -> list[Path]:
    """Every shard of ``device`` in the fleet directory (this run's nodes or earlier ones)."""
    shards = (layout.read_fleet(out) or {}).get("shards", {})
    return [out / layout.SHARDS / name for name, e in sorted(shards.items()) if e.get("device") == device]


def _logged_store(store: ProfileStore) -> set[tuple[str, str]]:
    return {(k, key) for k, key in store.conn.execute("SELECT kind, key FROM fleet_log")}


def _plan_queues(cfg: FleetConfig, out: Path, nodes: list[Node], camps: list[Campaign],
                 tasks: dict[str, dict[str, list[Task]]]) -> dict[str, list[tuple[Campaign, str, Task]]]:
    """What each node still measures, in campaign order; stored tasks skipped.  Sharded: what no
    shard of the device holds yet, dealt round-robin to the nodes."""
    queues: dict[str, list] = {n.name: [] for n in nodes}
    for dev in cfg.devices:
        mine = [c for c in camps if c.device.name == dev.name]
        if cfg.shard:
            done: set = set()
            for p in _shard_dirs(out, dev.name):
                done |= _logged(p)
            todo = [(part, t) for part, ts in tasks[dev.name].items() for t in ts if (part, t.key) not in done]
            for i, (part, t) in enumerate(todo):
                c = mine[i % len(mine)]
                queues[c.node.name].append((c, part, t))
        else:
            for c in mine:
                done = _logged(out / c.rel)
                queues[c.node.name] += [(c, part, t) for part, ts in tasks[dev.name].items() for t in ts
                                        if (part, t.key) not in done]
    return queues


def _dispatch(cfg: FleetConfig, nodes: list[Node], queues: dict[str, list], on_record) -> None:
    """One task in flight per node; each record stored the moment it arrives."""
    ray = require_ray()
    inflight: dict = {}
    by_name = {n.name: n for n in nodes}
    stored = 0

    def submit(node: Node) -> None:
        q = queues[node.name]
        if not q:
            node.actor.close.remote()  # release the Measurer and the machine lock at once
            return
        c, part, t = q.pop(0)
        inflight[node.actor.measure.remote(c.device.name, part, t.key, cfg.config)] = (node.name, c, part, t)

    for n in nodes:
        submit(n)
    while inflight:
        ready, _ = ray.wait(list(inflight), num_returns=1)
        name, c, part, t = inflight.pop(ready[0])
        node = by_name[name]
        try:
            rec = ray.get(ready[0])
        except ray.exceptions.RayError as e:
            node.dead = f"{'died' if isinstance(e, ray.exceptions.RayActorError) else 'failed'} measuring " \
                        f"{part} {t.key} ({first_line(e)}); rerun the same command to resume"
            continue
        _store_record(c.store, part, t, rec, node.name)
        node.done_now += 1
        c.measured_now += 1
        stored += 1
        if on_record is not None:
            on_record(node.name, stored)
        submit(node)


def _unfinished(profile_dir: Path) -> bool:
    """No predictors yet (a finished profile is merged, adapted or trained once, not on every rerun)."""
    return not (profile_dir / "predictors" / "index.json").is_file()


def _finish(cfg: FleetConfig, out: Path, camps: list[Campaign], merged: dict[str, str], few: dict | None,
            reference, log) -> dict[str, dict]:
    """Merge complete sharded campaigns, adapt (few-shot) or train complete profiles."""
    from .merge import merge_shards

    results: dict[str, dict] = {}
    targets: list[tuple[str, DeviceSpec]] = []
    if cfg.shard:
        for dev in cfg.devices:
            shards = _shard_dirs(out, dev.name)
            done = sum(len(_logged(p)) for p in shards)
            planned = next(c.planned for c in camps if c.device.name == dev.name)
            results[merged[dev.name]] = {"device": dev.name, "measured": done, "planned": planned}
            remerge = any(c.measured_now for c in camps if c.device.name == dev.name) or \
                not (out / merged[dev.name] / "profile.sqlite").is_file()
            if done < planned:
                continue
            if not remerge:
                if _unfinished(out / merged[dev.name]):
                    targets.append((merged[dev.name], dev))
                continue
            first = ProfileStore(shards[0], readonly=True)
            try:
                meta = first.meta()
            finally:
                first.close()
            meta = dict(meta, status="complete",
                        fleet=dict(meta.get("fleet", {}), role="merged", node="merged",
                                   shards=[f"{layout.SHARDS}/{p.name}" for p in shards]))
            counts = merge_shards(shards, out / merged[dev.name], meta)
            log(f"merged {len(shards)} shards of {dev.name} into {out / merged[dev.name]} ({counts['measurements']} "
                f"measurements)")
            targets.append((merged[dev.name], dev))
    else:
        for c in camps:
            done = len(_logged(out / c.rel))
            results[c.rel] = {"device": c.device.name, "measured": done, "planned": c.planned}
            if done == c.planned and (c.measured_now or _unfinished(out / c.rel)):
                targets.append((c.rel, c.device))
    for rel, dev in targets:
        if few:
            from ..profile.fewshot import adapt

            adapt(out / rel, log=log, reference=reference)
        elif cfg.train:
            from ..predictors import train_all

            try:
                index = train_all(out / rel)
            except HwnasError as e:  # the profile lacks every predictor's data: it stays measured, untrained
                log(f"{out / rel} not trained: {first_line(e)}")
                continue
            log(f"trained the predictors of {out / rel} (defaults: {index['default']})")
    return results
