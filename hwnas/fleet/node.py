"""What runs on a measuring node: one :class:`NodeProfiler` per node, made a Ray actor by the head.

It measures one task per call with the project's :class:`~hwnas.measure.Measurer` (the machine
lock, core pinning and canary bracketing included) and returns the record; it never writes a
file.  The head holds the SQLite store and sends one task at a time, so a node that dies loses
at most the measurement in flight.  This module does not import Ray.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from ..devices import DeviceSpec
from ..errors import HwnasError
from ..measure import MeasureConfig, Measurer
from ..profile.campaign import ProfilePlan, Task, arch_tasks, measure_task, part_task_lists
from ..space import SearchSpace


def _machine_id() -> str:
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return Path(p).read_text().strip()
        except OSError:
            continue
    return ""


def campaign_tasks(device: DeviceSpec, space: SearchSpace, pplan: ProfilePlan, parts: tuple[str, ...],
                   archs: list[str] | None = None) -> dict[str, list[Task]]:
    """The tasks of one device's campaign, per part: the profile's own (``part_task_lists``), or
    for a few-shot profile the given architectures only (part ``arch``)."""
    if archs is not None:
        return {"arch": arch_tasks(space, [space.parse(a) for a in archs], device.batch_size)}
    lists = part_task_lists(device, space, pplan)
    return {p: lists[p]() for p in parts}


def undo_worker_niceness() -> int:
    """Ray starts its workers at niceness 15 (its ``worker_niceness``, so that drivers come first);
    a measurement at 15 yields the CPU to every other process.  Back to the raylet's niceness
    where allowed; returns the niceness the measurements run at."""
    try:
        target = os.getpriority(os.PRIO_PROCESS, os.getppid())
        if os.getpriority(os.PRIO_PROCESS, 0) > target:
            os.setpriority(os.PRIO_PROCESS, 0, target)
    except OSError:  # not allowed to raise priority: the head reports the niceness
        pass
    return os.getpriority(os.PRIO_PROCESS, 0)


class NodeProfiler:
    """The measuring actor of one node (``max_concurrency=1``: one call at a time)."""

    def __init__(self) -> None:
        self.niceness = undo_worker_niceness()
        self._tasks: dict[str, dict[tuple[str, str], Task]] = {}
        self._devices: dict[str, DeviceSpec] = {}
        self._measurer: Measurer | None = None
        self._open: str | None = None

    def describe(self) -> dict:
        """Who this node is: machine fingerprint, host, machine id, hwnas version, usable cores."""
        import hwnas

        from .. import fingerprint
        from .layout import FORMAT_VERSION

        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
        return {"fingerprint": fingerprint.capture(), "host": socket.gethostname(), "machine_id": _machine_id(),
                "hwnas_version": hwnas.__version__, "fleet_format": FORMAT_VERSION, "cores": cores,
                "niceness": self.niceness}

    def check(self, device: dict) -> str | None:
        """Why this node cannot run the device (None when it can)."""
        try:
            dev = DeviceSpec.from_dict(device)
            dev.check_runnable()
        except HwnasError as e:
            return str(e)
        cores = self.describe()["cores"]
        if dev.intra_op_threads > len(cores):
            return f"it runs {dev.intra_op_threads} threads and this node has {len(cores)} usable cores"
        return None

    def load(self, name: str, device: dict, space: dict, pplan: dict, parts: tuple[str, ...],
             archs: list[str] | None) -> int:
        """Build the task list of campaign ``name`` here (same code and seed as the head); returns its size."""
        dev = DeviceSpec.from_dict(device)
        tasks = campaign_tasks(dev, SearchSpace.from_dict(space), ProfilePlan(**pplan), tuple(parts), archs)
        self._devices[name] = dev
        self._tasks[name] = {(part, t.key): t for part, ts in tasks.items() for t in ts}
        return len(self._tasks[name])

    def measure(self, name: str, part: str, key: str, config: MeasureConfig | None) -> dict:
        """Measure one task of campaign ``name``; the record the head stores."""
        if self._open != name:
            self.close()
            self._measurer = Measurer(self._devices[name], config).__enter__()
            self._open = name
        started = time.time()
        meas, kp = measure_task(self._measurer, part, self._tasks[name][(part, key)], config)
        return {"measurement": meas, "kernel_profile": kp, "started_at": started, "ended_at": time.time(),
                "pid": os.getpid()}

    def close(self) -> None:
        """Release the Measurer (and with it the machine lock)."""
        if self._measurer is not None:
            self._measurer.__exit__(None, None, None)
        self._measurer, self._open = None, None
