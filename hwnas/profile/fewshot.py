"""Few-shot profiles: a new device from N measurements and a reference profile.

``hwnas profile --device D --out DIR --from-profile REF --quick N`` measures N architectures
(plus the canary that brackets every measurement) on the new device and adapts REF's trained
predictors to it (:class:`hwnas.predictors.transfer.TransferPredictor`).  The result is a
normal profile directory: ``predict``, ``search`` and ``compare`` accept it, and its meta
marks it as few-shot with its N and its reference.

The N architectures are chosen to span the space's (resolution, width) cells and, within each,
the reference's predicted latency range: seeded candidates from the space (frozen sampler), N
shared out over the cells, each cell's share picked at evenly spaced points of its own latency
range (its smallest and largest included); fewer than one per cell: one walk over the whole range.

It also measures a handful of zoo models of other families (``zoo_shots``; by default one per
tuning family, its middle candidate by MACs: dense, grouped and depthwise convolutions, matrix
products on token tensors) so that the transfer of the ONNX predictor learns how each kernel
class moved on this CPU, not only what a MobileNetV3-space architecture tells
(:mod:`hwnas.predictors.transfer_onnx`).  Sealed test families are never measured here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..devices import DeviceSpec
from ..errors import InputError, ProfileError
from ..measure import MeasureConfig, Measurer
from ..space import Arch, SearchSpace
from .campaign import (PartReport, ProgressFactory, _null_progress, add_part_seconds, arch_tasks, check_resume,
                       frozen_samples, profile_store, write_new_meta, zoo_tasks_of)

MIN_SHOTS = 5
DEFAULT_SHOTS = 30


def fewshot_zoo_models(k: int | None = None) -> list:
    """The zoo models a few-shot profile measures besides its architectures: the middle candidate
    (by MACs) of each tuning family (CNNs, opened families, transformers), ``k`` of them spread over
    that list (all for ``None``; none for 0).  Never a sealed family's model.  Deterministic."""
    from ..zoo import candidates
    from ..zoo_sealed import SEALED_FAMILIES, opened_candidates
    from ..zoo_transformers import transformer_candidates

    by_family: dict[str, list] = {}
    for m in (*candidates(), *opened_candidates(), *transformer_candidates()):
        if m.family not in SEALED_FAMILIES:
            by_family.setdefault(m.family, []).append(m)
    picks = [c[len(c) // 2] for c in by_family.values()]
    if k is None or k >= len(picks):
        return picks
    if k < 0:
        raise InputError(f"--zoo-shots {k}: must be >= 0")
    return [picks[round(i * (len(picks) - 1) / max(k - 1, 1))] for i in range(k)] if k else []


def load_reference(ref_dir: str | Path):
    """(arch predictor, ONNX predictor or None, Profile) of a trained reference profile, or a clear error."""
    from ..predictors.base import NotTrainedError
    from ..predictors.saved import load_predictor, read_index
    from . import Profile

    ref = Path(ref_dir)
    if not (ref / "profile.sqlite").is_file():
        raise InputError(f"--from-profile {ref}: no device profile there")
    try:
        index = read_index(ref)
    except NotTrainedError:
        raise InputError(f"--from-profile {ref}: the reference profile is not trained; run `hwnas train --profile {ref}`") from None
    if index.get("few_shot"):
        raise InputError(f"--from-profile {ref}: is itself a few-shot profile; use a full profile as the reference")
    prof = Profile.load(ref, check_machine=False)
    arch_pred = load_predictor(ref, None, target_kind="arch")
    # the transfer needs a vectorized predictor of the space: the default, else the best saved one
    for name in ("learned", "lut"):
        if hasattr(arch_pred, "predict_encoded"):
            break
        try:
            arch_pred = load_predictor(ref, name)
        except NotTrainedError:
            continue
    if not hasattr(arch_pred, "predict_encoded"):
        raise InputError(f"--from-profile {ref}: it has no trained lookup-table predictor to adapt "
                         f"(run `hwnas train --profile {ref}`)")
    try:
        onnx_pred = load_predictor(ref, None, target_kind="onnx")
    except (NotTrainedError, InputError, KeyError):
        onnx_pred = None
    if onnx_pred is not None and not onnx_pred.handles_onnx:
        onnx_pred = None
    return arch_pred, onnx_pred, prof


def _latency_walk(lat: np.ndarray, idx: list[int], n: int) -> list[int]:
    """``n`` of the candidates ``idx``, one closest to each of ``n`` evenly spaced points of their
    (log) latency range, ends included; one: the median."""
    order = sorted(idx, key=lambda i: (lat[i], i))
    if n == 1:
        return [order[len(order) // 2]]
    targets = np.linspace(lat[order[0]], lat[order[-1]], n)
    pos = np.array([lat[i] for i in order])
    chosen: list[int] = []
    used: set[int] = set()
    for t in targets:
        j = int(np.searchsorted(pos, t))
        window = [order[k] for k in range(max(0, j - 3 * n), min(len(order), j + 3 * n)) if order[k] not in used]
        best = min(window, key=lambda i: (abs(lat[i] - t), i))
        used.add(best)
        chosen.append(best)
    return chosen


def fewshot_archs(space: SearchSpace, reference, n: int, seed: int = 0, pool: int = 40) -> list[Arch]:
    """N architectures spanning the space's (resolution, width) cells and, within each, the
    reference's predicted latency range (deterministic).

    With at least one pick per cell, N is shared out evenly over the cells (the remainder to
    the cells of widest latency range) and each cell's picks walk its own latency range; with
    fewer, one walk over the whole range.  Latency alone filled the ends of the range with the
    smallest and largest cells (12 of 30 at r128 w1.0, none at r224 w1.0 in one calibration) and
    the transfer's resolution and width terms were fitted on a few points each: in a simulation
    on the cpu-2t profile's 300 measured architectures (60 draws of 150 candidates), N = 30
    calibrations below 95% within 10% fell from 6.7% to 1.7% of draws, N = 10's mean rose from
    85% to 89%."""
    if n < 2:
        raise ValueError("need at least 2 architectures")
    cands = [space.smallest(), space.largest()]
    for a in frozen_samples(space, pool * n, seed=seed + 1_000_003):
        if a not in cands[:2]:
            cands.append(a)
    lat = np.log(reference.predict_encoded(space.encode(cands)))
    cells: dict[tuple, list[int]] = {}
    for i, a in enumerate(cands):
        cells.setdefault((a.resolution, a.width_mult), []).append(i)
    if n < len(cells):
        chosen = _latency_walk(lat, list(range(len(cands))), n)
    else:
        share = {c: n // len(cells) for c in cells}
        span = sorted(cells, key=lambda c: (-(max(lat[cells[c]]) - min(lat[cells[c]])), c))
        for c in span[: n - sum(share.values())]:
            share[c] += 1
        chosen = []
        for c in sorted(cells):
            chosen += _latency_walk(lat, cells[c], min(share[c], len(cells[c])))
    return [cands[i] for i in sorted(chosen, key=lambda i: (lat[i], i))]


def build_fewshot_profile(
    device: DeviceSpec,
    out_dir: str | Path,
    reference_dir: str | Path,
    n: int = DEFAULT_SHOTS,
    *,
    seed: int = 0,
    resume: bool = False,
    zoo_shots: int | None = None,
    space: SearchSpace | None = None,
    config: MeasureConfig | None = None,
    progress: ProgressFactory = _null_progress,
    log: Callable[[str], None] | None = None,
) -> PartReport:
    """Measure N architectures (and ``zoo_shots`` zoo models, see :func:`fewshot_zoo_models`) on
    ``device`` and adapt the reference's predictors; returns the report."""
    if n < MIN_SHOTS:
        raise InputError(f"--quick {n}: a few-shot profile needs at least {MIN_SHOTS} measured architectures")
    ref_arch, ref_onnx, ref_prof = load_reference(reference_dir)
    if space is not None and space.to_dict() != ref_prof.space.to_dict():
        r, o = ref_prof.space.to_dict(), space.to_dict()
        diff = next((k for k in r if r[k] != o.get(k)), "space")
        raise InputError(f"--from-profile {reference_dir} was made for another search space "
                         f"({diff}: {r.get(diff)} there, {o.get(diff)} here)")
    space = ref_prof.space
    out_dir = Path(out_dir)
    zoo = fewshot_zoo_models(zoo_shots) if ref_onnx is not None else []
    few = {"reference": str(reference_dir), "reference_device": ref_prof.device.name, "n": n, "seed": seed,
           "zoo_shots": len(zoo)}
    with profile_store(device, out_dir, resume) as store:
        from .campaign import ProfilePlan

        pplan = ProfilePlan.archs_only(n, seed)
        if resume:
            check_resume(store, device, space, pplan)
            if store.get_meta("few_shot", {}).get("n") != n:
                raise ProfileError(f"profile {out_dir} was started with --quick {store.get_meta('few_shot', {}).get('n')}; "
                                   f"resume with the same N")
            if store.get_meta("few_shot", {}).get("zoo_shots", 0) != len(zoo):
                raise ProfileError(f"profile {out_dir} was started with --zoo-shots "
                                   f"{store.get_meta('few_shot', {}).get('zoo_shots', 0)}; resume with the same number")
        else:
            write_new_meta(store, device, space, pplan, few_shot=few)
        import hwnas

        store.set_meta("hwnas_version", hwnas.__version__)
        archs = fewshot_archs(space, ref_arch, n, seed)
        tasks = arch_tasks(space, archs, device.batch_size) + zoo_tasks_of(zoo)
        done = store.done_keys("arch") | store.done_keys("zoo")
        todo = [t for t in tasks if t.key not in done]
        rep = PartReport("arch", len(tasks), done_before=len(tasks) - len(todo))
        t0 = time.perf_counter()
        bar = progress("arch + zoo (few-shot)" if zoo else "arch (few-shot)", len(tasks), rep.done_before)
        try:
            with Measurer(device, config) as m:
                for t in todo:
                    meas = m.measure(t.build(), t.key, config)
                    store.add_measurement(t.kind, t.key, t.target, meas, t.macs, t.params)
                    rep.done_now += 1
                    bar.advance()
        finally:
            bar.close()
            rep.seconds = time.perf_counter() - t0
        store.set_meta("status", "complete")
        add_part_seconds(store, [rep])
    adapt(out_dir, log=log, reference=(ref_arch, ref_onnx, ref_prof))
    return rep


def adapt(profile_dir: str | Path, log: Callable[[str], None] | None = None, reference: tuple | None = None,
          profile=None) -> dict:
    """Fit the transfer predictor of a few-shot profile and save it with its index.

    ``reference``: :func:`load_reference`'s result, ``profile``: the loaded few-shot profile, when
    the caller has them already (otherwise they are loaded)."""
    from .. import __version__
    from ..predictors.registry import FORMAT_VERSION
    from ..predictors.saved import save_trained
    from ..predictors.transfer import TransferPredictor
    from . import Profile

    prof = profile if profile is not None else Profile.load(profile_dir)
    few = prof.meta.get("few_shot")
    if not few:
        raise ProfileError(f"{profile_dir} is not a few-shot profile")
    ref_arch, ref_onnx, ref_prof = reference or load_reference(few["reference"])
    if ref_prof.space.to_dict() != prof.space.to_dict():
        raise InputError(f"reference {few['reference']} is now for another search space than {profile_dir}")
    t0 = time.perf_counter()
    pred = TransferPredictor().fit(prof, ref_arch, ref_onnx)
    intervals = pred.loo_intervals(ref_onnx.interval("onnx") if ref_onnx is not None else None,
                                   ref_arch.interval("arch"))
    index = {
        "format_version": FORMAT_VERSION,
        "hwnas_version": __version__,
        "trained_at": time.time(),
        "predictors": {"transfer": {"fit_s": round(time.perf_counter() - t0, 2)}},
        "default": {"arch": "transfer", "onnx": "transfer"},
        "intervals": {"transfer": {k: v.to_dict() for k, v in intervals.items()}},
        "few_shot": dict(few, loo_rmse_log=pred.loo_rmse_, ridge_alpha=pred.alpha_,
                         reference_predictors={"arch": ref_arch.label,
                                               "onnx": ref_onnx.label if ref_onnx is not None else None}),
    }
    save_trained(profile_dir, {"transfer": pred}, index)
    if log:
        log(f"adapted {ref_arch.label} (+ {ref_onnx.label if ref_onnx else 'no ONNX predictor'}) of "
            f"{few['reference']} with {pred.n_archs_} measurements; leave-one-out error "
            f"{100 * (np.exp(pred.loo_rmse_) - 1):.1f}% (log-RMSE)")
    return index
