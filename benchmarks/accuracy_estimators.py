"""Accuracy estimators on the offline dataset: supernet, inherited weights, predictor, proxy, baselines.

Steps (all on the offline digits dataset, 1,797 images of 8x8 upsampled to 32x32 RGB, 10 classes;
a stratified 50/50 train/validation split (see ``TrainConfig.resolved``); accuracies are top-1 % on
the 899 validation images):

1. train the weight-sharing supernet (sandwich rule) within ``--budget-min`` minutes: a short
   probe of a few sandwich steps times this machine, and the number of epochs is chosen to fit
   the budget (``--epochs`` overrides); training also stops at the budget whatever happens;
2. inherited-weight accuracy (after BN recalibration) of ``--n-eval`` seeded random subnets:
   min / median / max;
3. the accuracy predictor fitted on ``--n-pairs`` *other* subnets' inherited-weight accuracies
   (gradient-boosted trees; the feature set chosen by 5-fold cross-validation on those pairs),
   tested on the ``--n-eval`` subnets: RMSE, Spearman, Kendall (every candidate, and an MLP as
   in OFA, also reported on the test subnets for comparison, not used for the choice);
4. ``--n-alone`` subnets (at the 0/25/50/75/100% quantiles of inherited accuracy) trained alone
   from scratch with the supernet's data, schedule, augmentation and number of optimizer steps
   (same epochs; each step one network instead of the sandwich's four);
5. the NASWOT zero-cost proxy and the params / MACs baselines: Spearman against inherited-weight
   accuracy on the same ``--n-eval`` subnets.

Prints a table, saves ``benchmarks/results/accuracy_estimators.json`` and ships the fitted
predictor and the measured pairs to ``--ship`` (default ``profiles/accuracy``), so that
``hwnas accuracy ARCH`` works out of the box.  The supernet checkpoint (about 37 MB plus the
optimizer state) stays in ``--work`` (default ``out/accuracy-supernet``, git-ignored).

    nice -n 19 python benchmarks/accuracy_estimators.py [--threads 1] [--budget-min 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _probe_step_seconds(space, data, cfg, steps: int = 4) -> float:
    """Median seconds of a sandwich step (the training's own, :func:`sandwich_step`) on a
    throwaway supernet (after one warm-up step)."""
    import torch

    from hwnas.accuracy.supernet import Batches, Supernet, _make_optimizer, sandwich_step

    torch.manual_seed(123)
    net = Supernet(space, data.n_classes, cfg.kernel_mode).to(memory_format=torch.channels_last).train()
    opt = _make_optimizer(net, cfg)
    tr, _ = data.split(cfg.val_fraction, cfg.seed)
    b = Batches(data, tr, space)
    rng = np.random.default_rng(123)
    times = []
    for i in range(steps + 1):
        idx = tr[rng.permutation(len(tr))[:cfg.batch_size]]
        x, y = b.tensor(idx), torch.from_numpy(data.labels[idx])
        t0 = time.perf_counter()
        sandwich_step(net, opt, b, x, y, rng, cfg)
        if i:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    import torch
    from scipy import stats

    from hwnas.accuracy.data import load_digits_dataset
    from hwnas.accuracy.estimators import MacsEstimator, NaswotEstimator, ParamsEstimator
    from hwnas.accuracy.predictor import (PAIRS_FILE, PREDICTOR_FILE, AccuracyPredictor, checkpoint_id, fit_auto,
                                          rank_metrics, supernet_pairs)
    from hwnas.accuracy.supernet import (CHECKPOINT, TrainConfig, _epoch_batches, evaluate_archs,
                                         load_supernet, train_standalone, train_supernet)
    from hwnas.space import DEFAULT_SPACE as S

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(ROOT / "out" / "accuracy-supernet"))
    ap.add_argument("--budget-min", type=float, default=10.0, help="supernet training budget (minutes)")
    ap.add_argument("--epochs", type=int, default=None, help="default: as many as fit the budget")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: a busy 2-core machine starves multi-threaded torch)")
    ap.add_argument("--n-eval", type=int, default=200)
    ap.add_argument("--n-pairs", type=int, default=300)
    ap.add_argument("--n-alone", type=int, default=5)
    ap.add_argument("--ship", default=str(ROOT / "profiles" / "accuracy"))
    ap.add_argument("--out", default=str(HERE / "results" / "accuracy_estimators.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    res: dict = {"machine": {"threads": args.threads, "cpu_count": __import__("os").cpu_count()}}

    data = load_digits_dataset()
    res["dataset"] = data.describe() | {"classes": None}
    budget_s = 60.0 * args.budget_min
    cfg = TrainConfig().resolved(data)
    tr, va = data.split(cfg.val_fraction, cfg.seed)
    steps_per_epoch = len(_epoch_batches(len(tr), cfg, 0))
    if args.epochs is None:
        t0 = time.perf_counter()
        step_s = _probe_step_seconds(S, data, cfg)
        epochs = max(1, int(0.88 * budget_s / (step_s * steps_per_epoch)))
        res["probe"] = {"step_seconds": step_s, "seconds": time.perf_counter() - t0, "epochs_chosen": epochs}
        print(f"probe: {step_s:.2f} s per sandwich step, {steps_per_epoch} steps per epoch -> {epochs} epochs "
              f"in {args.budget_min:g} min", flush=True)
    else:
        epochs = args.epochs
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "epochs": epochs})

    # 1. train -------------------------------------------------------------------------------
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    last = [0.0]

    def prog(done, total, info):
        now = time.perf_counter()
        if now - last[0] > 30 or done == total:
            last[0] = now
            print(f"  step {done}/{total} epoch {info['epoch'] + 1} loss {info['loss']:.3f}", flush=True)

    r = train_supernet(data, work, cfg, space=S, time_budget_s=budget_s, progress=prog)
    res["train"] = {"epochs_planned": epochs, "epochs_done": r.epochs_done, "step_in_epoch": r.step_in_epoch,
                    "seconds": r.seconds, "stopped_by_budget": r.stopped_by_budget,
                    "budget_seconds": budget_s, "within_budget": r.seconds <= budget_s + 5,
                    "config": cfg.to_dict(), "history": r.history,
                    "checkpoint_mb": (work / CHECKPOINT).stat().st_size / 1e6}
    print(f"supernet: {r.epochs_done}/{epochs} epochs in {r.seconds:.0f} s "
          f"({'stopped by budget' if r.stopped_by_budget else 'complete'})", flush=True)

    # 2. inherited-weight accuracy over n_eval subnets ------------------------------------------
    ls = load_supernet(work, S, data)
    eval_archs = S.sample_many(args.n_eval, seed=100)
    t0 = time.perf_counter()
    acc, items = evaluate_archs(ls, eval_archs, return_items=True)
    t_eval = time.perf_counter() - t0
    ext = evaluate_archs(ls, [S.largest(), S.smallest()])
    # how repeatable is the measurement over a resampling of images?  Spearman between the
    # accuracies on the even and the odd validation images, stepped up to the full set
    # (Spearman-Brown).  Not a bound for estimators scored on these same images.
    half = np.arange(items.shape[1]) % 2 == 0
    r_half = float(stats.spearmanr(items[:, half].mean(1), items[:, ~half].mean(1)).statistic)
    reliability = 2 * r_half / (1 + r_half)
    res["inherited"] = {"n": len(acc), "min": float(acc.min()), "median": float(np.median(acc)),
                        "max": float(acc.max()), "mean": float(acc.mean()), "std": float(acc.std()),
                        "largest": float(ext[0]), "smallest": float(ext[1]),
                        "seconds_per_subnet": t_eval / len(acc), "val_images": int(len(ls.val_idx)),
                        "split_half_spearman": r_half, "reliability_full_set": reliability}
    print(f"inherited top-1 over {len(acc)} subnets: min {acc.min():.1f}  median {np.median(acc):.1f}  "
          f"max {acc.max():.1f}  (largest {ext[0]:.1f}, smallest {ext[1]:.1f}; {t_eval / len(acc):.2f} s/subnet); "
          f"split-half reliability {reliability:.2f}", flush=True)

    # 3. accuracy predictor -----------------------------------------------------------------------
    t0 = time.perf_counter()
    # the training pairs: the first n_pairs of the first n_pairs + 20 seeded subnets that are not
    # test subnets.  Seeded draws are prefixes of longer ones, so the 20 spares are drawn only if
    # the test set took some of the first n_pairs (supernet_pairs reuses the measured ones).
    test_keys = {str(a) for a in eval_archs}
    for n_draw in (args.n_pairs, args.n_pairs + 20):
        pair_archs, pair_acc = supernet_pairs(work, n_draw, seed=1, space=S, loaded=ls)
        keep = [i for i, a in enumerate(pair_archs) if str(a) not in test_keys][:args.n_pairs]
        if len(keep) == args.n_pairs:
            break
    pair_archs = [pair_archs[i] for i in keep]
    pair_acc = pair_acc[keep]
    t_pairs = time.perf_counter() - t0
    # the shipped predictor: model and features chosen by 5-fold CV on the training pairs only
    shipped = fit_auto(pair_archs, pair_acc, S)
    pred_vals = shipped.predict(eval_archs)
    main_m = rank_metrics(pred_vals, acc)
    chosen = f"{shipped.model}/{shipped.features}"
    variants = {}  # every candidate on the test subnets, for information (not used to choose)
    for model in ("gbm", "mlp"):
        for feats in ("ordinal", "ordinal+cost", "onehot+cost"):
            p = AccuracyPredictor(S, model, feats).fit(pair_archs, pair_acc)
            variants[f"{model}/{feats}"] = rank_metrics(p.predict(eval_archs), acc)
    res["predictor"] = {"chosen": chosen, "cv_spearman": shipped.info.get("cv"), "n_train_pairs": len(pair_archs),
                        "n_test": len(acc), "pair_seconds": t_pairs, "heldout": main_m, "variants": variants,
                        "target_spearman": 0.8, "meets_target": bool(main_m["spearman"] >= 0.8)}
    print(f"predictor ({chosen}, chosen by CV) on {len(acc)} held-out subnets, fitted on {len(pair_archs)}: "
          f"RMSE {main_m['rmse']:.2f}  Spearman {main_m['spearman']:.3f}  Kendall {main_m['kendall']:.3f}", flush=True)

    # 5. proxy and baselines (before the long standalone trainings) ---------------------------------
    t0 = time.perf_counter()
    nw = NaswotEstimator(S, data=data).estimate(eval_archs)
    t_nw = time.perf_counter() - t0
    params = ParamsEstimator(S).estimate(eval_archs)
    macs = MacsEstimator(S).estimate(eval_archs)
    sp = lambda v: float(stats.spearmanr(v, acc).statistic)  # noqa: E731
    kt = lambda v: float(stats.kendalltau(v, acc).statistic)  # noqa: E731
    res["ranking_vs_inherited"] = {
        "naswot": {"spearman": sp(nw), "kendall": kt(nw), "seconds_per_arch": t_nw / len(acc)},
        "params": {"spearman": sp(params), "kendall": kt(params)},
        "macs": {"spearman": sp(macs), "kendall": kt(macs)},
        "predictor": {"spearman": sp(pred_vals), "kendall": kt(pred_vals)},
    }

    # 4. trained alone --------------------------------------------------------------------------
    order = np.argsort(acc, kind="stable")
    qs = np.linspace(0, 1, args.n_alone) if args.n_alone > 1 else np.array([0.5] * args.n_alone)
    picks = sorted({int(order[int(round(q * (len(order) - 1)))]) for q in qs})
    alone = []
    for i in picks:
        a = eval_archs[i]
        a_acc, secs = train_standalone(a, data, cfg, S)
        alone.append({"arch": str(a), "inherited": float(acc[i]), "alone": a_acc, "alone_seconds": secs})
        print(f"  {a}: inherited {acc[i]:.1f}  alone {a_acc:.1f}  ({secs:.0f} s)", flush=True)
    inh = [x["inherited"] for x in alone]
    aln = [x["alone"] for x in alone]
    res["alone"] = {"subnets": alone, "epochs": epochs, "optimizer_steps": epochs * steps_per_epoch,
                    "spearman": float(stats.spearmanr(inh, aln).statistic) if len(alone) > 2 else None,
                    "kendall": float(stats.kendalltau(inh, aln).statistic) if len(alone) > 2 else None}

    # ship ----------------------------------------------------------------------------------------
    ship = Path(args.ship)
    ship.mkdir(parents=True, exist_ok=True)
    meta = ls.meta  # supernet.json as loaded (nothing has written it since)
    ck = checkpoint_id(work)
    shipped.info.update({
        "target": f"top-1 % with inherited supernet weights on builtin:digits (validation split, {len(ls.val_idx)} images)",
        "source": f"supernet subnets (builtin:digits, {r.epochs_done} epochs, {r.seconds:.0f} s)",
        "heldout": main_m | {"n_train": len(pair_archs), "test": f"{len(acc)} other random subnets"},
        "supernet": {"checkpoint": ck, "epochs_done": meta["epochs_done"],
                     "train_seconds": meta["train_seconds"], "dataset": meta["dataset"]["source"],
                     "fingerprint": meta["dataset"]["fingerprint"], "config": meta["config"]},
    })
    shipped.save(ship / PREDICTOR_FILE)
    with open(ship / PAIRS_FILE, "w", encoding="utf-8") as f:
        f.write("arch,accuracy,checkpoint,role\n")
        for a, v in zip(pair_archs, pair_acc):
            f.write(f"{a},{v:.4f},{ck},train\n")
        for a, v in zip(eval_archs, acc):
            f.write(f"{a},{v:.4f},{ck},test\n")
    res["shipped"] = {p.name: p.stat().st_size for p in (ship / PREDICTOR_FILE, ship / PAIRS_FILE)}
    res["total_seconds"] = time.perf_counter() - t_all

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")

    # table -----------------------------------------------------------------------------------------
    rv = res["ranking_vs_inherited"]
    print()
    print(f"supernet training     {r.epochs_done}/{epochs} epochs, {r.seconds / 60:.1f} min on {args.threads} thread(s) "
          f"(budget {args.budget_min:g} min)")
    print(f"inherited top-1 %     min {acc.min():.1f} / median {np.median(acc):.1f} / max {acc.max():.1f} "
          f"over {len(acc)} subnets; split-half reliability {reliability:.2f}")
    print(f"predictor ({chosen})  Spearman {main_m['spearman']:.3f} (target 0.8), RMSE {main_m['rmse']:.2f} pp, "
          f"Kendall {main_m['kendall']:.3f}")
    print("ranking vs inherited  " + "   ".join(f"{k} {v['spearman']:+.3f}" for k, v in rv.items()) + "  (Spearman)")
    print(f"inherited vs alone    Spearman {res['alone']['spearman']}")
    for x in alone:
        print(f"   {x['arch']:<90s} inherited {x['inherited']:5.1f}  alone {x['alone']:5.1f}")
    print(f"saved {out}; shipped {', '.join(res['shipped'])} to {ship}; total {res['total_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
