"""Any-ONNX prediction on a new device from a few-shot profile: one global law vs a scale per kernel class.

A few-shot profile (``hwnas profile --from-profile REF --quick N``) measures N architectures of
the space and, since issue 14 item 5, a handful of zoo models of the tuning families
(``--zoo-shots``).  This benchmark judges its ONNX predictions on models it never measured:

* the **sealed** zoo families (never fitted on, never measured by a few-shot profile), and
* optionally ONNX files of your own (``--onnx DIR``, e.g. the outside check's torchvision zoo),

measured here on the target device with the project's Measurer (canary-bracketed, canary units),
next to the same transfer with the old global power law (the few-shot profile's N architectures
only), and the reference predictor taken as is.  Each repeat is a separate calibration (another
seed, measured at another time).

    python benchmarks/fewshot_onnx.py [--device cpu-2t] [--shots 30] [--repeats 3] [--onnx /tmp/outside-zoo]

The only second target this project's machine offers is another device spec on the same CPU
(``cpu-2t``: two threads, where dense convolutions and matrix products scale differently from
depthwise and element-wise kernels); it is not a second CPU.  Measures: run it alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _judge(pred: np.ndarray, meas: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    e = pred / meas - 1
    return {"n": int(len(e)), "within_5pct": float(np.mean(np.abs(e) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(e) <= 0.10)), "mape": float(np.mean(np.abs(e))),
            "spearman": float(spearmanr(pred, meas).correlation), "errors": [float(x) for x in e]}


def measure_judge_set(device, onnx_dir: str | None) -> dict[str, dict]:
    """name -> {"relative": canary units on ``device``, "noise_rel", "path" or "zoo"}."""
    import onnx

    from hwnas.measure import Measurer
    from hwnas.zoo_sealed import sealed_models

    items = [(f"sealed:{m.name}", m.build, m.name) for m in sealed_models(6)]
    if onnx_dir:
        for p in sorted(Path(onnx_dir).glob("*.onnx")):
            items.append((f"onnx:{p.stem}", lambda p=p: onnx.load(str(p)), str(p)))
    out = {}
    with Measurer(device) as m:
        for i, (key, build, ref) in enumerate(items):
            meas = m.measure(build(), key)
            out[key] = {"relative": float(meas.relative_to_canary), "noise_rel": float(meas.noise_rel), "ref": ref}
            print(f"  [{i + 1}/{len(items)}] {key:45s} {meas.relative_to_canary:7.3f} canary units "
                  f"(noise {100 * meas.noise_rel:.1f}%)", flush=True)
    return out


def main() -> None:
    from hwnas.devices import load_device
    from hwnas.predictors import load_predictor
    from hwnas.profile.fewshot import build_fewshot_profile, load_reference
    from hwnas.zoo_sealed import model_by_name

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=str(ROOT / "profiles" / "cpu-1t"))
    ap.add_argument("--device", default="cpu-2t")
    ap.add_argument("--shots", type=int, default=30)
    ap.add_argument("--zoo-shots", type=int, default=None, help="default: one per tuning family")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--onnx", default=None, help="a folder of ONNX files judged as well")
    ap.add_argument("--judge-cache", default=None,
                    help="reuse the judge set's measurements from this JSON (an earlier --out of the same device)")
    ap.add_argument("--fewshot-profiles", nargs="+", default=None,
                    help="judge these existing few-shot profiles (refitted with this version's transfer) "
                         "instead of making new ones")
    ap.add_argument("--out", default=str(HERE / "results" / "fewshot_onnx.json"))
    args = ap.parse_args()
    t_start = time.time()
    dev = load_device(args.device)
    if args.judge_cache and Path(args.judge_cache).is_file():
        cached = json.loads(Path(args.judge_cache).read_text())
        if cached.get("device") != args.device:
            raise SystemExit(f"error: {args.judge_cache} was measured on {cached.get('device')}, not {args.device}")
        judge = cached["judge_set"]
    else:
        print(f"measuring the judge set on {args.device} ...", flush=True)
        judge = measure_judge_set(dev, args.onnx)
    keys = sorted(judge)
    meas = np.array([judge[k]["relative"] for k in keys])
    targets = [model_by_name(judge[k]["ref"]).build() if k.startswith("sealed:") else judge[k]["ref"] for k in keys]
    _, ref_onnx, _ = load_reference(args.reference)
    res: dict = {"reference": args.reference, "device": args.device, "shots": args.shots,
                 "judge_set": judge, "repeats": []}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        as_is = ref_onnx.predict_relative(targets)
    res["reference_as_is"] = _judge(as_is, meas)
    Path(args.out).write_text(json.dumps(res, indent=1))  # the judge set is kept even if a repeat is cut short
    work = Path(tempfile.mkdtemp(prefix="hwnas-fewshot-onnx-"))
    given = [Path(p) for p in args.fewshot_profiles] if args.fewshot_profiles else None
    for rep in range(len(given) if given else args.repeats):
        t0 = time.perf_counter()
        if given:
            from hwnas.profile.fewshot import adapt

            out = given[rep]
            adapt(out)  # this version's transfer, refitted on the profile's measurements
        else:
            out = work / f"few-{rep}"
            build_fewshot_profile(dev, out, args.reference, args.shots, seed=rep, zoo_shots=args.zoo_shots)
        secs = time.perf_counter() - t0
        pred = load_predictor(out)
        # both laws judged whichever the transfer chose (``onnx_choice``: by the zoo models' leave-one-out error)
        glob = copy.copy(pred)
        glob.onnx_classes_ = None  # the same transfer with the global power law
        cls = copy.copy(pred)
        if cls.onnx_classes_ is None:
            from hwnas.predictors.transfer import class_rows
            from hwnas.predictors.transfer_onnx import KernelClassTransfer
            from hwnas.profile import Profile

            # refit the per-class law the choice rejected, on the same rows, to judge it all the same
            prof = Profile.load(out)
            T, rel = class_rows(ref_onnx, prof)
            cls.onnx_classes_ = KernelClassTransfer().fit(T, rel, tuple(ref_onnx.calibration_),
                                                         judge_rows=np.arange(len(rel)) >= pred.n_archs_)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per_class = cls.predict_relative(targets)
            power = glob.predict_relative(targets)
            chosen = pred.predict_relative(targets)
        entry = {"seed": rep, "seconds": round(secs, 1), "n_zoo_models": int(pred.n_onnx_models_),
                 "choice": pred.onnx_choice_,
                 "class_log_scales": dict(zip(("conv", "pwconv", "dwconv", "gconv", "gemm", "other"),
                                              [round(float(x), 4) for x in cls.onnx_classes_.log_scale_])),
                 "lambda": cls.onnx_classes_.lambda_, "chosen": _judge(chosen, meas),
                 "per_class": _judge(per_class, meas), "power_law": _judge(power, meas)}
        for part in ("sealed", "onnx"):
            idx = [i for i, k in enumerate(keys) if k.startswith(part + ":")]
            if idx:
                entry[f"per_class_{part}"] = _judge(per_class[idx], meas[idx])
                entry[f"power_law_{part}"] = _judge(power[idx], meas[idx])
        res["repeats"].append(entry)
        pc, pl = entry["per_class"], entry["power_law"]
        print(f"repeat {rep}: chose {pred.onnx_choice_['chosen']}; chosen law "
              f"{100 * entry['chosen']['within_10pct']:.0f}% within ±10%; "
              f"few-shot {secs:.0f} s ({entry['n_zoo_models']} zoo models); per-class "
              f"{100 * pc['within_10pct']:.0f}% within ±10% (MAPE {100 * pc['mape']:.1f}%, Spearman {pc['spearman']:.3f}); "
              f"power law {100 * pl['within_10pct']:.0f}% (MAPE {100 * pl['mape']:.1f}%)", flush=True)
        Path(args.out).write_text(json.dumps(res, indent=1))
    ai = res["reference_as_is"]
    print(f"reference as is: {100 * ai['within_10pct']:.0f}% within ±10% (MAPE {100 * ai['mape']:.1f}%)")
    for m in ("chosen", "per_class", "power_law"):
        w = [r[m]["within_10pct"] for r in res["repeats"]]
        res[f"{m}_within_10pct_range"] = [min(w), max(w)]
        print(f"{m}: within ±10% over {len(w)} repeats: {100 * min(w):.0f}-{100 * max(w):.0f}%")
    res["seconds"] = round(time.time() - t_start, 1)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
