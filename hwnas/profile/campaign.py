"""Building a device profile: what is measured, in which order, within a time budget.

A profile has four parts, measured in this order:

``block``
    the block lookup table: every distinct block configuration of the space at the
    profile's resolutions and widths, as single-block ONNX graphs, plus stem and head;
``kernel``
    the kernel campaign: standalone ops with shapes sampled from real-CNN ranges, transformer
    shapes, and the LRN of older CNNs (:mod:`hwnas.kernels`), so predictors can cover models
    outside the space; each graph is measured end to end and profiled per kernel (records
    stored under its key);
``kernel_profile``
    per-kernel records from ORT's profiler on full models of the space;
``zoo``
    models of other CNN families (:mod:`hwnas.zoo`: ResNet, VGG, MobileNetV2, ShuffleNet,
    SqueezeNet, EfficientNet, DenseNet, Inception, ResNeXt / RegNetY, RepVGG styles; ConvNeXt and
    RegNetX, opened; the transformer families of :mod:`hwnas.zoo_transformers`; then the sealed
    families of :mod:`hwnas.zoo_sealed`: GhostNet, MnasNet, Xception, SqueezeNext), measured and
    profiled per kernel, so predictors can be judged on whole families they never saw;
``arch``
    end-to-end measurements of sampled architectures, for fitting and honest evaluation.

Each part has a share of the time budget (unused time carries over to the next part).  The
task lists are deterministic for a seed, finished keys are skipped on ``--resume``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import onnx

from .. import fingerprint
from ..cost import arch_cost, block_cost, head_cost, stem_cost
from ..device_graph import device_graph
from ..devices import DeviceSpec
from ..errors import DeviceMismatchError, InputError, ProfileError
from ..layers import BlockSpec, HeadSpec, StemSpec, plan
from ..measure import CANARY_ARCH, CANARY_SEED, MeasureConfig, Measurer
from ..space import N_STAGES, Arch, Block, SearchSpace, draw_unique
from ..validate import positive_number
from .store import ProfileStore

PARTS = ("block", "kernel", "kernel_profile", "zoo", "arch")


#: the fields of :class:`ProfilePlan` that size a full profile (what a few-shot or a ``vit`` profile
#: does not take); a campaign kernel kind added later adds its count here
SIZE_FIELDS = ("n_archs", "n_kernels", "n_token_kernels", "n_lrn_kernels", "n_patch_kernels", "n_fc_kernels",
               "n_attention_kernels", "n_fused_act_kernels", "n_kernel_profiles", "zoo_per_family")


@dataclass(frozen=True)
class ProfilePlan:
    """What a profile holds and how long it may take.  ``time_budget_min`` covers all parts."""

    n_archs: int = 400
    n_kernels: int = 400
    n_token_kernels: int = 150  # transformer-shaped kernels (hwnas.kernels.TokenKernelSampler), same part
    n_lrn_kernels: int = 24  # LRN kernels of older CNNs (hwnas.kernels.LrnKernelSampler), same part
    n_patch_kernels: int = 32  # patch convolutions, stride = kernel (hwnas.kernels.PatchKernelSampler), same part
    n_fc_kernels: int = 12  # VGG / AlexNet classifier-head gemms, 10-400 MB of weights (hwnas.kernels.FcKernelSampler)
    n_attention_kernels: int = 40  # fused self-attention, ORT's contrib ops (hwnas.kernels.AttentionKernelSampler)
    n_fused_act_kernels: int = 60  # convs + fused ReLU6 / LeakyReLU / Sigmoid (hwnas.kernels.FusedActKernelSampler)
    n_kernel_profiles: int = 30
    zoo_per_family: int = 6
    time_budget_min: float = 15.0
    seed: int = 0
    # measured here (2-core EPYC VM, cpu-1t): block table 186 s, the full kernel campaign 337 s, the
    # kernel-profiled archs 16 s, the zoo 181 s, 400 archs 341 s: 17.7 min.  Within 15 min the
    # campaign and the zoo, what ONNX models are predicted from, come whole; the archs (which the
    # in-space predictors need far fewer of: 190 fit them to 99.5% within 10%) take what is left
    shares: dict = field(default_factory=lambda: {"block": 0.22, "kernel": 0.38, "kernel_profile": 0.02, "zoo": 0.21,
                                                  "arch": 0.17})

    @classmethod
    def archs_only(cls, n_archs: int, seed: int) -> "ProfilePlan":
        """A plan that measures ``n_archs`` end-to-end architectures and nothing else (few-shot profiles)."""
        return cls(**{**dict.fromkeys(SIZE_FIELDS, 0), "n_archs": n_archs}, seed=seed)

    def __post_init__(self) -> None:
        positive_number(self.time_budget_min, "time budget (--time-budget-min)", "minutes")
        for name in SIZE_FIELDS:
            if getattr(self, name) < 0:
                raise ProfileError(f"{name} must be >= 0")


@dataclass(frozen=True)
class Task:
    kind: str
    key: str
    target: dict
    build: Callable[[], onnx.ModelProto]
    macs: int | None = None
    params: int | None = None


def lut_specs(space: SearchSpace, n_classes: int = 1000) -> list[StemSpec | BlockSpec | HeadSpec]:
    """Every distinct stem, block and head configuration the space can produce."""
    seen: dict[str, object] = {}
    for res in space.resolutions:
        for w in space.width_mults:
            # the widest architecture walks every stage position; first and later blocks of a
            # stage differ only in stride and input channels, and each block's shape depends
            # only on its position, so the largest depth covers every shape.
            for k in space.kernels:
                for e in space.expands:
                    b = Block(k, e)
                    a = Arch(res, w, tuple((b,) * max(space.depths) for _ in range(5)))
                    p = plan(a, n_classes)
                    for spec in (p.stem, *p.all_blocks(), p.head):
                        seen.setdefault(spec.key, spec)
    return list(seen.values())


def _part_cost(spec) -> tuple[int, int]:
    if isinstance(spec, StemSpec):
        c = stem_cost(spec)
    elif isinstance(spec, HeadSpec):
        c = head_cost(spec)
    else:
        c = block_cost(spec)
    return c.macs, c.params


def _spec_target(spec) -> dict:
    part = "stem" if isinstance(spec, StemSpec) else "head" if isinstance(spec, HeadSpec) else "block"
    return {"part": part, **asdict(spec)}


def block_tasks(space: SearchSpace, batch: int) -> list[Task]:
    from ..builders.onnx_graph import build_block_onnx, build_head_onnx, build_stem_onnx

    tasks = []
    for spec in lut_specs(space):
        if isinstance(spec, StemSpec):
            fn = lambda s=spec: build_stem_onnx(s, batch=batch)  # noqa: E731
        elif isinstance(spec, HeadSpec):
            fn = lambda s=spec: build_head_onnx(s, batch=batch)  # noqa: E731
        else:
            fn = lambda s=spec: build_block_onnx(s, batch=batch)  # noqa: E731
        macs, params = _part_cost(spec)
        tasks.append(Task("block", spec.key, _spec_target(spec), fn, macs, params))
    return tasks


def kernel_tasks(n: int, seed: int, batch: int, n_token: int = 0, n_lrn: int = 0, n_patch: int = 0,
                 n_fc: int = 0, n_attention: int = 0, n_fused_act: int = 0) -> list[Task]:
    """``n`` CNN-shaped, ``n_token`` transformer-shaped, ``n_lrn`` LRN, ``n_patch`` patch-convolution,
    ``n_fc`` classifier-head, ``n_attention`` fused-attention and ``n_fused_act`` fused-activation
    convolution campaign kernels, interleaved in
    proportion so that a part stopped by its time budget still holds every kind.  Each sampler
    continues one stream of its own: a larger ``n`` keeps the smaller one's kernels, and a count added
    later (``n_lrn``, ``n_patch``, ``n_fc``, ``n_attention``, ``n_fused_act``) leaves the others' kernels as they were
    (a profile grows by ``--resume``)."""
    from ..kernels import (AttentionKernelSampler, FcKernelSampler, FusedActKernelSampler, KernelSampler,
                           LrnKernelSampler, PatchKernelSampler, TokenKernelSampler, build_kernel_onnx)

    kinds = [sampler(seed, batches=(batch,)).sample(count)
             for sampler, count in ((KernelSampler, n), (TokenKernelSampler, n_token), (LrnKernelSampler, n_lrn),
                                    (PatchKernelSampler, n_patch), (FcKernelSampler, n_fc),
                                    (AttentionKernelSampler, n_attention), (FusedActKernelSampler, n_fused_act))]
    order = sorted(((i / max(len(specs), 1), kind, s) for kind, specs in enumerate(kinds) for i, s in enumerate(specs)),
                   key=lambda t: (t[0], t[1]))
    return [Task("kernel", spec.key, spec.to_dict(), lambda s=spec: build_kernel_onnx(s), spec.macs, None)
            for _, _, spec in order]


def zoo_tasks(per_family: int) -> list[Task]:
    from ..zoo import zoo_models
    from ..zoo_sealed import opened_models, sealed_models
    from ..zoo_transformers import transformer_models

    # the tuning families (CNNs, then transformers), then the sealed ones (a test set: judged
    # apart, never fitted on), taken round robin: every family's smallest model, then every family's
    # second...  so that a part its time budget stops still holds every family (in-model kernel
    # records of transformers and of every CNN style), not the first families whole and none of the rest
    models = [*zoo_models(per_family), *opened_models(per_family), *transformer_models(per_family),
              *sealed_models(per_family)] if per_family else []
    return zoo_tasks_of(round_robin_by_family(models))


def round_robin_by_family(models: list) -> list:
    """``models`` (each with a ``family``) reordered: the first of every family (in the order the
    families first appear), then the second of every family, and so on; order within a family kept."""
    by_family: dict[str, list] = {}
    for m in models:
        by_family.setdefault(m.family, []).append(m)
    rounds = max((len(v) for v in by_family.values()), default=0)
    return [fam[i] for i in range(rounds) for fam in by_family.values() if i < len(fam)]


def zoo_tasks_of(models) -> list[Task]:
    """Measurement tasks of zoo models (``ZooModel``s)."""
    from ..onnx_io import onnx_macs, onnx_params

    tasks = []
    for m in models:
        model = m.build()
        tasks.append(Task("zoo", f"zoo:{m.name}", {"family": m.family, "name": m.name, "resolution": m.resolution},
                          m.build, onnx_macs(model), onnx_params(model)))
    return tasks


def frozen_samples(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` unique seeded samples from a sampler frozen for profiles.

    :meth:`SearchSpace.sample_many` may change between hwnas versions (search tunes it for
    speed); profiles need the same architectures for the same seed in every version, so
    that profiles of different devices, made at different times, share architectures.
    """
    import numpy as np

    rng = np.random.default_rng(seed)

    def draw() -> Arch:
        res = int(rng.choice(space.resolutions))
        width = float(rng.choice(space.width_mults))
        stages = tuple(
            tuple(Block(int(rng.choice(space.kernels)), int(rng.choice(space.expands)))
                  for _ in range(int(rng.choice(space.depths))))
            for _ in range(N_STAGES)
        )
        return Arch(res, width, stages)

    return draw_unique(draw, n)


def profile_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """The end-to-end architectures: the space's extremes, then seeded uniform samples."""
    archs = [space.smallest(), space.largest()]
    for a in frozen_samples(space, n + 2, seed=seed + 1):
        if a not in archs:
            archs.append(a)
    return archs[:n]


def arch_tasks(space: SearchSpace, archs: list[Arch], batch: int) -> list[Task]:
    from ..builders.onnx_graph import build_onnx

    tasks = []
    for a in archs:
        c = arch_cost(a)
        tasks.append(Task("arch", str(a), {"arch": str(a)}, lambda a=a: build_onnx(a, batch=batch), c.macs, c.params))
    return tasks


def part_task_lists(device: DeviceSpec, space: SearchSpace, pplan: ProfilePlan) -> dict[str, Callable[[], list[Task]]]:
    """Each part's task list (built when called; deterministic for the plan's seed)."""
    archs = profile_archs(space, pplan.n_archs, pplan.seed)
    return {
        "block": lambda: block_tasks(space, device.batch_size),
        "kernel": lambda: kernel_tasks(pplan.n_kernels, pplan.seed, device.batch_size, pplan.n_token_kernels,
                                       pplan.n_lrn_kernels, pplan.n_patch_kernels, pplan.n_fc_kernels,
                                       pplan.n_attention_kernels, pplan.n_fused_act_kernels),
        "kernel_profile": lambda: arch_tasks(space, archs[: pplan.n_kernel_profiles], device.batch_size),
        "zoo": lambda: zoo_tasks(pplan.zoo_per_family),
        "arch": lambda: arch_tasks(space, archs, device.batch_size),
    }


def measure_task(m: Measurer, part: str, t: Task, config: MeasureConfig | None = None):
    """Measure one task of ``part`` with an open Measurer: ``(Measurement, KernelProfile or None)``,
    or ``(None, KernelProfile)`` for the ``kernel_profile`` part (its records only)."""
    # in the device's precision once (int8: quantized here, not again by each call below)
    model = device_graph(t.build(), m.device)
    if part == "kernel_profile":
        return None, m.profile_kernels(model)
    cfg = config or (MeasureConfig.small() if part in ("block", "kernel") else MeasureConfig())
    meas = m.measure(model, t.key, cfg)
    # kernel-campaign graphs are also profiled per kernel, records kept under their key
    kp = m.profile_kernels(model, runs=5, warmup=2) if part in ("kernel", "zoo") else None
    return meas, kp


@dataclass
class PartReport:
    part: str
    planned: int
    done_before: int = 0
    done_now: int = 0
    seconds: float = 0.0
    stopped_by_budget: bool = False


ProgressFactory = Callable[[str, int, int], "ProgressHandle"]


class ProgressHandle:
    """Minimal progress interface: ``advance()`` after each task, ``close()`` at the end."""

    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


def _null_progress(part: str, total: int, done: int) -> ProgressHandle:
    return ProgressHandle()


def check_resume(store: ProfileStore, device: DeviceSpec, space: SearchSpace, pplan: ProfilePlan) -> None:
    meta = store.meta()
    if "device" not in meta:
        return
    diffs = fingerprint.differences(meta.get("fingerprint", {}), fingerprint.capture())
    if diffs:
        raise DeviceMismatchError(f"profile {store.dir} was made on another machine ({diffs[0]}); cannot resume here")
    # parsed, so that keys added since (with their defaults) do not count as a difference
    try:
        made = DeviceSpec.from_dict(meta["device"], source=f"profile {store.dir}'s device")
    except InputError as e:
        raise ProfileError(f"cannot resume: {e}") from None
    if made != device:
        old, new = made.to_dict(), device.to_dict()
        # a setting that changes latency first; the name and description only label the spec
        key = next(k for k in sorted(new, key=lambda k: k in ("name", "description")) if old.get(k) != new[k])
        raise DeviceMismatchError(
            f"profile {store.dir} was made with device {made.name!r} ({key} = {old.get(key)!r}); cannot resume it "
            f"with device {device.name!r} ({key} = {new[key]!r})"
        )
    if meta.get("space") != space.to_dict():
        raise ProfileError(f"profile {store.dir} was made for another search space; cannot resume it")
    if meta.get("plan", {}).get("seed") != pplan.seed:
        raise ProfileError(f"profile {store.dir} was made with seed {meta['plan'].get('seed')}; resume with the same seed")


def check_new_or_resume(device: DeviceSpec, out_dir: Path, resume: bool) -> None:
    """The device runs here, and ``out_dir`` holds a profile exactly when resuming."""
    device.check_runnable()
    existing = (out_dir / "profile.sqlite").exists()
    if existing and not resume:
        raise ProfileError(f"{out_dir} already holds a profile; pass --resume to continue it or choose another --out")
    if resume and not existing:
        raise ProfileError(f"nothing to resume: no profile at {out_dir}")


@contextlib.contextmanager
def profile_store(device: DeviceSpec, out_dir: Path, resume: bool) -> Iterator[ProfileStore]:
    """The store of a profile being measured (new, or resumed), closed and compacted at the end.

    A new profile whose start fails before anything is measured (a graph that cannot be built,
    the runtime refusing the device) is removed again, so that no stub blocks a retry with
    "already holds a profile"; a resumed one, or one that holds measurements, is kept (Ctrl-C
    keeps even an empty new one: ``--resume`` continues it)."""
    check_new_or_resume(device, out_dir, resume)
    dir_existed = out_dir.exists()
    store = ProfileStore(out_dir, create=True)
    removed = False
    try:
        yield store
    except Exception:
        if not resume and not any(store.row_counts().values()):
            store.close()
            removed = True
            for suffix in ("", "-wal", "-shm", "-journal"):
                store.path.with_name(store.path.name + suffix).unlink(missing_ok=True)
            if not dir_existed:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()
        raise
    finally:  # also on Ctrl-C
        if not removed:
            store.close(compact=True)


def write_new_meta(store: ProfileStore, device: DeviceSpec, space: SearchSpace, pplan: ProfilePlan,
                   **extra) -> None:
    """The meta of a new profile: device, machine fingerprint, space, plan, canary, status."""
    store.set_meta("device", device.to_dict())
    store.set_meta("fingerprint", fingerprint.capture())
    store.set_meta("space", space.to_dict())
    store.set_meta("plan", {k: v for k, v in asdict(pplan).items()})
    store.set_meta("canary", {"arch": CANARY_ARCH, "seed": CANARY_SEED, "batch": device.batch_size})
    store.set_meta("created_at", time.time())
    for k, v in extra.items():
        store.set_meta(k, v)
    store.set_meta("status", "in-progress")


def add_part_seconds(store: ProfileStore, reports: list[PartReport]) -> None:
    """Add each part's measuring time to the profile's running totals (resumed runs add up)."""
    timings = store.get_meta("part_seconds", {})
    for r in reports:
        timings[r.part] = timings.get(r.part, 0.0) + r.seconds
    store.set_meta("part_seconds", timings)


def measure_parts(parts: Sequence[str], task_lists: dict[str, Callable[[], list[Task]]], shares: dict[str, float],
                  budget_s: float, done: Callable[[str], set[str]], measure_one: Callable[[str, Task], None],
                  progress: ProgressFactory) -> list[PartReport]:
    """Measure each part's tasks not ``done`` yet, in order, each part until its share of the time
    budget (cumulative) is spent; returns a report per part.  The budget counts from this call:
    call it once the machine lock is held (another hwnas measurement may have kept it)."""
    start = time.perf_counter()
    reports: list[PartReport] = []
    cumulative = 0.0
    for part in parts:
        cumulative += shares[part]
        deadline = start + budget_s * cumulative
        tasks = task_lists[part]()
        have = done(part)
        todo = [t for t in tasks if t.key not in have]
        rep = PartReport(part, len(tasks), done_before=len(tasks) - len(todo))
        reports.append(rep)
        t_part = time.perf_counter()
        bar = progress(part, len(tasks), rep.done_before)
        try:
            for t in todo:
                if time.perf_counter() > deadline:
                    rep.stopped_by_budget = True
                    break
                measure_one(part, t)
                rep.done_now += 1
                bar.advance()
        finally:
            bar.close()
            rep.seconds = time.perf_counter() - t_part
    return reports


def build_profile(
    device: DeviceSpec,
    out_dir: str | Path,
    pplan: ProfilePlan | None = None,
    *,
    space: SearchSpace | None = None,
    resume: bool = False,
    config: MeasureConfig | None = None,
    progress: ProgressFactory = _null_progress,
    parts: tuple[str, ...] = PARTS,
) -> list[PartReport]:
    """Measure a device profile into ``out_dir``; returns a report per part.

    Interrupting (Ctrl-C, kill) loses at most the measurement in flight; call again with
    ``resume=True`` to continue.
    """
    pplan = pplan or ProfilePlan()
    space = space or SearchSpace()
    out_dir = Path(out_dir)
    with profile_store(device, out_dir, resume) as store:
        if resume:
            check_resume(store, device, space, pplan)
        else:
            write_new_meta(store, device, space, pplan)
        import hwnas

        store.set_meta("hwnas_version", hwnas.__version__)

        task_lists = part_task_lists(device, space, pplan)
        with Measurer(device, config) as m:

            def one(part: str, t: Task) -> None:
                meas, kp = measure_task(m, part, t, config)
                if meas is None:
                    store.add_kernel_profile(t.key, kp)
                else:
                    store.add_measurement(part, t.key, t.target, meas, t.macs, t.params, kernel_profile=kp)

            def done(part: str) -> set[str]:
                return store.done_kernel_profiles() if part == "kernel_profile" else store.done_keys(part)

            reports = measure_parts(parts, task_lists, pplan.shares, pplan.time_budget_min * 60.0, done, one, progress)
        complete = all(r.done_before + r.done_now == r.planned for r in reports) and set(parts) == set(PARTS)
        store.set_meta("status", "complete" if complete else "partial")
        add_part_seconds(store, reports)
        return reports

