"""A second measurement pass over a profile's zoo models: how far is the stored figure from a fresh one?

The predictor-accuracy figures on model families are judged against one stored measurement per
model; this says how much of a figure's error the measurement alone can explain.  Each model is
measured again (fresh session, fresh canary, the profile's device and default timing) and its
canary-relative latency compared with the profile's.  Only measurements: no predictor is run.
``--replace`` stores each fresh measurement (and the kernel profile taken with it, as the profile
campaign does) in place of the old one: for models first measured on a loaded machine; retrain
the predictors afterwards.  ``--passes N`` measures every model N times, round robin (so that one
model's passes lie minutes apart, in different states of a shared machine), and keeps (and with
``--replace`` stores) the median pass; the profile is written only after the last pass, so an
interrupted run changes nothing.

    python benchmarks/zoo_remeasure.py [--profile profiles/cpu-1t] [--set sealed|tuning|transformers|all]
        [--replace] [--passes N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from measurement_repeatability import agreement

HERE = Path(__file__).resolve().parent


def main() -> None:
    from hwnas.measure import Measurer
    from hwnas.paths import default_profile_dir
    from hwnas.predictors.evaluate import zoo_table
    from hwnas.profile import Profile
    from hwnas.profile.campaign import measure_task, zoo_tasks_of
    from hwnas.profile.store import ProfileStore
    from hwnas.zoo_sealed import SEALED_FAMILIES, model_by_name
    from hwnas.zoo_transformers import TRANSFORMER_FAMILIES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(default_profile_dir()))
    ap.add_argument("--set", choices=("sealed", "tuning", "transformers", "all"), default="sealed")
    ap.add_argument("--replace", action="store_true", help="store the fresh measurements in the profile")
    ap.add_argument("--passes", type=int, default=1,
                    help="measure every model this many times, round robin, and keep its median pass")
    ap.add_argument("--out", default=None, help="default: benchmarks/results/zoo_remeasure_<set>.json")
    args = ap.parse_args()
    if args.passes < 1:
        ap.error(f"--passes must be at least 1, got {args.passes}")
    prof = Profile.load(args.profile)
    df = zoo_table(prof)
    if args.set == "transformers":
        df = df[df["family"].isin(TRANSFORMER_FAMILIES)]
    elif args.set != "all":
        df = df[df["family"].isin(SEALED_FAMILIES) == (args.set == "sealed")]
    store = ProfileStore(args.profile) if args.replace else None
    t0 = time.time()
    names = list(df["name"])
    stored_by = dict(zip(names, df["relative_to_canary"]))
    noise_by = dict(zip(names, df["noise_rel"]))
    passes: dict[str, list] = {name: [] for name in names}
    tasks = dict(zip(names, zoo_tasks_of([model_by_name(name) for name in names])))
    with Measurer(prof.device) as m:
        for k in range(args.passes):  # round robin: each model's passes spread over the whole run
            for name in names:
                task = tasks[name]
                if store is None:  # the Measurer runs the model as the device does (its precision included)
                    r, kp = m.measure(task.build(), name), None
                else:  # as the profile campaign measures a zoo model: the measurement and its kernel profile
                    r, kp = measure_task(m, "zoo", task)
                passes[name].append((r, kp, task))
                stored = stored_by[name]
                print(f"pass {k + 1}/{args.passes} {name:28s} stored {stored:7.3f}  again {r.relative_to_canary:7.3f}  "
                      f"({100 * (r.relative_to_canary / stored - 1):+5.1f}%)  canary {r.canary_ms:.2f} ms", flush=True)
    rows = []
    for name in names:
        runs = sorted(passes[name], key=lambda t: t[0].relative_to_canary)
        r, kp, task = runs[(len(runs) - 1) // 2]  # the median pass (the lower one of an even count)
        if store is not None:
            store.replace_measurement("zoo", task.key, task.target, r, task.macs, task.params, kp)
        rel = [t[0].relative_to_canary for t in passes[name]]
        rows.append({"name": name, "stored": float(stored_by[name]), "stored_noise_rel": float(noise_by[name]),
                     "again": r.relative_to_canary, "again_noise_rel": r.noise_rel, "canary_ms": r.canary_ms,
                     "passes": rel, "canary_ms_passes": [t[0].canary_ms for t in passes[name]],
                     "pass_spread_rel": float((max(rel) - min(rel)) / np.median(rel))})
    a = np.array([r["again"] for r in rows])
    s = np.array([r["stored"] for r in rows])
    if store is not None:
        store.close(compact=True)  # one self-contained file, as the campaign leaves it
    res = {"profile": args.profile, "set": args.set, "replaced": args.replace, "passes": args.passes, "n": len(rows),
           "seconds": round(time.time() - t0, 1),
           "canary_relative": agreement(a, s),
           "median_noise_rel_stored": float(np.median([r["stored_noise_rel"] for r in rows])),
           "median_noise_rel_again": float(np.median([r["again_noise_rel"] for r in rows])),
           "median_pass_spread_rel": float(np.median([r["pass_spread_rel"] for r in rows])),
           "canary_ms_now": float(np.median([r["canary_ms"] for r in rows])),
           "canary_reference_ms": prof.canary_reference_ms, "models": rows}
    out = Path(args.out or HERE / "results" / f"zoo_remeasure_{args.set}.json")
    out.write_text(json.dumps(res, indent=2))
    c = res["canary_relative"]
    print(f"{args.set}: {len(rows)} models, fresh vs stored (canary-relative): {100 * c['within_5pct']:.0f}% within ±5%, "
          f"{100 * c['within_10pct']:.0f}% within ±10%, mean |dev| {c['mean_abs_dev_pct']:.1f}%, "
          f"max {c['max_abs_dev_pct']:.1f}%; canary now {res['canary_ms_now']:.2f} ms "
          f"(profile {res['canary_reference_ms']:.2f} ms); saved {out}")


if __name__ == "__main__":
    main()
