"""A new device in minutes: few-shot profiles from the bundled cpu-1t reference, judged on full
profiles of the same devices.

For each target device and each N, runs the real command (timed, in its own process)::

    hwnas profile --device D --out OUT --from-profile profiles/cpu-1t --quick N

then scores the adapted predictor on the full profile's measured architectures that the
few-shot profile did not measure (canary units), next to the reference predictor taken as is
and the full profile's own default predictor on its held-out half.

    python benchmarks/new_device.py [--devices cpu-2t cpu-1t-int8] [--shots 10 30 100] [--repeats 3]

Each repeat is a separate calibration with another seed (other architectures measured at
another time): the spread over repeats is what a user's single calibration may land on.
The transfer's 90% prediction interval (leave-one-out) is judged on the same held-out set.

Needs full, trained profiles ``profiles/<device>`` (see the README for the commands).
Measures on this machine: run it alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> None:
    from hwnas.predictors.evaluate import evaluate_fewshot
    from hwnas.profile import Profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=str(ROOT / "profiles" / "cpu-1t"))
    ap.add_argument("--devices", nargs="+", default=["cpu-2t", "cpu-1t-int8"])
    ap.add_argument("--shots", nargs="+", type=int, default=[10, 30, 100])
    ap.add_argument("--repeats", type=int, default=1, help="calibrations per N (seeds F, F + 1, ...)")
    ap.add_argument("--first-seed", type=int, default=0, help="F: the first calibration's seed (default 0)")
    ap.add_argument("--zoo-shots", type=int, default=0,
                    help="zoo models measured too (default 0: this benchmark judges architectures only)")
    ap.add_argument("--work", default=None, help="where the few-shot profiles go (default: a temporary folder)")
    ap.add_argument("--out", default=str(HERE / "results" / "new_device.json"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="hwnas-new-device-"))
    res: dict = {"reference": args.reference, "devices": {}}
    for dev in args.devices:
        full_dir = ROOT / "profiles" / dev
        if not (full_dir / "predictors" / "index.json").is_file():
            sys.exit(f"error: no trained full profile at {full_dir}; make one first (README: 'A new device')")
        full = Profile.load(full_dir)
        entry: dict = {"full_profile": str(full_dir), "full_archs": int(len(full.table("arch"))), "shots": {}}
        for n in args.shots:
            runs = []
            for rep in range(args.first_seed, args.first_seed + args.repeats):
                out = work / f"{dev}-n{n}-s{rep}"
                if out.exists():
                    shutil.rmtree(out)
                t0 = time.perf_counter()
                r = subprocess.run([sys.executable, "-m", "hwnas", "profile", "--device", dev, "--out", str(out),
                                    "--from-profile", args.reference, "--quick", str(n), "--seed", str(rep),
                                    "--zoo-shots", str(args.zoo_shots)],
                                   capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if r.returncode != 0:
                    sys.exit(f"error: few-shot profile {dev} N={n} failed: {r.stderr.strip().splitlines()[-1]}")
                ev = evaluate_fewshot(Profile.load(out), full)
                ev["wall_s"] = round(wall, 1)
                ev["seed"] = rep
                runs.append(ev)
                t, a = ev["transfer"], ev["reference_as_is"]
                cov = t.get("interval", {}).get("covered")
                print(f"{dev:12s} N={n:<4d} seed {rep} {wall:6.1f} s  transfer ±10% {100 * t['within_10pct']:5.1f}%  "
                      f"±5% {100 * t['within_5pct']:5.1f}%  MAPE {t['mape_pct']:5.2f}%  Spearman {t['spearman']:.4f}  "
                      + (f"90% interval covers {100 * cov:5.1f}%  " if cov is not None else "")
                      + f"| reference as is ±10% {100 * a['within_10pct']:5.1f}%  (on {ev['n_test']} held-out)",
                      flush=True)
            entry["shots"][str(n)] = runs[0] if args.repeats == 1 else {
                "runs": runs,
                "spread": {k: [min(r["transfer"][k] for r in runs), max(r["transfer"][k] for r in runs)]
                           for k in ("within_10pct", "within_5pct", "mape_pct", "spearman")}}
        first = next(iter(entry["shots"].values()))
        first = first["runs"][0] if "runs" in first else first
        f = first["full_profile_default"]
        if f:
            print(f"{dev:12s} full profile ({f['predictor']}, {f['n_train']} archs for fitting): "
                  f"±10% {100 * f['within_10pct']:5.1f}%  ±5% {100 * f['within_5pct']:5.1f}%  MAPE {f['mape_pct']:5.2f}%")
        entry["noise_floor"] = first["noise_floor"]
        res["devices"][dev] = entry
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
