"""Starting distributed supernet training: :func:`run_rank` runs one rank in this process (under
``torchrun``, which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``), :func:`start_local` spawns ``nproc`` rank processes on this machine
(what ``hwnas supernet train --nproc N`` does) and :func:`train_distributed` waits for them.

The backend is gloo on CPU and nccl when CUDA is present (one GPU per rank, ``cuda:LOCAL_RANK``).
Spawned ranks each use ``threads_per_rank`` torch threads (the cores divided by ``nproc``) and
send rank 0's progress and every rank's outcome back to the launching process over a queue;
the launching process's own settings are left as they were.  If a rank dies, the others are
stopped, and the last checkpoint (written by rank 0, atomically, with SIGINT and SIGTERM held)
is kept for ``--resume``.
"""

from __future__ import annotations

import os
import queue as queue_mod
import signal
import socket
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

import torch

from ...errors import InputError, first_line
from ...space import DEFAULT_SPACE, SearchSpace
from ..streaming import DEFAULT_MEMORY_LIMIT_MB, open_dataset
from .distributed import DistEnv, RankContext, available_cores, threads_per_rank
from .training import TrainConfig, TrainResult, train_supernet

BACKENDS = ("auto", "gloo", "nccl")
COLLECTIVE_TIMEOUT_S = 600.0
"""How long a rank waits for the others in one collective before it gives up."""


@dataclass
class TrainJob:
    """What every rank of one distributed training run needs (sent to spawned processes)."""

    data: str
    out_dir: str
    config: dict
    space: dict
    resume: bool = False
    time_budget_s: float | None = None
    threads: int | None = None
    workers: int = 2
    backend: str = "auto"
    stream: bool | None = None
    memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB


def _backend(name: str) -> str:
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose {', '.join(BACKENDS)}")
    if name == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if name == "nccl" and not torch.cuda.is_available():
        raise InputError("backend nccl needs CUDA, which this machine lacks; use gloo")
    return name


def run_rank(job: TrainJob, env: DistEnv, progress: Callable[[int, int, dict], None] | None = None) -> TrainResult:
    """Run rank ``env.rank`` of ``job`` in this process: join the process group, train, leave it."""
    import torch.distributed as dist

    backend = _backend(job.backend)
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    data = open_dataset(job.data, job.memory_limit_mb, job.stream)
    # env:// reads MASTER_ADDR / MASTER_PORT (under torchrun, its agent's store)
    dist.init_process_group(backend, init_method="env://", rank=env.rank, world_size=env.world_size,
                            timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    try:
        return train_supernet(data, job.out_dir, TrainConfig.from_dict(job.config),
                              space=SearchSpace.from_dict(job.space), resume=job.resume,
                              time_budget_s=job.time_budget_s, progress=progress, threads=job.threads,
                              workers=job.workers, rank=RankContext(env.rank, env.world_size, device))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawned_rank(rank: int, nproc: int, port: int, job: TrainJob, q) -> None:
    """Entry point of a spawned rank process (its own threads and signal handling)."""
    torch.set_num_threads(job.threads or threads_per_rank(nproc))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # this rank process's own environment
    env = DistEnv.from_env()
    try:
        progress = (lambda done, total, info: q.put(("progress", rank, (done, total, info)))) if rank == 0 else None
        r = run_rank(job, env, progress)
        q.put(("done", rank, {**asdict(r), "out_dir": str(r.out_dir)}))
    except InputError as e:
        q.put(("error", rank, str(e)))
        raise SystemExit(2)
    except KeyboardInterrupt:
        raise SystemExit(130)
    except Exception as e:  # noqa: BLE001 - reported to the launcher in one line
        q.put(("error", rank, f"{type(e).__name__}: {first_line(e)}"))
        raise SystemExit(1)


class LocalRun:
    """``nproc`` rank processes on this machine (:func:`start_local`); :meth:`wait` for the result."""

    def __init__(self, job: TrainJob, nproc: int) -> None:
        import torch.multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.job, self.nproc = job, nproc
        self.queue = ctx.Queue()
        port = _free_port()
        self.processes = [ctx.Process(target=_spawned_rank, args=(r, nproc, port, job, self.queue), daemon=False)
                          for r in range(nproc)]
        for p in self.processes:
            p.start()

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.processes]

    def _stop(self, grace_s: float = 30.0) -> None:
        for p in self.processes:
            if p.is_alive():
                p.terminate()
        t_end = time.monotonic() + grace_s
        for p in self.processes:
            p.join(max(0.0, t_end - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()

    def wait(self, progress: Callable[[int, int, dict], None] | None = None) -> TrainResult:
        """Wait for every rank; rank 0's progress goes to ``progress``.  A rank's error (or its
        death) stops the others and raises a one-line :class:`InputError`."""
        results, errors, failed = {}, {}, None
        try:
            while True:
                try:
                    kind, rank, payload = self.queue.get(timeout=0.2)
                except queue_mod.Empty:
                    kind = None
                if kind == "progress" and progress is not None:
                    progress(*payload)
                elif kind == "done":
                    results[rank] = payload
                elif kind == "error":
                    errors.setdefault(rank, payload)
                codes = [p.exitcode for p in self.processes]
                bad = [r for r, c in enumerate(codes) if c not in (None, 0)]
                if bad and failed is None:
                    failed = bad[0]
                    self._drain(errors, results)
                    self._stop()
                if kind is None and all(c is not None for c in codes):
                    break
        except KeyboardInterrupt:
            self._stop()
            raise
        self._drain(errors, results)
        if failed is None and len(results) == self.nproc:
            r = results[0]
            return TrainResult(**{**r, "out_dir": Path(r["out_dir"])})
        raise InputError(self._failure(errors, failed))

    def _drain(self, errors: dict, results: dict) -> None:
        while True:
            try:
                kind, rank, payload = self.queue.get(timeout=0.05)
            except (queue_mod.Empty, OSError, ValueError):
                return
            if kind == "error":
                errors.setdefault(rank, payload)
            elif kind == "done":
                results[rank] = payload

    def _failure(self, errors: dict, failed: int | None) -> str:
        keep = f"the last checkpoint in {self.job.out_dir} is kept; --resume continues"
        real = {r: m for r, m in errors.items() if not m.startswith("rank ") or " failed " not in m}
        if failed is not None:
            code = self.processes[failed].exitcode
            if code is not None and code < 0:
                name = signal.Signals(-code).name
                return f"rank {failed} of {self.nproc} was killed by {name}; {keep}"
        if real:
            r = min(real)
            return real[r] if r == 0 or self.nproc == 1 else f"rank {r}: {real[r]}"
        return f"rank {failed} of {self.nproc} exited with status {self.processes[failed].exitcode}; {keep}"


def check_nproc(nproc: int, backend: str = "auto") -> None:
    """One-line errors for a process count this machine cannot run."""
    if nproc < 1:
        raise InputError(f"--nproc must be at least 1, got {nproc}")
    if _backend(backend) == "nccl":
        n = torch.cuda.device_count()
        if nproc > n:
            raise InputError(f"--nproc {nproc} exceeds the {n} GPUs of this machine (one rank per GPU)")
    elif nproc > available_cores():
        raise InputError(f"--nproc {nproc} exceeds the {available_cores()} CPU cores available here (one rank "
                         f"per core at most; use torchrun across machines for more)")


def start_local(data: str, out_dir: str | os.PathLike, cfg: TrainConfig, nproc: int,
                space: SearchSpace = DEFAULT_SPACE, resume: bool = False, time_budget_s: float | None = None,
                threads: int | None = None, workers: int = 2, backend: str = "auto", stream: bool | None = None,
                memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB) -> LocalRun:
    """Spawn ``nproc`` ranks training a supernet on ``data`` (a ``--data`` spec, which each rank
    opens itself) into ``out_dir``."""
    if not isinstance(data, (str, os.PathLike)):
        raise InputError("distributed training needs the dataset as a --data spec (each rank loads it)")
    check_nproc(nproc, backend)
    job = TrainJob(str(data), str(out_dir), cfg.to_dict(), space.to_dict(), resume, time_budget_s, threads, workers,
                   backend, stream, memory_limit_mb)
    return LocalRun(job, nproc)


def train_distributed(data: str, out_dir: str | os.PathLike, cfg: TrainConfig, nproc: int,
                      space: SearchSpace = DEFAULT_SPACE, resume: bool = False, time_budget_s: float | None = None,
                      progress: Callable[[int, int, dict], None] | None = None, threads: int | None = None,
                      workers: int = 2, backend: str = "auto", stream: bool | None = None,
                      memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB) -> TrainResult:
    """:func:`~.training.train_supernet` on ``nproc`` processes of this machine."""
    return start_local(data, out_dir, cfg, nproc, space, resume, time_budget_s, threads, workers, backend, stream,
                       memory_limit_mb).wait(progress)
