"""Accuracy estimators on a built-in dataset: supernet, inherited weights with their noise, predictor,
proxy, baselines, and stand-alone ground truth.

Steps (``--data``, default ``builtin:shapes``: 24,000 procedural 32x32 images of 12 classes,
stratified 80/20 train/validation split; ``builtin:digits``: the 1,797 digits, 50/50 split, see
``TrainConfig.resolved``; accuracies are top-1 % on the validation split, or on a seeded subset of
``--val-images`` of it):

1. train the weight-sharing supernet (sandwich rule) within ``--budget-min`` minutes: a short
   probe of a few sandwich steps times this machine, and the number of epochs is chosen to fit
   the budget (``--epochs`` overrides); training also stops at the budget whatever happens.
   ``--reuse`` takes the supernet already in ``--work`` instead;
2. inherited-weight accuracy (after BN recalibration) of ``--n-eval`` seeded random subnets and
   its noise (:func:`hwnas.accuracy.noise.accuracy_noise`): per subnet a bootstrap 95% interval,
   the spread against the median standard error, the split-half reliability of the ranking
   (Spearman-Brown); saved per subnet, and as a PNG next to the JSON;
3. the accuracy predictor fitted on ``--n-pairs`` *other* subnets' inherited-weight accuracies
   (model and feature set chosen by 5-fold cross-validation on those pairs), tested on the
   ``--n-eval`` subnets (every candidate also reported on them, not used for the choice);
4. the NASWOT zero-cost proxy and the params / MACs baselines against inherited accuracy;
5. ground truth: ``--standalone N`` of the evaluated subnets spread over their MACs (quantiles)
   trained alone from scratch with ``--seeds S`` weight initialisations each (same split,
   schedule, augmentation and number of optimizer steps as the supernet; seed 0 of all first);
   the seed-to-seed spread, and every estimator against the mean stand-alone accuracy
   (Spearman, Kendall, bootstrap 95% intervals over the subnets;
   :mod:`hwnas.accuracy.groundtruth`), trained in an order whose every prefix spans the MACs and
   reported after every training, so that a run stopped early keeps a report of what finished.

Saves the JSON after every step (an interrupted run keeps what it measured) and, before the
ground truth (which may be stopped), ships the fitted predictor and the measured pairs to
``--ship`` (default ``profiles/accuracy``; ``--ship ''``: not at all).  The supernet checkpoint stays in ``--work`` (git-ignored ``out/``).

    nice -n 19 python benchmarks/accuracy_estimators.py [--data builtin:shapes] [--budget-min 25]
        [--reuse] [--n-eval 200] [--n-pairs 300] [--standalone 20 --seeds 2]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from results_io import save_results

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


def _args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="builtin:shapes", help="a built-in dataset spec (or any --data source)")
    ap.add_argument("--work", default=None, help="supernet directory (default out/accuracy-supernet-<data>)")
    ap.add_argument("--reuse", action="store_true", help="use the supernet already in --work (no training)")
    ap.add_argument("--budget-min", type=float, default=25.0, help="supernet training budget (minutes)")
    ap.add_argument("--epochs", type=int, default=None, help="default: as many as fit the budget")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: a busy 2-core machine starves multi-threaded torch)")
    ap.add_argument("--n-eval", type=int, default=200)
    ap.add_argument("--val-images", type=int, default=None,
                    help="evaluate on a seeded stratified subset of this many validation images (default: all)")
    ap.add_argument("--n-pairs", type=int, default=300, help="predictor training pairs (0: no predictor)")
    ap.add_argument("--standalone", type=int, default=0, help="subnets trained alone (ground truth)")
    ap.add_argument("--seeds", type=int, default=2, help="initialisations per stand-alone subnet")
    ap.add_argument("--ship", default=str(ROOT / "profiles" / "accuracy"))
    ap.add_argument("--out", default=None, help="JSON (default results/accuracy_estimators[_<data>].json)")
    return ap.parse_args()


def _name(spec: str) -> str:
    return spec.split(":")[1] if spec.startswith("builtin:") else Path(spec).stem


def _plot(acc, lo, hi, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o = np.argsort(acc)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.errorbar(np.arange(len(o)), acc[o], yerr=[acc[o] - lo[o], hi[o] - acc[o]], fmt=".", ms=3, lw=0.6)
    ax.set_xlabel("subnet (sorted by inherited accuracy)")
    ax.set_ylabel("top-1 % (bootstrap 95% interval)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _val_subset(ls, n: int | None):
    """``ls`` evaluated on a seeded stratified subset of ``n`` of its validation images."""
    import dataclasses

    if n is None or n >= len(ls.val_idx):
        return ls
    labels = ls.data.labels[ls.val_idx]
    rng = np.random.default_rng([ls.config.seed, 7])
    per = {c: rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    k = n / len(ls.val_idx)
    keep = np.concatenate([p[:max(1, int(round(k * len(p))))] for p in per.values()])
    return dataclasses.replace(ls, val_idx=np.sort(ls.val_idx[keep]))


def _evaluate_cached(ls, archs, cache: Path, progress, chunk: int = 10):
    """``evaluate_archs(ls, archs, return_items=True)`` in chunks, each saved to ``cache`` (an
    ``.npz`` of arch strings and per-image correctness, no pickle), so that an interrupted run
    continues where it stopped."""
    from hwnas.accuracy.supernet import evaluate_archs

    done: dict[str, np.ndarray] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if z["items"].shape[1] == len(ls.val_idx) and np.array_equal(z["val_idx"], ls.val_idx):
                done = dict(zip(z["archs"].tolist(), z["items"]))
    todo = [a for a in archs if str(a) not in done]
    progress(len(archs) - len(todo))
    for i in range(0, len(todo), chunk):
        part = todo[i:i + chunk]
        _, it = evaluate_archs(ls, part, progress=progress, return_items=True)
        done.update(zip(map(str, part), it))
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez(tmp, archs=np.array(list(done)), items=np.stack(list(done.values())), val_idx=ls.val_idx)
        tmp.replace(cache)
    items = np.stack([done[str(a)] for a in archs])
    return 100.0 * items.mean(1), items


def main() -> None:
    import torch
    from scipy import stats

    from hwnas.accuracy.data import load_dataset
    from hwnas.accuracy.estimators import MacsEstimator, NaswotEstimator, ParamsEstimator
    from hwnas.accuracy.groundtruth import ground_truth_report, quantile_picks, spread_order, train_seed_major
    from hwnas.accuracy.noise import accuracy_noise
    from hwnas.accuracy.predictor import (PAIRS_FILE, PREDICTOR_FILE, AccuracyPredictor, checkpoint_id, fit_auto,
                                          rank_metrics, supernet_pairs)
    from hwnas.accuracy.supernet import (CHECKPOINT, TrainConfig, _epoch_batches, evaluate_archs, load_supernet,
                                         train_standalone, train_supernet)
    from hwnas.space import DEFAULT_SPACE as S

    args = _args()
    name = _name(args.data)
    work = Path(args.work or ROOT / "out" / f"accuracy-supernet-{name}")
    out = Path(args.out or HERE / "results" / ("accuracy_estimators.json" if name == "digits"
                                               else f"accuracy_estimators_{name}.json"))
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    res: dict = {"command": "python benchmarks/accuracy_estimators.py " + " ".join(__import__("sys").argv[1:]),
                 "machine": {"threads": args.threads, "cpu_count": __import__("os").cpu_count(),
                             "load_average_at_start": list(__import__("os").getloadavg())}}
    t0 = time.perf_counter()
    data = load_dataset(args.data)
    res["dataset"] = data.describe() | {"classes": None, "load_seconds": time.perf_counter() - t0}
    cfg = TrainConfig().resolved(data)
    tr, va = data.split(cfg.val_fraction, cfg.seed)
    steps_per_epoch = len(_epoch_batches(len(tr), cfg, 0))

    # 1. train -------------------------------------------------------------------------------
    if args.reuse:
        ls = load_supernet(work, S, data)
        cfg = ls.config
        meta = ls.meta
        res["train"] = {"reused": str(work), "epochs_done": meta["epochs_done"], "step_in_epoch": meta["step_in_epoch"],
                        "epochs_planned": cfg.epochs, "seconds": meta["train_seconds"], "config": cfg.to_dict(),
                        "history": meta["history"], "checkpoint_mb": (work / CHECKPOINT).stat().st_size / 1e6}
        print(f"supernet reused from {work}: {meta['epochs_done']}/{cfg.epochs} epochs (+{meta['step_in_epoch']} "
              f"steps) in {meta['train_seconds']:.0f} s", flush=True)
    else:
        budget_s = 60.0 * args.budget_min
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
        ls = load_supernet(work, S, data)
    res["train"]["steps_per_epoch"] = steps_per_epoch
    save_results(res, out)

    # 2. inherited-weight accuracy over n_eval subnets, with its noise ---------------------------
    ls = _val_subset(ls, args.val_images)
    eval_archs = S.sample_many(args.n_eval, seed=100)
    t0 = time.perf_counter()
    last = [t0]

    def eval_prog(k):
        eval_prog.done += k
        if time.perf_counter() - last[0] > 60:
            last[0] = time.perf_counter()
            print(f"  evaluated {eval_prog.done}/{len(eval_archs)} subnets ({last[0] - t0:.0f} s)", flush=True)

    eval_prog.done = 0
    acc, items = _evaluate_cached(ls, eval_archs, work / (f"eval_items_e{ls.meta['epochs_done']}s{ls.meta['step_in_epoch']}"
                                                    f"_v{len(ls.val_idx)}.npz"), eval_prog)
    t_eval = time.perf_counter() - t0
    ext = evaluate_archs(ls, [S.largest(), S.smallest()])
    noise = accuracy_noise(items, n_boot=1000, n_splits=20, seed=0)
    split = (f"validation split of {args.data} ({len(ls.val_idx)} images"
             + (f", a seeded stratified subset of {len(va)}" if len(ls.val_idx) < len(va) else "") + ")")
    res["inherited"] = {"n": len(acc), "split": split, "min": float(acc.min()), "median": float(np.median(acc)),
                        "max": float(acc.max()), "mean": float(acc.mean()), "std": float(acc.std()),
                        "largest": float(ext[0]), "smallest": float(ext[1]), "seconds": t_eval,
                        "seconds_per_subnet": t_eval / len(acc), "val_images": int(len(ls.val_idx)),
                        "noise": noise.to_dict(per_arch=False),
                        "targets": {"reliability": 0.9, "range_over_median_se": 10.0,
                                    "meets_reliability": bool(noise.reliability >= 0.9),
                                    "meets_spread": bool(noise.range_over_median_se >= 10.0)},
                        "subnets": [{"arch": str(a), "top1": noise.accuracy_pct[i], "se": noise.se_pp[i],
                                     "ci95": [noise.ci95_low_pct[i], noise.ci95_high_pct[i]]}
                                    for i, a in enumerate(eval_archs)]}
    print(f"inherited top-1 over {len(acc)} subnets ({split}): min {acc.min():.1f}  median {np.median(acc):.1f}  "
          f"max {acc.max():.1f}  (largest {ext[0]:.1f}, smallest {ext[1]:.1f}; {t_eval / len(acc):.1f} s/subnet)\n"
          f"  median bootstrap SE {noise.median_se_pp:.2f} pp; range {noise.range_pp:.1f} pp = "
          f"{noise.range_over_median_se:.1f} SE (5-95%: {noise.iqr90_over_median_se:.1f} SE); split-half Spearman "
          f"{noise.split_half_spearman:.3f} -> reliability {noise.reliability:.3f}", flush=True)
    _plot(acc, np.array(noise.ci95_low_pct), np.array(noise.ci95_high_pct), out.with_suffix(".png"),
          f"{len(acc)} subnets, inherited weights, {split}; reliability {noise.reliability:.3f}")
    save_results(res, out)

    # 3. accuracy predictor -----------------------------------------------------------------------
    shipped = pair_archs = pair_acc = None
    pred_vals = None
    if args.n_pairs > 0:
        t0 = time.perf_counter()
        # the training pairs: the first n_pairs of seeded subnets that are not test subnets (seeded
        # draws are prefixes of longer ones; supernet_pairs reuses the measured ones)
        test_keys = {str(a) for a in eval_archs}
        for n_draw in (args.n_pairs, args.n_pairs + 20):
            pair_archs, pair_acc = supernet_pairs(work, n_draw, seed=1, space=S, loaded=ls)
            keep = [i for i, a in enumerate(pair_archs) if str(a) not in test_keys][:args.n_pairs]
            if len(keep) == args.n_pairs:
                break
        pair_archs = [pair_archs[i] for i in keep]
        pair_acc = pair_acc[keep]
        t_pairs = time.perf_counter() - t0
        shipped = fit_auto(pair_archs, pair_acc, S)
        pred_vals = shipped.predict(eval_archs)
        main_m = rank_metrics(pred_vals, acc)
        chosen = f"{shipped.model}/{shipped.features}"
        variants = {}
        for model in ("gbm", "mlp"):
            for feats in ("ordinal", "ordinal+cost", "onehot+cost"):
                p = AccuracyPredictor(S, model, feats).fit(pair_archs, pair_acc)
                variants[f"{model}/{feats}"] = rank_metrics(p.predict(eval_archs), acc)
        res["predictor"] = {"chosen": chosen, "cv_spearman": shipped.info.get("cv"), "n_train_pairs": len(pair_archs),
                            "n_test": len(acc), "pair_seconds": t_pairs, "heldout": main_m, "variants": variants}
        print(f"predictor ({chosen}, chosen by CV) on {len(acc)} held-out subnets, fitted on {len(pair_archs)}: "
              f"RMSE {main_m['rmse']:.2f}  Spearman {main_m['spearman']:.3f}  Kendall {main_m['kendall']:.3f}",
              flush=True)
        save_results(res, out)

    # 4. proxy and baselines -----------------------------------------------------------------------
    t0 = time.perf_counter()
    ests = {"naswot": NaswotEstimator(S, data=data).estimate(eval_archs)}
    t_nw = time.perf_counter() - t0
    ests["params"] = ParamsEstimator(S).estimate(eval_archs)
    ests["macs"] = MacsEstimator(S).estimate(eval_archs)
    if pred_vals is not None:
        ests["predictor"] = pred_vals
    res["ranking_vs_inherited"] = {k: {"spearman": float(stats.spearmanr(v, acc).statistic),
                                       "kendall": float(stats.kendalltau(v, acc).statistic)} for k, v in ests.items()}
    res["ranking_vs_inherited"]["naswot"]["seconds_per_arch"] = t_nw / len(acc)
    save_results(res, out)

    # ship ----------------------------------------------------------------------------------------
    if shipped is not None and args.ship:
        ship = Path(args.ship)
        ship.mkdir(parents=True, exist_ok=True)
        meta = ls.meta
        ck = checkpoint_id(work)
        m = res["predictor"]["heldout"]
        shipped.info.update({
            "target": f"top-1 % with inherited supernet weights on {split}",
            "source": f"supernet subnets ({args.data}, {meta['epochs_done']} epochs "
                      f"+ {meta['step_in_epoch']} steps, {meta['train_seconds']:.0f} s)",
            "heldout": m | {"n_train": len(pair_archs), "test": f"{len(acc)} other random subnets"},
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
        save_results(res, out)

    # 5. ground truth: subnets trained alone ----------------------------------------------------------
    if args.standalone > 0:
        picks = quantile_picks(ests["macs"], args.standalone)
        picks = [picks[i] for i in spread_order(len(picks))]  # a stopped run's trainings span the MACs
        rows = [{"arch": str(eval_archs[i]), "macs": float(ests["macs"][i]), "inherited": float(acc[i])}
                for i in picks]
        res["standalone"] = {"epochs": cfg.epochs, "optimizer_steps": cfg.epochs * steps_per_epoch,
                             "seeds": args.seeds, "planned": len(picks), "order": "seed-major, spread over MACs",
                             "subnets": rows,
                             "split": f"validation split of {args.data} ({len(ls.val_idx)} images)"}
        gt_ests = {k: np.asarray(v)[picks] for k, v in {"inherited": acc, **ests}.items()}

        def gt_save():  # the report of what has finished, after every training (a stopped run keeps it)
            res["standalone"].update(ground_truth_report(rows, gt_ests, seed=0))
            save_results(res, out)

        train_seed_major(rows, args.seeds, lambda a, seed: train_standalone(S.parse(a), ls.data, cfg, S,
                                                                            init_seed=1000 + seed),
                         save=gt_save, log=lambda m: print(m, flush=True))
        gt_save()

    res["total_seconds"] = time.perf_counter() - t_all
    save_results(res, out)
    torch.set_num_threads(threads_before)
    print(f"saved {out} and {out.with_suffix('.png')}; total {res['total_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
