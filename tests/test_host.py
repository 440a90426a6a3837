"""Using the library leaves the host process as it was: the allocator tuning is opt-in (the CLI
opts in), and scratch folders of processes that died mid-prediction are swept."""

import os
import subprocess
import sys

import pytest

from hwnas import allocator
from hwnas.devices import load_device
from hwnas.predictors import kernel_features
from hwnas.predictors.kernel_features import SCRATCH_PREFIX, optimized_kernels, sweep_scratch
from hwnas.zoo import zoo_models


class _RecordingLibc:
    """Stands in for glibc: records mallopt calls instead of changing the test process."""

    def __init__(self, calls):
        self.calls = calls
        self.gnu_get_libc_version = object()

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.fixture
def libc_calls(monkeypatch):
    import ctypes

    calls = []
    monkeypatch.setattr(allocator, "_STATE", {"wanted": False, "tuned": False})
    monkeypatch.setattr(ctypes, "CDLL", lambda name: _RecordingLibc(calls))
    monkeypatch.delenv("HWNAS_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    return calls


@pytest.fixture(scope="module")
def small_model():
    return zoo_models(1)[0].build()


def test_kernel_prediction_leaves_the_allocator_alone_unless_asked(libc_calls, small_model):
    dev = load_device("cpu-1t")
    assert optimized_kernels(small_model, dev)
    assert libc_calls == [] and not allocator.is_tuned()
    allocator.allow_tuning()
    assert optimized_kernels(small_model, dev)
    assert libc_calls == [(-3, 32 * 2**20), (-1, 512 * 2**20)] and allocator.is_tuned()
    optimized_kernels(small_model, dev)
    assert len(libc_calls) == 2  # once per process


@pytest.mark.parametrize("env, asked, tuned", [("0", True, False), ("1", False, True), (None, False, False)])
def test_environment_variable(libc_calls, monkeypatch, env, asked, tuned):
    if env is not None:
        monkeypatch.setenv("HWNAS_MALLOC_TUNING", env)
    allocator.allow_tuning(asked)
    assert allocator.tune_if_wanted() is tuned
    assert bool(libc_calls) is tuned


def test_the_cli_opts_in(libc_calls, monkeypatch, capsys):
    from hwnas import cli

    monkeypatch.setattr(sys, "argv", ["hwnas", "space", "sample", "--n", "1"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code in (0, None) and capsys.readouterr().out.startswith("r")
    assert allocator.tuning_wanted() and libc_calls == []  # applied at the first kernel prediction, not before


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_sweep_removes_only_dead_processes_scratch(tmp_path):
    dead = tmp_path / f"{SCRATCH_PREFIX}{_dead_pid()}-abc123"
    mine = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-def456"
    parent = tmp_path / f"{SCRATCH_PREFIX}{os.getppid()}-ghi789"  # another live process
    odd = tmp_path / f"{SCRATCH_PREFIX}xyz"  # not ours to judge
    other = tmp_path / "something-else-1"
    for d in (dead, mine, parent, odd, other):
        d.mkdir()
        (d / "optimized.onnx").write_bytes(b"x" * 1000)
    assert sweep_scratch(str(tmp_path)) == [str(dead)]
    assert not dead.exists()
    assert all(d.is_dir() for d in (mine, parent, odd, other))
    assert sweep_scratch(str(tmp_path)) == []


def test_scratch_is_named_with_the_pid_and_the_first_one_sweeps(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel_features, "_scratch_dir", lambda: str(tmp_path))
    monkeypatch.setattr(kernel_features, "_SWEPT", False)
    dead = tmp_path / f"{SCRATCH_PREFIX}{_dead_pid()}-left"
    dead.mkdir()
    with kernel_features._scratch() as tmp:
        assert os.path.basename(tmp).startswith(f"{SCRATCH_PREFIX}{os.getpid()}-")
        assert not dead.exists()
        dead.mkdir()
    with kernel_features._scratch():
        assert dead.exists()  # swept once per process, not on every prediction


def test_killed_prediction_leaves_scratch_that_the_next_process_sweeps(tmp_path):
    """A process killed mid-prediction leaves its folder; the next process's first prediction removes it."""
    code = ("import os, sys, time\n"
            "from hwnas.predictors import kernel_features as kf\n"
            "kf._scratch_dir = lambda: sys.argv[1]\n"
            "with kf._scratch() as tmp:\n"
            "    open(os.path.join(tmp, 'optimized.onnx'), 'wb').write(b'x' * 10000)\n"
            "    print(tmp, flush=True)\n"
            "    time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        left = p.stdout.readline().strip()
    finally:
        p.kill()
        p.wait()
    assert left and os.path.isdir(left)
    code = ("import sys\n"
            "from hwnas.predictors import kernel_features as kf\n"
            "kf._scratch_dir = lambda: sys.argv[1]\n"
            "with kf._scratch():\n"
            "    pass\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    assert not os.path.exists(left)
