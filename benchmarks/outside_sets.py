"""Outside ONNX models judged against an independent harness, for several profiles in one pass.

Each profile's default predictor of ONNX models predicts every model (``hwnas predict --json``,
canary units: ``kernel`` on a full profile, ``transfer`` on a few-shot one); then every model is
measured once by an independent timing harness (by default ``../shared/outside-check/measure.py``,
which knows nothing of hwnas but its canary), interleaved with the canary; each profile is judged
against that one measurement pass, so profiles made at different times, or in different states of a
shared machine, are compared on equal terms.  Nothing is fitted here.  Prints and saves
(``benchmarks/results/outside_sets.json``) per set and profile: within ±10% / ±5%, MAPE, Spearman and
every model's error.

    python benchmarks/outside_sets.py --profile profiles/cpu-1t --profile FRESH_DIR \\
        --set outside=/tmp/outside-zoo --set torchvision2=/tmp/tv2 [--rounds 5] [--runs 10]

Measure with nothing else running.  The ONNX sets are made by ``../shared/outside-check/export_zoo.py``
and ``benchmarks/torchvision_zoo.py`` (both need torchvision, which hwnas does not depend on).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HARNESS = HERE.parent.parent / "shared" / "outside-check" / "measure.py"


def judge(pred: dict[str, float], meas: dict[str, float]) -> dict:
    """Errors of ``pred`` against ``meas`` (both canary-relative, keyed alike)."""
    from scipy.stats import spearmanr

    names = sorted(meas)
    m = np.array([meas[n] for n in names])
    p = np.array([pred[n] for n in names])
    e = p / m - 1
    return {"n": len(names), "within_10pct": float(np.mean(np.abs(e) <= 0.10)),
            "within_5pct": float(np.mean(np.abs(e) <= 0.05)), "mape_pct": float(100 * np.mean(np.abs(e))),
            "spearman": float(spearmanr(m, p).correlation),
            "models": {Path(n).stem: {"measured": float(a), "predicted": float(b), "error_pct": float(100 * x)}
                       for n, a, b, x in zip(names, m, p, e)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="append", required=True, help="a trained profile (repeatable)")
    ap.add_argument("--set", action="append", required=True, metavar="NAME=DIR",
                    help="a set of ONNX models, every *.onnx in DIR (repeatable)")
    ap.add_argument("--harness", type=Path, default=HARNESS, help="the independent timing harness")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "outside_sets.json")
    args = ap.parse_args(argv)
    if not args.harness.is_file():
        ap.error(f"no timing harness at {args.harness} (--harness)")
    sets: dict[str, list[str]] = {}
    for s in args.set:
        name, sep, folder = s.partition("=")
        models = sorted(str(p) for p in Path(folder).glob("*.onnx")) if sep else []
        if not models:
            ap.error(f"--set {s!r}: expected NAME=DIR with .onnx files in DIR")
        sets[name] = models
    import onnx

    from hwnas.measure import canary_model

    hwnas = [sys.executable, "-m", "hwnas"]
    every = [m for ms in sets.values() for m in ms]
    preds: dict[str, dict[str, float]] = {}
    used: dict[str, list[str]] = {}
    for prof in args.profile:
        r = subprocess.run([*hwnas, "predict", *every, "--profile", prof, "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        rows = json.loads(r.stdout)
        preds[prof] = {d["target"]: float(d["relative_to_canary"]) for d in rows}
        used[prof] = sorted({d["predictor"] for d in rows})
    with tempfile.TemporaryDirectory() as tmp:
        canary = Path(tmp) / "canary.onnx"
        onnx.save(canary_model(1), canary)
        r = subprocess.run([sys.executable, str(args.harness), *every, "--canary", str(canary), "--rounds",
                            str(args.rounds), "--runs", str(args.runs)], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 1
    harness = json.loads(r.stdout)
    meas = {k: float(v["ratio"]) for k, v in harness["models"].items()}
    out = {"canary_ms": harness["canary_ms"], "rounds": args.rounds, "runs": args.runs, "sets": {}}
    for name, models in sets.items():
        out["sets"][name] = {}
        for prof in args.profile:
            j = judge({m: preds[prof][m] for m in models}, {m: meas[m] for m in models})
            out["sets"][name][prof] = {"predictor": used[prof], **j}
            worst = sorted(j["models"].items(), key=lambda kv: -abs(kv[1]["error_pct"]))[:3]
            print(f"{name:14s} {prof:28s} {j['n']} models: {100 * j['within_10pct']:.0f}% within ±10%, "
                  f"{100 * j['within_5pct']:.0f}% within ±5%, MAPE {j['mape_pct']:.1f}%, "
                  f"Spearman {j['spearman']:.3f}; "
                  f"worst " + ", ".join(f"{k} {v['error_pct']:+.0f}%" for k, v in worst))
    print(f"harness canary {harness['canary_ms']:.2f} ms")
    from results_io import save_results

    save_results(out, args.out)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
