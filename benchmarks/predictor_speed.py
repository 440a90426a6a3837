"""Prediction speed: the vectorized in-space path and any-ONNX prediction.

* in-space: predictions per second for a batch of 100,000 architectures, with the encoding
  done beforehand (what the search does) and including encoding from Arch objects;
* any-ONNX: wall time per zoo model read from an .onnx file, including ORT's offline graph
  optimization.  Each model is predicted afresh ``--repeats`` times (nothing is cached between
  predictions), in passes over the whole zoo so that the machine's drift spreads over all models;
  a model's figure is the median of its runs.  Reported: median, p90 and max over the models, the
  share of models under 100 ms, and the slowest single run.

    python benchmarks/predictor_speed.py [--profile profiles/cpu-1t] [--n 100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    import onnx

    from hwnas.allocator import allow_tuning
    from hwnas.devices import DeviceSpec
    from hwnas.measure import make_session
    from hwnas.paths import default_profile_dir
    from hwnas.predictors import load_predictor
    from hwnas.predictors.kernel_features import _scratch as scratch
    from hwnas.zoo import zoo_models

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(default_profile_dir()))
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3, help="fresh predictions per zoo model (default 3)")
    ap.add_argument("--out", default=str(HERE / "results" / "predictor_speed.json"))
    args = ap.parse_args()
    allow_tuning()  # as the hwnas command line does (hwnas/allocator.py)
    res: dict = {"profile": args.profile, "n": args.n, "in_space": {}}
    for name in ("lut", "learned"):
        p = load_predictor(args.profile, name)
        archs = p.space_.sample_many(args.n, seed=0, unique=False)
        t0 = time.perf_counter()
        X = p.space_.encode(archs)
        t_enc = time.perf_counter() - t0
        p.predict_encoded(X[:1000])
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            p.predict_encoded(X)
            times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        res["in_space"][name] = {"predict_s": t, "encode_s": t_enc, "per_s_encoded": args.n / t,
                                 "per_s_with_encoding": args.n / (t + t_enc)}
        print(f"{name:8s} {args.n / t:12,.0f} predictions/s (pre-encoded), "
              f"{args.n / (t + t_enc):10,.0f}/s including encoding")
    kp = load_predictor(args.profile, "kernel")
    per_model = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        from hwnas.zoo_transformers import TRANSFORMER_FAMILIES, transformer_models

        for m in [*zoo_models(), *transformer_models()]:
            path = Path(tmp) / f"{m.name}.onnx"
            onnx.save(m.build(), str(path))
            paths.append((m.name, str(path)))
        kp.predict_relative([paths[0][1]])  # warm imports
        runs: dict[str, list[float]] = {name: [] for name, _ in paths}
        ort_runs: dict[str, list[float]] = {name: [] for name, _ in paths}
        device = DeviceSpec.from_dict(kp.device_)
        for _ in range(max(1, args.repeats)):
            for name, path in paths:
                t0 = time.perf_counter()
                kp.predict_relative([path])
                runs[name].append(1e3 * (time.perf_counter() - t0))
                # ORT's part alone (load, optimize, save the optimized graph), for the same model
                # right after: the floor no predictor built on ORT's fusions goes below
                with scratch() as out:  # where the predictor writes it (memory-backed where there is one)
                    t0 = time.perf_counter()
                    make_session(path, device, optimized_path=str(Path(out) / "optimized.onnx"), prepack=False)
                    ort_runs[name].append(1e3 * (time.perf_counter() - t0))
        for name, _ in paths:
            per_model.append({"model": name, "ms": float(np.median(runs[name])), "runs_ms": runs[name],
                              "ort_optimize_ms": float(np.median(ort_runs[name]))})
    ms = np.array([r["ms"] for r in per_model])
    worst = max(per_model, key=lambda r: max(r["runs_ms"]))
    res["any_onnx"] = {"models": per_model, "repeats": args.repeats, "median_ms": float(np.median(ms)),
                       "p90_ms": float(np.percentile(ms, 90)), "max_ms": float(ms.max()),
                       "share_under_100ms": float(np.mean(ms <= 100)),
                       "slowest_single_run": {"model": worst["model"], "ms": max(worst["runs_ms"])}}
    print(f"any-ONNX (kernel predictor, from file, incl. ORT graph optimization; median of {args.repeats} fresh "
          f"predictions per model): median {np.median(ms):.0f} ms, p90 {np.percentile(ms, 90):.0f} ms, "
          f"max {ms.max():.0f} ms over {len(ms)} zoo models; {100 * np.mean(ms <= 100):.0f}% under 100 ms; "
          f"slowest single run {max(worst['runs_ms']):.0f} ms ({worst['model']})")
    print("slowest models (ms; ORT's load+optimize+save alone in brackets):")
    for r in sorted(per_model, key=lambda r: -r["ms"])[:5]:
        print(f"  {r['model']:32s} {r['ms']:6.1f}  ({r['ort_optimize_ms']:.1f})")
    tf_names = {m.name for m in transformer_models() if m.family in TRANSFORMER_FAMILIES}
    tf = np.array([r["ms"] for r in per_model if r["model"] in tf_names])
    res["any_onnx"]["transformers"] = {"n": int(len(tf)), "median_ms": float(np.median(tf)), "max_ms": float(tf.max()),
                                       "share_under_100ms": float(np.mean(tf <= 100))}
    print(f"of which {len(tf)} transformers: median {np.median(tf):.0f} ms, max {tf.max():.0f} ms, "
          f"{100 * np.mean(tf <= 100):.0f}% under 100 ms")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
