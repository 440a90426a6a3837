"""Transformers with fused attention (ORT's ``Attention`` contrib op): measured vs the kernel predictor.

A transformer exported by optimum, or passed through ``onnxruntime.transformers``' optimizer,
runs each self-attention as one ``com.microsoft`` ``Attention`` kernel.  For each of the 18 zoo
transformer models (:func:`hwnas.zoo_transformers.transformer_models`) this script builds the same
architecture with ``fused_attention=True``, measures it end to end on the profile's device (canary
units, the canary-bracketed rounds every measurement uses) and predicts it with kernel predictors
fitted on the profile

* ``kernel``: without the model's family (its unfused zoo models) and without any sealed model, as
  ``predictor_accuracy.py`` judges the transformer families;
* ``kernel_no_attention_kernels``: the same fit without the campaign's ``attention`` / ``mha``
  kernels either: what a predictor that never saw a fused attention kernel does (the bytes-moved
  fallback, named in a warning).

Nothing measured here is fitted on.  Also printed: each fused model against its unfused twin's
stored measurement (what fusing saves on this CPU).

With ``--onnx FILE...``: transformers from outside (e.g. the Hugging Face BERT encoders that
``benchmarks/hf_bert_export.py`` writes) are judged as exported and after ``--fuse TYPE``
(``onnxruntime.transformers``' fusions, :func:`hwnas.device_graph.fuse_transformer`; the fused
twin is kept only where it holds an ``Attention``): measured the same way and predicted by the
kernel predictor fitted on the whole profile, as shipped, with and without the attention kernels;
reported apart under ``outside``.

    python benchmarks/fused_attention.py [--profile profiles/cpu-1t] [--onnx FILE... [--fuse bert]]
           [--out benchmarks/results/fused_attention.json]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", type=Path, default=None, help="profile directory (default: the bundled one)")
    ap.add_argument("--onnx", type=Path, nargs="*", default=[], help="outside ONNX models to judge too")
    ap.add_argument("--fuse", default="bert", help="transformer fusion for the outside models' fused twins")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fused_attention.json")
    args = ap.parse_args(argv)
    for f in args.onnx:
        if not f.is_file():
            print(f"error: no ONNX file {f}", file=sys.stderr)
            return 2

    from results_io import save_results

    from hwnas.device_graph import fuse_transformer
    from hwnas.measure import Measurer
    from hwnas.paths import default_profile_dir
    from hwnas.predictors.evaluate import metrics, zoo_table
    from hwnas.predictors.kernel import KernelPredictor, UncoveredOpsWarning
    from hwnas.profile import Profile
    from hwnas.zoo_sealed import SEALED_FAMILIES
    from hwnas.zoo_transformers import TRANSFORMER_FAMILIES, transformer_models

    prof = Profile.load(args.profile or default_profile_dir(), check_machine=False)
    campaign = list(prof.table("kernel")["key"])
    attention_keys = [k for k in campaign if k.startswith(("attention_", "mha_"))]
    if not attention_keys:
        print("error: the profile holds no attention / mha campaign kernels; add them with "
              "`hwnas profile --device DEVICE --out DIR --resume` (--n-attention-kernels)", file=sys.stderr)
        return 2
    df = zoo_table(prof)
    stored = dict(zip(df["name"], df["relative_to_canary"]))
    sealed = set(df.loc[df["family"].isin(SEALED_FAMILIES), "key"])
    models = [m for m in transformer_models() if m.family in TRANSFORMER_FAMILIES]
    t0 = time.time()
    # outside models: as exported, and fused where the fusion finds attention
    targets: dict[str, bytes] = {}
    for f in args.onnx:
        raw = f.read_bytes()
        targets[f.stem] = raw
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            fused = fuse_transformer(raw, args.fuse)
        if not isinstance(fused, bytes) and any(n.op_type == "Attention" for n in fused.graph.node):
            targets[f"{f.stem}_fused"] = fused.SerializeToString()

    # measured first, all in one Measurer (one canary, the machine lock held throughout)
    measured: dict[str, float] = {}
    noise: dict[str, float] = {}
    with Measurer(prof.device) as meas:
        for m in models:
            r = meas.measure(m.build_fused(), f"{m.name}_fused")
            measured[m.name], noise[m.name] = r.relative_to_canary, r.noise_rel
            print(f"measured {m.name:28s} fused {r.relative_to_canary:.4f} canaries "
                  f"(unfused, stored: {stored.get(m.name, float('nan')):.4f}; spread {r.noise_rel:.1%})", flush=True)
        outside: dict[str, dict] = {}
        for name, blob in targets.items():
            r = meas.measure(blob, name)
            outside[name] = {"measured": r.relative_to_canary, "spread": r.noise_rel}
            print(f"measured {name:34s} {r.relative_to_canary:.4f} canaries (spread {r.noise_rel:.1%})", flush=True)
        canaries = list(meas.canary_history_ms)

    out: dict = {"profile": str(args.profile or default_profile_dir()), "n_attention_kernels": len(attention_keys),
                 "canary_ms_range": [min(canaries), max(canaries)], "families": {}}
    for variant, extra in (("kernel", []), ("kernel_no_attention_kernels", attention_keys)):
        all_p, all_m = [], []
        for fam in TRANSFORMER_FAMILIES:
            group = [m for m in models if m.family == fam]
            exclude = sorted(sealed | set(df.loc[df["family"] == fam, "key"]) | set(extra))
            kp = KernelPredictor().fit(prof, exclude_models=exclude)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                pred = kp.predict_relative([m.build_fused() for m in group])
            fell_back = any(issubclass(w.category, UncoveredOpsWarning) for w in caught)
            y = np.array([measured[m.name] for m in group])
            fam_out = out["families"].setdefault(fam, {"models": {}})
            fam_out[variant] = {**metrics(pred, y), "fallback_warned": fell_back}
            for m, p in zip(group, pred):
                fam_out["models"].setdefault(m.name, {"measured_fused": measured[m.name], "spread": noise[m.name],
                                                      "stored_unfused": stored.get(m.name)})[variant] = float(p)
            all_p += list(pred)
            all_m += list(y)
            print(f"{variant:28s} {fam:7s} within ±10% {fam_out[variant]['within_10pct']:.0%}  "
                  f"MAPE {fam_out[variant]['mape_pct']:.1f}%  fallback warned: {fell_back}", flush=True)
        out[variant] = metrics(np.array(all_p), np.array(all_m))
        print(f"{variant:28s} all     within ±10% {out[variant]['within_10pct']:.0%}  "
              f"MAPE {out[variant]['mape_pct']:.1f}%", flush=True)
    if targets:
        import onnx

        out["outside"] = {"models": outside, "fuse": args.fuse}
        names = list(targets)
        for variant, extra in (("kernel", []), ("kernel_no_attention_kernels", attention_keys)):
            kp = KernelPredictor().fit(prof, exclude_models=extra)
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always")
                pred = kp.predict_relative([onnx.load_from_string(targets[n]) for n in names])
            for n, p in zip(names, pred):
                outside[n][variant] = float(p)
            for part, fused_part in (("as_exported", False), ("fused", True)):
                sel = [i for i, n in enumerate(names) if n.endswith("_fused") == fused_part]
                if not sel:
                    continue
                y = np.array([outside[names[i]]["measured"] for i in sel])
                res = out["outside"].setdefault(part, {})[variant] = metrics(pred[sel], y)
                print(f"outside {part:11s} {variant:28s} within ±10% {res['within_10pct']:.0%}  "
                      f"MAPE {res['mape_pct']:.1f}%", flush=True)
        for name, row in outside.items():
            print(f"  {name:28s} measured {row['measured']:.4f}  kernel {row['kernel'] / row['measured'] - 1:+.1%}  "
                  f"without attention kernels {row['kernel_no_attention_kernels'] / row['measured'] - 1:+.1%}")
    ratios = [measured[m.name] / stored[m.name] for m in models if stored.get(m.name)]
    out["fused_over_unfused"] = {"median": float(np.median(ratios)), "min": float(min(ratios)),
                                 "max": float(max(ratios)), "n": len(ratios)}
    out["median_spread"] = float(np.median(list(noise.values())))
    out["seconds"] = time.time() - t0
    for name, row in ((m.name, out["families"][m.family]["models"][m.name]) for m in models):
        y, p, q = row["measured_fused"], row["kernel"], row["kernel_no_attention_kernels"]
        print(f"  {name:28s} measured {y:.4f}  kernel {p:.4f} ({p / y - 1:+.1%})  "
              f"without attention kernels {q:.4f} ({q / y - 1:+.1%})")
    print(f"fused / unfused (stored) median {out['fused_over_unfused']['median']:.2f} "
          f"({out['fused_over_unfused']['min']:.2f}-{out['fused_over_unfused']['max']:.2f}); "
          f"canary {min(canaries):.2f}-{max(canaries):.2f} ms; {out['seconds']:.0f} s")
    save_results(out, args.out)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
