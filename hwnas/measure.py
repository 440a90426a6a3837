"""Where latency is measured: the measurement engine.

Everything hwnas claims about latency comes through :class:`Measurer`:

* the ONNX Runtime session is built from a :class:`~hwnas.devices.DeviceSpec` (provider,
  threads, execution mode, optimization level) with the process pinned to the spec's cores;
* inputs are seeded random tensors; runs are timed one by one with ``perf_counter_ns``
  after a warm-up;
* drift is defeated with a **canary**: a fixed small model timed right before and after
  every round of the target (``C T C T C T C``).  Each round gives a ratio
  ``target / sqrt(canary_before * canary_after)``; the median ratio is the
  canary-relative latency, robust to the machine speeding up or slowing down mid-run
  (FIELD-NOTES §4);
* the noise seen is reported: the spread of the per-round ratios and the canary's drift;
* a machine-wide file lock makes sure two measurements never run at once on one machine,
  also across processes;
* :meth:`Measurer.profile_kernels` gives per-kernel timings from ORT's profiler, mapped onto
  the saved optimized graph, and the ratio of their sum to the unprofiled end-to-end time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import onnx

from .devices import DeviceSpec
from .errors import HwnasError, first_line
from .onnx_io import check_feed_size, seeded_normal

#: The canary: a mid-size architecture of the space (160 px, k5e4 everywhere, depth 3),
#: seeded weights.  A mid-size canary tracks memory-bound slow-downs that a tiny,
#: cache-resident one misses: on the project machine a 1.6 ms canary left two passes agreeing
#: within ±5% for 65% of architectures; this ~5 ms canary for 100% (benchmarks/).
CANARY_ARCH = "r160_w1.0_k5e4-k5e4-k5e4_k5e4-k5e4-k5e4_k5e4-k5e4-k5e4_k5e4-k5e4-k5e4_k5e4-k5e4-k5e4"
CANARY_SEED = 0

_OPT_LEVEL_NAMES = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass(frozen=True)
class MeasureConfig:
    """How long to time things.  Times in seconds; counts are runs (inferences)."""

    warmup_runs: int = 3
    warmup_s: float = 0.05
    rounds: int = 5
    max_rounds: int = 12
    target_iqr_rel: float = 0.03
    round_min_runs: int = 3
    round_min_s: float = 0.06
    round_max_runs: int = 400
    canary_min_runs: int = 3
    canary_min_s: float = 0.025
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.round_min_runs < 1 or self.canary_min_runs < 1:
            raise ValueError("rounds, round_min_runs and canary_min_runs must be >= 1")
        if self.max_rounds < self.rounds:
            raise ValueError("max_rounds must be >= rounds")

    @classmethod
    def small(cls) -> "MeasureConfig":
        """For sub-millisecond targets (single blocks, kernels): fewer, shorter rounds."""
        return cls(warmup_runs=3, warmup_s=0.02, rounds=3, max_rounds=6, round_min_runs=5, round_min_s=0.02)

    @classmethod
    def quick(cls) -> "MeasureConfig":
        """Short timings, for tests and smoke checks (figures are noisier)."""
        return cls(warmup_runs=1, warmup_s=0.0, rounds=2, max_rounds=2, round_min_runs=3, round_min_s=0.01,
                   canary_min_runs=3, canary_min_s=0.005)


@dataclass(frozen=True)
class LatencyStats:
    """Robust statistics of a set of run times, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    mean_ms: float
    min_ms: float
    count: int

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> "LatencyStats":
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no samples")
        p10, p25, p50, p75, p90 = np.percentile(a, [10, 25, 50, 75, 90])
        return cls(float(p50), float(p10), float(p90), float(p75 - p25), float(a.mean()), float(a.min()), int(a.size))


@dataclass(frozen=True)
class Measurement:
    """One target measured with canary bracketing.

    ``latency_ms``: median over all timed runs of the target (absolute, today's machine state).
    ``relative_to_canary``: median over rounds of target/canary; multiply by a profile's
    canary reference to get drift-corrected milliseconds.
    ``noise_rel``: (max - min) / median of the per-round ratios - the noise this measurement saw.
    ``canary_drift``: last canary median / first canary median - 1.
    """

    target: str
    stats: LatencyStats
    canary_ms: float
    relative_to_canary: float
    round_ratios: tuple[float, ...]
    noise_rel: float
    canary_drift: float
    session_build_s: float

    @property
    def latency_ms(self) -> float:
        return self.stats.median_ms

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "latency_ms": self.stats.median_ms,
            "latency_p10_ms": self.stats.p10_ms,
            "latency_p90_ms": self.stats.p90_ms,
            "latency_iqr_ms": self.stats.iqr_ms,
            "latency_mean_ms": self.stats.mean_ms,
            "latency_min_ms": self.stats.min_ms,
            "runs": self.stats.count,
            "relative_to_canary": self.relative_to_canary,
            "canary_ms": self.canary_ms,
            "round_ratios": list(self.round_ratios),
            "noise_rel": self.noise_rel,
            "canary_drift": self.canary_drift,
        }


@dataclass(frozen=True)
class KernelRecord:
    """One post-fusion kernel as ONNX Runtime ran it; ``duration_ms`` is the median over runs."""

    node_name: str
    op_type: str
    domain: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]
    attributes: dict
    duration_ms: float
    node_index: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shapes"] = [list(s) for s in self.input_shapes]
        d["output_shapes"] = [list(s) for s in self.output_shapes]
        return d


@dataclass(frozen=True)
class KernelProfile:
    """Per-kernel timings of one model, with the sum compared to an unprofiled timer."""

    records: tuple[KernelRecord, ...]
    kernel_sum_ms: float
    e2e_ms: float
    profiled_runs: int
    canary_ms: float

    def relative(self, duration_ms: float) -> float:
        """A duration in canary units (the canary was timed right before and after)."""
        return duration_ms / self.canary_ms

    @property
    def kernel_sum_ratio(self) -> float:
        """Sum of kernel medians / unprofiled end-to-end median (below 1: framework overhead)."""
        return self.kernel_sum_ms / self.e2e_ms


# --------------------------------------------------------------------------------------------
# sessions, affinity, the machine-wide lock


def session_options(device: DeviceSpec):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = device.intra_op_threads
    so.inter_op_num_threads = device.inter_op_threads
    so.execution_mode = (
        ort.ExecutionMode.ORT_SEQUENTIAL if device.execution_mode == "sequential" else ort.ExecutionMode.ORT_PARALLEL
    )
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVEL_NAMES[device.graph_optimization_level])
    so.log_severity_level = 3
    if not device.allow_spinning:
        # idle intra-op threads sleep instead of spinning: on a shared machine spinning threads
        # fight other tenants for the cores, and timings flip between two regimes
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def _model_source(model: onnx.ModelProto | bytes | str | os.PathLike) -> bytes | str:
    if isinstance(model, (bytes, str)):
        return model
    if isinstance(model, os.PathLike):
        return os.fspath(model)
    return model.SerializeToString()


def make_session(model: onnx.ModelProto | bytes | str | os.PathLike, device: DeviceSpec, *,
                 profile_prefix: str | None = None, optimized_path: str | None = None, prepack: bool = True):
    """An InferenceSession configured from ``device`` (model as proto, bytes or file path).

    Call inside :func:`pinned` so its threads inherit the core affinity.  With
    ``optimized_path`` the optimized graph is saved there, its weights in a side file, so
    reading the graph back is cheap."""
    import onnxruntime as ort

    so = session_options(device)
    if not prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    if optimized_path:
        so.optimized_model_filepath = optimized_path
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                    os.path.basename(optimized_path) + ".weights")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    try:
        return ort.InferenceSession(_model_source(model), sess_options=so, providers=[device.execution_provider])
    except Exception as e:  # ORT raises its own exception types
        raise HwnasError(f"ONNX Runtime could not load the model: {first_line(e)}") from None


@contextlib.contextmanager
def pinned(device: DeviceSpec) -> Iterator[None]:
    """Pin the calling thread (and threads it creates) to the device's cores, then restore."""
    if not device.core_affinity or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(device.core_affinity))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def lock_path() -> Path:
    return Path(os.environ.get("HWNAS_LOCK_DIR") or tempfile.gettempdir()) / "hwnas-measure.lock"


@contextlib.contextmanager
def machine_lock(wait_message: bool = True) -> Iterator[None]:
    """Exclusive, machine-wide lock: never two measurements at once on one machine.  A lock
    file that cannot be made or locked (``HWNAS_LOCK_DIR`` a file, missing, read-only) is a
    one-line HwnasError."""
    path = lock_path()

    def unusable(e: OSError) -> HwnasError:
        return HwnasError(f"cannot use the measurement lock file {path} ({e.strerror or first_line(e)}); "
                          "set HWNAS_LOCK_DIR to a writable directory")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")
    except OSError as e:
        raise unusable(e) from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait_message:
                import sys

                print("waiting for another hwnas measurement on this machine to finish...", file=sys.stderr)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX)
            except OSError as e:
                raise unusable(e) from None
        except OSError as e:  # a file system without locks
            raise unusable(e) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def static_input_shapes(session) -> dict[str, tuple[int, ...]]:
    """Every graph input's shape; HwnasError asking for ``--input-shape`` if one is dynamic."""
    shapes = {}
    for inp in session.get_inputs():
        if any(not isinstance(d, int) for d in inp.shape):
            raise HwnasError(
                f"input {inp.name!r} has dynamic shape {inp.shape}; pass --input-shape {inp.name}=1,3,224,224"
            )
        shapes[inp.name] = tuple(inp.shape)
    return shapes


#: ORT input type (substring of ``tensor(...)``, most specific first) -> the feed's numpy dtype
_FEED_DTYPES = (("float16", np.float16), ("float", np.float32), ("int64", np.int64), ("int32", np.int32),
                ("bool", np.bool_))


def random_feed(session, seed: int) -> dict[str, np.ndarray]:
    """Seeded random inputs for every graph input of ``session`` (shapes must be static): float
    inputs standard normal, drawn in their own dtype, integer and bool inputs zeros.  A feed over
    ``MAX_FEED_BYTES`` is an InputError before anything is allocated."""
    shapes = static_input_shapes(session)
    dtypes = {}
    for inp in session.get_inputs():
        dt = next((np.dtype(t) for key, t in _FEED_DTYPES if key in inp.type), None)
        if dt is None:
            raise HwnasError(f"input {inp.name!r} has unsupported type {inp.type}")
        dtypes[inp.name] = dt
    check_feed_size([(name, shapes[name], dt) for name, dt in dtypes.items()])
    rng = np.random.default_rng(seed)
    return {name: seeded_normal(rng, shapes[name], dt) if dt.kind == "f" else np.zeros(shapes[name], dtype=dt)
            for name, dt in dtypes.items()}


def _time_runs(session, feed, min_runs: int, min_s: float, max_runs: int) -> list[float]:
    """Run ``session`` at least ``min_runs`` times and ``min_s`` seconds; per-run ms."""
    run = session.run
    out: list[float] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(min_s * 1e9)
    while len(out) < min_runs or (clock() < deadline and len(out) < max_runs):
        t0 = clock()
        run(None, feed)
        out.append((clock() - t0) / 1e6)
    return out


def _iqr_rel(values: Sequence[float]) -> float:
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float((q75 - q25) / q50)


# --------------------------------------------------------------------------------------------
# the measurer


def canary_model(batch: int = 1) -> onnx.ModelProto:
    from .builders.onnx_graph import build_onnx
    from .space import Arch

    return build_onnx(Arch.parse(CANARY_ARCH), batch=batch, seed=CANARY_SEED)


@dataclass
class _Prepared:
    name: str
    session: object
    feed: dict
    build_s: float


class Measurer:
    """Measures ONNX models on one device, bracketing each round with the canary.

    Use as a context manager: it pins the cores, takes the machine-wide lock and keeps the
    canary session warm for the whole batch of measurements::

        with Measurer(load_device("cpu-1t")) as m:
            result = m.measure(model)
    """

    def __init__(self, device: DeviceSpec, config: MeasureConfig | None = None) -> None:
        self.device = device
        self.config = config or MeasureConfig()
        self._stack: contextlib.ExitStack | None = None
        self._canary: _Prepared | None = None
        self.canary_history_ms: list[float] = []

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> "Measurer":
        self.device.check_runnable()
        self._stack = contextlib.ExitStack()
        try:
            self._stack.enter_context(machine_lock())
            self._stack.enter_context(pinned(self.device))
            self._canary = self._prepare(canary_model(self.device.batch_size), "canary")  # in the device's precision
            self._warm(self._canary)
        except BaseException:  # e.g. a feed too large: unpin and unlock before the error goes up
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._canary = None
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def _require_open(self) -> None:
        if self._stack is None:
            raise RuntimeError("use Measurer as a context manager: `with Measurer(device) as m:`")

    def _prepare(self, model: onnx.ModelProto | bytes | str, name: str) -> _Prepared:
        from .device_graph import device_graph

        model = device_graph(model, self.device)  # fused / int8 devices time the graph they run
        t0 = time.perf_counter()
        sess = make_session(model, self.device)
        feed = random_feed(sess, self.config.seed)
        return _Prepared(name, sess, feed, time.perf_counter() - t0)

    def _warm(self, p: _Prepared) -> None:
        c = self.config
        _time_runs(p.session, p.feed, c.warmup_runs, c.warmup_s, 10_000)

    def _canary_round(self, config: MeasureConfig | None = None) -> float:
        c = config or self.config
        assert self._canary is not None
        ms = float(np.median(_time_runs(self._canary.session, self._canary.feed, c.canary_min_runs,
                                        c.canary_min_s, c.round_max_runs)))
        self.canary_history_ms.append(ms)
        return ms

    # -- public API -------------------------------------------------------------------------
    def measure(self, model: onnx.ModelProto | bytes, name: str = "model",
                config: MeasureConfig | None = None) -> Measurement:
        """Measure one model: warm-up, then ``rounds`` rounds each bracketed by canary rounds.

        While the per-round ratios disagree (IQR above ``target_iqr_rel`` of the median: the
        machine is noisy right now), more rounds are added, up to ``max_rounds``.
        """
        self._require_open()
        c = config or self.config
        target = self._prepare(model, name)
        _time_runs(target.session, target.feed, c.warmup_runs, c.warmup_s, 10_000)
        canaries = [self._canary_round(c)]
        samples: list[float] = []
        ratios: list[float] = []
        while len(ratios) < c.rounds or (len(ratios) < c.max_rounds and _iqr_rel(ratios) > c.target_iqr_rel):
            runs = _time_runs(target.session, target.feed, c.round_min_runs, c.round_min_s, c.round_max_runs)
            samples.extend(runs)
            canaries.append(self._canary_round(c))
            ratios.append(float(np.median(runs)) / math.sqrt(canaries[-2] * canaries[-1]))
        rel = float(np.median(ratios))
        return Measurement(
            target=name,
            stats=LatencyStats.of(samples),
            canary_ms=float(np.exp(np.mean(np.log(canaries)))),
            relative_to_canary=rel,
            round_ratios=tuple(ratios),
            noise_rel=float((max(ratios) - min(ratios)) / rel),
            canary_drift=float(canaries[-1] / canaries[0] - 1.0),
            session_build_s=target.build_s,
        )

    def measure_canary(self, rounds: int = 5) -> LatencyStats:
        """The canary alone, ``rounds`` rounds: the machine's state right now."""
        self._require_open()
        return LatencyStats.of([self._canary_round() for _ in range(rounds)])

    def profile_kernels(self, model: onnx.ModelProto | bytes, runs: int = 10, warmup: int = 3) -> KernelProfile:
        """Per-kernel timings from ORT's profiler, attributes from the saved optimized graph.

        Kernel durations are medians over ``runs`` profiled runs (warm-up runs dropped); the
        unprofiled end-to-end median is measured on a separate session right after, so
        ``kernel_sum_ratio`` calibrates kernel sums against real latency.  The canary is
        timed right before and after, so durations convert to drift-free canary units.
        """
        self._require_open()
        from .device_graph import device_graph

        model = device_graph(model, self.device)
        canary_before = self._canary_round()
        with tempfile.TemporaryDirectory(prefix="hwnas-prof-") as tmp:
            opt_path = os.path.join(tmp, "optimized.onnx")
            sess = make_session(model, self.device, profile_prefix=os.path.join(tmp, "trace"),
                                optimized_path=opt_path)
            feed = random_feed(sess, self.config.seed)
            for _ in range(warmup + runs):
                sess.run(None, feed)
            trace_file = sess.end_profiling()
            events = json.loads(Path(trace_file).read_text())
            node_attrs = optimized_node_attributes(opt_path)
        records = parse_kernel_trace(events, node_attrs, skip_runs=warmup)
        plain = self._prepare(model, "e2e")
        self._warm(plain)
        e2e = LatencyStats.of(
            _time_runs(plain.session, plain.feed, self.config.round_min_runs, self.config.round_min_s,
                       self.config.round_max_runs)
        ).median_ms
        canary_after = self._canary_round()
        total = float(sum(r.duration_ms for r in records))
        return KernelProfile(tuple(records), total, e2e, runs, math.sqrt(canary_before * canary_after))


# --------------------------------------------------------------------------------------------
# ORT profiler trace parsing


def optimized_node_attributes(path: str) -> dict[str, dict]:
    """node name -> {op_type, domain, attributes} from a saved optimized ONNX graph."""
    try:
        m = onnx.load(path, load_external_data=False)
    except Exception:
        return {}
    return {node.name: {"op_type": node.op_type, "domain": node.domain, "attributes": node_attributes(node)}
            for node in m.graph.node}


_ATTR = onnx.AttributeProto


def node_attributes(node: onnx.NodeProto) -> dict:
    """A node's scalar and list attributes, strings decoded (tensors and graphs left out)."""
    attrs = {}
    for a in node.attribute:
        t = a.type  # the common types read directly: this runs for every kernel of every prediction
        if t == _ATTR.INT:
            attrs[a.name] = a.i
            continue
        if t == _ATTR.INTS:
            attrs[a.name] = list(a.ints)
            continue
        if t == _ATTR.FLOAT:
            attrs[a.name] = a.f
            continue
        if t == _ATTR.STRING:
            attrs[a.name] = a.s.decode(errors="replace")
            continue
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode(errors="replace")
        elif isinstance(v, (list, tuple)):
            v = [x.decode(errors="replace") if isinstance(x, bytes) else x for x in v]
            if not all(isinstance(x, (int, float, str)) for x in v):
                continue
        elif not isinstance(v, (int, float, str)):
            continue
        attrs[a.name] = v
    return attrs


def _shapes(entries) -> tuple[tuple[int, ...], ...]:
    out = []
    for e in entries or []:
        for _dtype, shape in e.items():
            out.append(tuple(int(d) for d in shape))
    return tuple(out)


def parse_kernel_trace(events: list[dict], node_attrs: dict[str, dict], skip_runs: int = 0) -> list[KernelRecord]:
    """Turn an ORT Chrome-trace into per-node :class:`KernelRecord` (median over kept runs).

    Runs are delimited by the ``model_run`` session events; the first ``skip_runs`` runs are
    warm-up and dropped.
    """
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    kept = runs[skip_runs:]
    if not kept:
        raise HwnasError("profiler trace holds no timed runs")
    lo = kept[0][0]
    per_node: dict[str, list[float]] = {}
    info: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        if e["ts"] < lo:
            continue
        name = e["name"][: -len("_kernel_time")]
        per_node.setdefault(name, []).append(e["dur"] / 1000.0)
        info.setdefault(name, e.get("args", {}))
    records = []
    for name, durs in per_node.items():
        args = info[name]
        meta = node_attrs.get(name, {})
        records.append(
            KernelRecord(
                node_name=name,
                op_type=str(args.get("op_name", meta.get("op_type", "?"))),
                domain=str(meta.get("domain", "")),
                input_shapes=_shapes(args.get("input_type_shape")),
                output_shapes=_shapes(args.get("output_type_shape")),
                attributes=meta.get("attributes", {}),
                duration_ms=float(durs[0] if len(durs) == 1 else np.median(durs)),
                node_index=int(args.get("node_index", -1)),
            )
        )
    records.sort(key=lambda r: r.node_index)
    return records
