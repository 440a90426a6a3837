"""Profiles of the vit space: a block lookup table and end-to-end architectures, measured with
the same engine and store as the mbv3 campaign (:mod:`hwnas.profile.campaign`), canary included,
so figures are in the same canary units.

Parts:

``block``  every stem (patch embedding at (patch, resolution, embed)), encoder layer (at
           (tokens, embed, heads, mlp)) and head (at (tokens, embed)) the space can produce;
``arch``   the space's smallest and largest architecture, then seeded uniform samples.

The profile's meta records ``space_name = "vit"`` and the space's choices; mbv3 code refuses it
with a one-line error (:func:`hwnas.spaces.check_profile_space`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..device_graph import device_graph
from ..devices import DeviceSpec
from ..errors import ProfileError
from ..measure import MeasureConfig, Measurer
from ..profile.campaign import (PartReport, ProgressFactory, Task, _null_progress, add_part_seconds, check_resume,
                                measure_parts, profile_store, write_new_meta)
from .vit import SPACE_NAME, VitArch, VitSpace, head_macs, head_params, layer_macs, layer_params, stem_macs, stem_params, vit_cost
from .vit_onnx import build_head, build_layer, build_stem, build_vit_onnx

VIT_PARTS = ("block", "arch")

#: Blocks get more rounds than architectures: one noisy table entry biases every architecture that
#: uses it (on a loaded machine, default timing left entries with 20-56% per-round spread), and a
#: vit block runs 0.05-6 ms, so the extra rounds cost about a minute for the whole table.
BLOCK_CONFIG = MeasureConfig(rounds=7, max_rounds=20)


@dataclass(frozen=True)
class VitProfilePlan:
    """What a vit profile holds and how long it may take (``time_budget_min`` covers both parts)."""

    n_archs: int = 150
    time_budget_min: float = 10.0
    seed: int = 0
    shares: dict = field(default_factory=lambda: {"block": 0.35, "arch": 0.65})

    def __post_init__(self) -> None:
        if not self.time_budget_min > 0:
            raise ProfileError(f"time budget (--time-budget-min) must be positive, got {self.time_budget_min}")
        if self.n_archs < 0:
            raise ProfileError("n_archs must be >= 0")


def stem_key(patch: int, resolution: int, embed: int) -> str:
    return f"vit_stem_p{patch}_r{resolution}_e{embed}"


def layer_key(tokens: int, embed: int, heads: int, mlp: int) -> str:
    return f"vit_layer_t{tokens}_e{embed}_h{heads}_m{mlp}"


def head_key(tokens: int, embed: int) -> str:
    return f"vit_head_t{tokens}_e{embed}"


def arch_keys(arch: VitArch) -> tuple[str, list[str], str]:
    """(stem key, layer keys, head key): the table entries an architecture sums."""
    t, e = arch.tokens, arch.embed
    return (stem_key(arch.patch, arch.resolution, e), [layer_key(t, e, x.heads, x.mlp) for x in arch.layers],
            head_key(t, e))


def block_tasks(space: VitSpace, batch: int = 1) -> list[Task]:
    """Every stem, layer and head of the space (layers first by tokens, then stems and heads)."""
    tasks: list[Task] = []
    for p, r, t in space.token_counts():
        for e in space.embeds:
            tasks.append(Task("block", stem_key(p, r, e), {"part": "stem", "patch": p, "resolution": r, "embed": e},
                              lambda p=p, r=r, e=e: build_stem(p, r, e, batch), stem_macs(p, r, e), stem_params(p, r, e)))
            tasks.append(Task("block", head_key(t, e), {"part": "head", "tokens": t, "embed": e},
                              lambda t=t, e=e: build_head(t, e, batch), head_macs(e), head_params(e)))
            for h in space.heads:
                for m in space.mlp_ratios:
                    tasks.append(Task("block", layer_key(t, e, h, m),
                                      {"part": "layer", "tokens": t, "embed": e, "heads": h, "mlp": m},
                                      lambda t=t, e=e, h=h, m=m: build_layer(t, e, h, m, batch),
                                      layer_macs(t, e, m), layer_params(e, m)))
    return tasks


def profile_archs(space: VitSpace, n: int, seed: int) -> list[VitArch]:
    """The space's extremes, then ``n`` seeded uniform samples (distinct)."""
    archs = [space.smallest(), space.largest()][:n]
    for a in space.sample_many(min(n + 2, space.size), seed=seed + 1):
        if len(archs) >= n:
            break
        if a not in archs:
            archs.append(a)
    return archs


def arch_tasks(archs: list[VitArch], batch: int = 1) -> list[Task]:
    out = []
    for a in archs:
        c = vit_cost(a)
        out.append(Task("arch", str(a), {"arch": str(a)}, lambda a=a: build_vit_onnx(a, batch), c.macs, c.params))
    return out


def build_vit_profile(device: DeviceSpec, out_dir: str | Path, pplan: VitProfilePlan | None = None, *,
                      space: VitSpace | None = None, resume: bool = False, config: MeasureConfig | None = None,
                      progress: ProgressFactory = _null_progress,
                      parts: tuple[str, ...] = VIT_PARTS) -> list[PartReport]:
    """Measure a vit-space profile into ``out_dir``; Ctrl-C loses at most the measurement in flight,
    ``resume=True`` continues."""
    pplan = pplan or VitProfilePlan()
    space = space or VitSpace()
    out_dir = Path(out_dir)
    with profile_store(device, out_dir, resume) as store:
        if resume:
            if store.get_meta("space_name", "mbv3") != SPACE_NAME:
                raise ProfileError(f"profile {out_dir} is not a vit-space profile; cannot resume it with --space vit")
            check_resume(store, device, space, pplan)  # type: ignore[arg-type]  (uses only to_dict and seed)
        else:
            write_new_meta(store, device, space, pplan, space_name=SPACE_NAME)  # type: ignore[arg-type]
        import hwnas

        store.set_meta("hwnas_version", hwnas.__version__)
        task_lists: dict[str, Callable[[], list[Task]]] = {
            "block": lambda: block_tasks(space, device.batch_size),
            "arch": lambda: arch_tasks(profile_archs(space, pplan.n_archs, pplan.seed), device.batch_size),
        }
        with Measurer(device, config) as m:

            def one(part: str, t: Task) -> None:
                model = device_graph(t.build(), m.device)
                cfg = config or (BLOCK_CONFIG if part == "block" else MeasureConfig())
                store.add_measurement(part, t.key, t.target, m.measure(model, t.key, cfg), t.macs, t.params)

            reports = measure_parts(parts, task_lists, pplan.shares, pplan.time_budget_min * 60.0, store.done_keys,
                                    one, progress)
        complete = all(r.done_before + r.done_now == r.planned for r in reports) and set(parts) == set(VIT_PARTS)
        store.set_meta("status", "complete" if complete else "partial")
        add_part_seconds(store, reports)
        return reports


__all__ = ["VitProfilePlan", "build_vit_profile", "block_tasks", "arch_tasks", "profile_archs", "arch_keys",
           "stem_key", "layer_key", "head_key", "VIT_PARTS"]
