"""Gradient-boosted model inference: the vectorized numpy traversal hwnas predicts with
(``GBMModel.predict`` / :class:`StackedGBM`) against scikit-learn's own predict on the estimator
rebuilt from the saved JSON (``GBMModel.sklearn_estimator``), on the shipped models.

* single models (the ``learned`` residual, the accuracy predictor) at fixed batch sizes, on
  real feature rows (sampled architectures of the space): scikit-learn's predict on the whole
  batch, the traversal, and hwnas's ``predict`` (the traversal under ``SKLEARN_MIN_ROWS`` rows,
  else scikit-learn in blocks of rows);
* the search's own calls: an evolution search (``--generations``) is run with every gbm call
  recorded (rows and inputs), then the recorded calls are replayed through both paths and
  through hwnas's ``predict`` (the traversal under ``SKLEARN_MIN_ROWS`` rows, else scikit-learn);
* the kernel predictor: per profiled model (>= 20 kernels), all of its kernels' rows in one
  stacked traversal against one scikit-learn predict per kernel family.

Each figure is the median of ``--repeats`` timings; every pair is also checked bit-identical.

    python benchmarks/gbm_inference.py [--profile profiles/cpu-1t] [--generations 60]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCHES = (1, 10, 100, 300, 500, 1000, 10_000, 100_000)


def _median_s(fn, repeats: int) -> float:
    fn()  # warm (the scikit-learn estimator is rebuilt on the first call)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def single_models(profile: str, repeats: int) -> dict:
    from hwnas.accuracy.predictor import AccuracyPredictor
    from hwnas.predictors import load_predictor

    lp = load_predictor(profile, "learned")
    archs = lp.space_.sample_many(max(BATCHES), seed=0, unique=False)
    X = lp.space_.encode(archs)
    feats = {"learned residual": (lp._residual, lp._features(X, lp.lut_.predict_encoded(X)))}
    ap = AccuracyPredictor.load(ROOT / "profiles" / "accuracy" / "predictor.json")
    feats["accuracy predictor"] = (ap.compiled_, ap.transform(archs))
    out = {}
    for name, (model, F) in feats.items():
        sk = model.sklearn_estimator().predict
        rows = []
        for n in BATCHES:
            Xn = F[:n]
            same = bool(np.array_equal(model.traverse(Xn), sk(Xn)) and np.array_equal(model.predict(Xn), sk(Xn)))
            reps = max(3, min(repeats, int(2e5 // n)))
            t_sk, t_np = _median_s(lambda: sk(Xn), reps), _median_s(lambda: model.traverse(Xn), reps)
            t_hw = _median_s(lambda: model.predict(Xn), reps)
            rows.append({"rows": n, "sklearn_ms": 1e3 * t_sk, "numpy_ms": 1e3 * t_np, "numpy_over_sklearn": t_np / t_sk,
                         "hwnas_ms": 1e3 * t_hw, "hwnas_over_sklearn": t_hw / t_sk, "bit_identical": same})
            print(f"{name:20s} {n:7d} rows: sklearn {1e3 * t_sk:9.3f} ms, numpy traversal {1e3 * t_np:9.3f} ms "
                  f"(numpy/sklearn {t_np / t_sk:5.2f}), hwnas predict {1e3 * t_hw:9.3f} ms ({t_hw / t_sk:5.2f})"
                  f"{'' if same else '  DIFFERENT'}")
        out[name] = {"n_trees": len(model.trees), "n_features": model.n_features, "batches": rows}
    return out


def search_calls(profile: str, generations: int, repeats: int) -> dict:
    """The gbm calls an evolution search makes, replayed through both paths."""
    from hwnas.predictors.serialize import SKLEARN_MIN_ROWS, GBMModel
    from hwnas.search import SearchConfig, run_search

    calls: list = []
    orig = GBMModel.predict

    def spy(self, X):
        calls.append((self, np.array(X, dtype=np.float64)))
        return orig(self, X)

    GBMModel.predict = spy
    try:
        probe = run_search(SearchConfig(budgets_ms=(1e6,), profiles=(profile,), latency_predictor="learned",
                                        population=10, generations=1))
        lo, hi = probe.min_latency_ms[0], probe.max_latency_ms[0]
        calls.clear()
        budget = round(lo + 0.2 * (hi - lo), 2)
        t0 = time.perf_counter()
        run_search(SearchConfig(budgets_ms=(budget,), profiles=(profile,), latency_predictor="learned",
                                generations=generations, seed=0))
        search_s = time.perf_counter() - t0
    finally:
        GBMModel.predict = orig
    sizes = np.array([len(X) for _, X in calls])
    same = all(np.array_equal(m.traverse(X), m.sklearn_estimator().predict(X)) for m, X in calls)

    def replay_sklearn():
        for m, X in calls:
            m.sklearn_estimator().predict(X)

    def replay_numpy():
        for m, X in calls:
            m.traverse(X)

    def replay_hwnas():
        for m, X in calls:
            orig(m, X)

    reps = max(3, repeats // 3)
    t_sk, t_np, t_hw = _median_s(replay_sklearn, reps), _median_s(replay_numpy, reps), _median_s(replay_hwnas, reps)
    res = {"budget_ms": budget, "generations": generations, "search_seconds": search_s, "calls": int(len(sizes)),
           "rows_median": float(np.median(sizes)), "rows_p10": float(np.percentile(sizes, 10)),
           "rows_p90": float(np.percentile(sizes, 90)), "rows_max": int(sizes.max()), "rows_total": int(sizes.sum()),
           "sklearn_s": t_sk, "numpy_s": t_np, "numpy_over_sklearn": t_np / t_sk, "hwnas_s": t_hw,
           "hwnas_over_sklearn": t_hw / t_sk, "bit_identical": bool(same)}
    print(f"search ({generations} generations, budget {budget} ms, {search_s:.1f} s): {len(sizes)} gbm calls, rows "
          f"median {res['rows_median']:.0f} (p10 {res['rows_p10']:.0f}, p90 {res['rows_p90']:.0f}, max {sizes.max()}); "
          f"replayed: sklearn {t_sk:.3f} s, numpy traversal {t_np:.3f} s (numpy/sklearn {t_np / t_sk:.2f}), "
          f"hwnas (numpy under {SKLEARN_MIN_ROWS} rows, else sklearn) {t_hw:.3f} s ({t_hw / t_sk:.2f})"
          f"{'' if same else '  DIFFERENT'}")
    return res


def kernel_models(profile: str, repeats: int, min_kernels: int = 20) -> dict:
    from hwnas.predictors import load_predictor
    from hwnas.predictors.kernel import _context_of
    from hwnas.predictors.kernel_features import FEATURE_NAMES, featurize_records, records_from_frame
    from hwnas.profile import Profile

    kp = load_predictor(profile, "kernel")
    kr = Profile.load(profile, check_machine=False).kernel_records
    stacked, index = kp._stack()
    sizes = kr.groupby("arch").size()
    per = []
    for key in sizes[sizes >= min_kernels].index:
        rows, _ = featurize_records(records_from_frame(kr[kr["arch"] == key]))
        F = np.array([r.features for r in rows], dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
        X = np.hstack([F, np.tile(_context_of(F) if kp.model_context else np.zeros(0), (len(rows), 1)),
                       np.zeros((len(rows), 1))])
        which = np.array([index.get(r.family, -1) for r in rows])
        sel = np.flatnonzero(which >= 0)
        fams = {f: np.flatnonzero(which == i) for f, i in index.items() if (which == i).any()}
        Xs, ws = X[sel], which[sel]

        def by_family():
            out = np.empty(len(X))
            for f, idx in fams.items():
                out[idx] = kp._model(f).sklearn_estimator().predict(X[idx])
            return out[sel]

        same = bool(np.array_equal(stacked.predict(Xs, ws), by_family()))
        t_np = _median_s(lambda: stacked.predict(Xs, ws), repeats)
        t_sk = _median_s(by_family, repeats)
        per.append((len(sel), len(fams), t_sk, t_np, same))
    a = np.array([p[:4] for p in per])
    res = {"models": len(per), "kernels_median": float(np.median(a[:, 0])), "families_median": float(np.median(a[:, 1])),
           "sklearn_ms_per_model_median": 1e3 * float(np.median(a[:, 2])),
           "numpy_ms_per_model_median": 1e3 * float(np.median(a[:, 3])),
           "sklearn_over_numpy_median": float(np.median(a[:, 2] / a[:, 3])),
           "bit_identical": all(p[4] for p in per)}
    print(f"kernel predictor, {len(per)} profiled models (>= {min_kernels} kernels; median {res['kernels_median']:.0f} "
          f"kernels in {res['families_median']:.0f} families): per model sklearn per family "
          f"{res['sklearn_ms_per_model_median']:.2f} ms, stacked numpy traversal {res['numpy_ms_per_model_median']:.2f} ms "
          f"(median ratio {res['sklearn_over_numpy_median']:.1f}x){'' if res['bit_identical'] else '  DIFFERENT'}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(ROOT / "profiles" / "cpu-1t"))
    ap.add_argument("--generations", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=str(HERE / "results" / "gbm_inference.json"))
    args = ap.parse_args()
    import sklearn

    res = {"profile": os.path.relpath(args.profile, ROOT), "sklearn_version": sklearn.__version__,
           "load_average_at_start": list(os.getloadavg()),
           "single_models": single_models(args.profile, args.repeats),
           "search": search_calls(args.profile, args.generations, args.repeats),
           "kernel": kernel_models(args.profile, args.repeats)}
    res["load_average_at_end"] = list(os.getloadavg())
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"load average {res['load_average_at_start'][0]:.1f} -> {res['load_average_at_end'][0]:.1f} "
          f"(2 cores); saved {args.out}")


if __name__ == "__main__":
    main()
