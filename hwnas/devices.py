"""Device specs: how ONNX Runtime is set up for one measurement target (``devices/*.toml``).

A device is a machine *plus* the runtime settings that change latency: execution provider,
thread counts, execution mode, graph optimization level, precision, batch size and core
affinity.  Every key is required (except ``allow_spinning``, default true, and
``transformer_fusion``, default ``"none"``, which older specs lack); unknown keys are rejected so
a typo cannot pass silently.  ``transformer_fusion`` names a model type of
``onnxruntime.transformers``' optimizer whose fusions every model gets before it is timed or
predicted (:mod:`hwnas.device_graph`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

from .errors import InputError
from .paths import devices_dir

EXECUTION_MODES = ("sequential", "parallel")
OPT_LEVELS = ("disabled", "basic", "extended", "all")
PRECISIONS = ("fp32", "int8")
#: model types of ``onnxruntime.transformers``' optimizer a device may fuse for (``none``: no fusion)
TRANSFORMER_FUSIONS = ("none", "bert", "vit", "swin", "gpt2", "clip")


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    description: str
    execution_provider: str
    intra_op_threads: int
    inter_op_threads: int
    execution_mode: str
    graph_optimization_level: str
    precision: str
    batch_size: int
    core_affinity: tuple[int, ...]
    # Optional keys (older spec files and profiles lack them): their defaults keep the old meaning.
    allow_spinning: bool = True
    transformer_fusion: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "core_affinity", tuple(int(c) for c in self.core_affinity))
        self.validate()

    def validate(self) -> None:
        def bad(key: str, why: str) -> InputError:
            return InputError(f"device {self.name!r}: key {key!r} {why}")

        if not isinstance(self.name, str) or not self.name:
            raise InputError("device: key 'name' must be a non-empty string")
        if not isinstance(self.description, str):
            raise bad("description", f"must be a string, got {self.description!r}")
        for key in ("intra_op_threads", "inter_op_threads", "batch_size"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(key, f"must be an integer >= 1, got {v!r}")
        if self.execution_mode not in EXECUTION_MODES:
            raise bad("execution_mode", f"must be one of {list(EXECUTION_MODES)}, got {self.execution_mode!r}")
        if self.graph_optimization_level not in OPT_LEVELS:
            raise bad("graph_optimization_level", f"must be one of {list(OPT_LEVELS)}, got {self.graph_optimization_level!r}")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.execution_provider, str) or not self.execution_provider.endswith("ExecutionProvider"):
            raise bad("execution_provider", f"must name an ONNX Runtime provider, got {self.execution_provider!r}")
        if self.transformer_fusion not in TRANSFORMER_FUSIONS:
            raise bad("transformer_fusion", f"must be one of {list(TRANSFORMER_FUSIONS)}, got {self.transformer_fusion!r}")
        if not isinstance(self.allow_spinning, bool):
            raise bad("allow_spinning", f"must be true or false, got {self.allow_spinning!r}")
        if any(c < 0 for c in self.core_affinity):
            raise bad("core_affinity", "must list core numbers >= 0")

    def check_runnable(self) -> None:
        """Raise if this machine cannot run the spec (provider missing, cores absent, precision)."""
        import onnxruntime as ort

        if self.execution_provider not in ort.get_available_providers():
            raise InputError(
                f"device {self.name!r}: execution provider {self.execution_provider} is not available here "
                f"(available: {', '.join(ort.get_available_providers())})"
            )
        if self.core_affinity:
            allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
            missing = sorted(set(self.core_affinity) - set(allowed))
            if missing:
                raise InputError(
                    f"device {self.name!r}: core_affinity names cores {missing} this process cannot use "
                    f"(available: {sorted(allowed)})"
                )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["core_affinity"] = list(self.core_affinity)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "device") -> "DeviceSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        missing = sorted(required - set(d))
        if missing:
            raise InputError(f"{source}: missing key {missing[0]!r}" + (f" (and {missing[1:]})" if missing[1:] else ""))
        unknown = sorted(set(d) - fields)
        if unknown:
            raise InputError(f"{source}: unknown key {unknown[0]!r}; allowed keys: {sorted(fields)}")
        ca = d["core_affinity"]
        if not isinstance(ca, (list, tuple)) or not all(isinstance(c, int) and not isinstance(c, bool) for c in ca):
            raise InputError(f"{source}: key 'core_affinity' must be a list of core numbers, got {ca!r}")
        try:
            return cls(**{k: d[k] for k in fields if k in d})
        except InputError as e:
            raise InputError(f"{source}: {e}") from None


def list_devices() -> list[DeviceSpec]:
    """The bundled device specs in ``devices/``, by name."""
    out = []
    for p in sorted(devices_dir().glob("*.toml")):
        out.append(load_device(str(p)))
    return out


def load_device(name_or_path: str) -> DeviceSpec:
    """A device by bundled name (``cpu-1t``) or by path to a ``.toml`` file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or os.sep in name_or_path:
        path = p
        if not path.is_file():
            raise InputError(f"device file {name_or_path} does not exist")
    else:
        path = devices_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            known = sorted(q.stem for q in devices_dir().glob("*.toml"))
            raise InputError(f"unknown device {name_or_path!r}; known devices: {', '.join(known)} (or pass a .toml path)")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"device file {path}: cannot read it ({e.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"device file {path}: not valid TOML ({e})") from None
    return DeviceSpec.from_dict(data, source=f"device file {path}")
