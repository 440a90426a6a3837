"""Per-kernel-family latency of one architecture: measured (profiled kernels) and predicted."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import HwnasError

def profiled_archs(profile) -> list[str]:
    """Architectures of the profile whose kernels were profiled (measured per-kernel records)."""
    arch_keys = set(profile.table("arch")["key"])
    return [k for k in profile.kernel_profiles["arch"] if k in arch_keys]


def report_breakdown(profile) -> dict:
    """The per-kernel breakdown a report shows: :func:`kernel_breakdown` of the median profiled
    architecture, or ``{"arch": None, "missing": why}`` when the profile holds no per-kernel records
    (measured with ``--n-kernel-profiles 0``, like ``profiles/cpu-2t``): the report then says so
    and the rest of it is written as usual."""
    if not profiled_archs(profile):
        return {"arch": None, "missing": f"profile {profile.dir} holds no per-kernel records of an architecture "
                                         f"(measured with --n-kernel-profiles 0 or stopped before that part)"}
    return kernel_breakdown(profile)


def kernel_breakdown(profile, arch: str | None = None, with_prediction: bool = True) -> dict:
    """Per-kernel-family latency of one architecture, in ms on the profile's device.

    Measured (when the architecture's kernels were profiled): ORT profiler kernel times,
    scaled so they add up to the architecture's canary-bracketed end-to-end latency (the
    profiler inflates kernel times).  Predicted: the kernel predictor's per-kernel figures,
    scaled to its calibrated end-to-end prediction.  ``arch=None`` picks the profiled
    architecture with the median latency.
    """
    from ..predictors.kernel_features import kernel_family, records_from_frame

    table = profile.table("arch").set_index("key")
    profiled = profiled_archs(profile)
    if arch is None:
        if not profiled:
            raise HwnasError(f"profile {profile.dir} holds no per-kernel records of an architecture")
        lat = table.loc[profiled, "corrected_ms"]
        arch = str(lat.index[int(np.argsort(lat.to_numpy())[len(lat) // 2])])
    out: dict = {"arch": arch, "profiled": arch in profiled}
    if arch in profiled:
        kr = profile.kernel_records[profile.kernel_records["arch"] == arch]
        recs = records_from_frame(kr)
        total_raw = sum(r.duration_ms for r in recs)
        e2e = float(table.loc[arch, "corrected_ms"])
        scale = e2e / total_raw if total_raw > 0 else 0.0
        meas: dict[str, float] = {}
        for r in recs:
            f = kernel_family(r.op_type, r.input_shapes, r.output_shapes, r.attributes) or "other"
            meas[f] = meas.get(f, 0.0) + r.duration_ms * scale
        out["measured"] = meas
        out["measured_ms"] = e2e
        out["measured_kernels"] = len(recs)
    if with_prediction:
        from ..predictors import load_predictor

        try:
            kp = load_predictor(profile.dir, "kernel")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                preds = kp.breakdown(arch)
        except HwnasError as e:
            out["prediction_error"] = str(e)
        else:
            # exact sums in a fixed family order: ORT does not always list the kernels in the same order
            s = math.fsum(p.relative for p in preds)
            e2e_rel = kp.calibrate_sum(s)
            scale = e2e_rel / max(s, 1e-12) * kp.canary_reference_ms_
            by_family: dict[str, list[float]] = {}
            for p in preds:
                by_family.setdefault("other" if p.family == "uncovered" else p.family, []).append(p.relative * scale)
            out["predicted"] = {f: math.fsum(by_family[f]) for f in sorted(by_family)}
            out["predicted_ms"] = e2e_rel * kp.canary_reference_ms_
    return out
