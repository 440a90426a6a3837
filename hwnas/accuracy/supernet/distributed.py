"""The torch.distributed side of supernet training: the launch environment (:class:`DistEnv`),
one rank's view of the process group (:class:`RankContext`) and torch thread settings.

Every rank trains the same subnets at every step: the sandwich's subnets are drawn from the
step's seeded generator (``default_rng([seed, 2, epoch, step])``, identical on every rank, and
the augmentation shifts it draws first are drawn for the whole global batch), and
:meth:`RankContext.sync` checks that the ranks agree on them before it sums their gradients.
Each rank's gradient is of the mean loss over its shard; it is weighted by the shard's share of
the global batch before the sum (one ``all_reduce`` of all gradients and the loss per step), so
the update is the one-process update of the global batch, except that batch normalisation uses
each rank's own batch statistics (as torch's DDP does).  Launching is in :mod:`.launch`.
"""

from __future__ import annotations

import hashlib
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from ...errors import InputError

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""What torchrun (or any launcher) sets for each process."""
BROADCAST_CHUNK = 4 << 20
"""Bytes per broadcast when rank 0 sends a file (a resume checkpoint) to the other ranks."""


@dataclass(frozen=True)
class DistEnv:
    """A process's place in a torch.distributed job, as a launcher sets it in the environment."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "DistEnv | None":
        """The job from ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
        ``MASTER_PORT``; ``None`` when none is set; a one-line error when some are missing
        or invalid."""
        env = os.environ if environ is None else environ
        present = [k for k in ENV_KEYS if env.get(k)]
        if not present:
            return None
        missing = [k for k in ENV_KEYS if not env.get(k)]
        if missing:
            raise InputError(f"incomplete torch.distributed environment: {', '.join(present)} set but "
                             f"{', '.join(missing)} missing (launch with torchrun, or set all of {', '.join(ENV_KEYS)})")
        try:
            rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
            port = int(env["MASTER_PORT"])
        except ValueError:
            raise InputError("RANK, WORLD_SIZE, LOCAL_RANK and MASTER_PORT must be integers, got "
                             + ", ".join(f"{k}={env[k]!r}" for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"))) from None
        if world < 1 or not 0 <= rank < world or local < 0 or not 0 < port < 65536:
            raise InputError(f"invalid torch.distributed environment: RANK={rank} WORLD_SIZE={world} "
                             f"LOCAL_RANK={local} MASTER_PORT={port}")
        return cls(rank, world, local, env["MASTER_ADDR"], port)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_rank(nproc: int, cores: int | None = None) -> int:
    """Torch threads for each of ``nproc`` processes sharing ``cores`` cores (at least one)."""
    return max(1, (cores or available_cores()) // max(1, nproc))


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (unchanged if ``n`` is None), restoring the count after."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _arch_code(archs: Sequence) -> int:
    """A 62-bit code of a list of architectures (equal on every rank iff the lists agree)."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, archs)).encode()).digest()[:8], "little") >> 2


class RankContext:
    """One rank of an initialised process group: gradient sync, agreement and broadcasts."""

    def __init__(self, rank: int, world: int, device: torch.device | str = "cpu") -> None:
        self.rank, self.world = rank, world
        self.device = torch.device(device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _all_reduce(self, t: torch.Tensor, op=None) -> torch.Tensor:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM if op is None else op)
        return t

    def _max(self, values: Sequence[int]) -> list[int]:
        import torch.distributed as dist

        t = torch.tensor(list(values), dtype=torch.int64, device=self.device)
        return [int(v) for v in self._all_reduce(t, dist.ReduceOp.MAX).cpu()]

    def sync(self, net: nn.Module, archs: Sequence, loss: float, fraction: float) -> float:
        """After the step's backward passes: check every rank trained ``archs``, then replace each
        gradient by the sum over ranks of ``fraction`` x gradient; returns the global loss."""
        code = _arch_code(archs)
        hi, neg_lo = self._max([code, -code])
        if hi != -neg_lo:
            raise RuntimeError("ranks sampled different subnets in one step (seeds out of step)")
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads] + [torch.tensor([loss], device=self.device, dtype=grads[0].dtype)])
        flat.mul_(fraction)
        self._all_reduce(flat)
        k = 0
        for g in grads:
            g.copy_(flat[k:k + g.numel()].view_as(g))
            k += g.numel()
        return float(flat[k])

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any."""
        return bool(self._max([int(flag)])[0])

    def agree(self, error: BaseException | None) -> None:
        """Raise on every rank if any rank failed: its own ``error``, or a pointer to the first
        failed rank's."""
        first = self._max([-(self.rank + 1) if error is None else self.world - self.rank])[0]
        if first <= 0:
            return
        if error is not None:
            raise error
        raise InputError(f"rank {self.world - first} failed (its error is reported there)")

    def broadcast_bytes(self, payload: bytes | None) -> bytes:
        """Rank 0's ``payload`` on every rank."""
        import torch.distributed as dist

        n = torch.tensor([len(payload) if self.is_main and payload is not None else 0], dtype=torch.int64,
                         device=self.device)
        dist.broadcast(n, 0)
        buf = (torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(self.device) if self.is_main
               else torch.empty(int(n), dtype=torch.uint8, device=self.device))
        for k in range(0, int(n), BROADCAST_CHUNK):  # a checkpoint goes in pieces of a few MB
            dist.broadcast(buf[k:k + BROADCAST_CHUNK], 0)
        return bytes(buf.cpu().numpy().tobytes())

    def broadcast_state(self, net: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank."""
        import torch.distributed as dist

        with torch.no_grad():
            for t in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(t.data, 0)

    def check_in_sync(self, net: nn.Module) -> None:
        """Raise if the ranks' parameters have drifted apart (a float64 checksum)."""
        import torch.distributed as dist

        with torch.no_grad():
            s = torch.stack([p.double().sum() for p in net.parameters()]).sum().reshape(1)
        both = torch.cat([s, -s])
        self._all_reduce(both, dist.ReduceOp.MAX)
        if float(both[0]) != -float(both[1]):
            raise RuntimeError("ranks' weights drifted apart")


@contextmanager
def signals_held(on: bool = True) -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs (a rank process writing a checkpoint)."""
    if not on:
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def guarded(fn: Callable, held: bool) -> Callable:
    """``fn`` run with signals held (see :func:`signals_held`) when ``held``."""
    def run(*a, **k):
        with signals_held(held):
            return fn(*a, **k)
    return run
