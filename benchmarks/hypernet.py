"""The graph hypernetwork as an accuracy estimator: does the accuracy of its generated weights rank
architectures like the supernet's inherited weights, MACs and params?

Steps (``--data``, default ``builtin:digits``: 1,797 images, 50/50 split; ``builtin:shapes`` is
the harder proxy task but a hypernetwork or supernet trained for minutes on one thread has not
been shown to leave chance level on it, see the README):

1. train a hypernetwork (:func:`hwnas.accuracy.hypernet.train_hypernet`) for as many steps as fit
   ``--hyper-min`` minutes (a 3-step probe times this machine; training also stops at the budget);
2. train a supernet (sandwich rule) for as many epochs as fit ``--supernet-min`` minutes
   (``--supernet-min 0``: none; ``--reuse`` takes both networks already in ``--work``);
3. evaluate ``--n-eval`` seeded random architectures on the validation split: hypernetwork
   (generated weights) and supernet (inherited weights), both after batch-norm recalibration;
   per architecture a bootstrap 95% interval, and for each estimator the split-half reliability
   of its ranking (:func:`hwnas.accuracy.noise.accuracy_noise`);
4. Spearman / Kendall of the hypernetwork's accuracies against the supernet's, MACs and params,
   with a paired bootstrap 95% interval over the validation images for the one against the
   supernet: agreements between estimators, not accuracies of the estimators;
5. ground truth (``--standalone K``, default 0: none): ``K`` of the evaluated architectures
   spread over their MACs by quantiles, each trained alone from scratch with ``--seeds S``
   weight initialisations (the supernet's split, schedule and number of optimizer steps,
   :func:`hwnas.accuracy.supernet.train_standalone`), seed 0 of all ``K`` first, then seed 1,
   ...; the JSON is saved after every training and ``--reuse`` / ``--resume`` skip those it
   already holds.  Reported (:func:`hwnas.accuracy.groundtruth.ground_truth_report`): the
   seed-to-seed spread, Spearman / Kendall of hypernetwork, supernet, NASWOT, params and MACs
   against the mean stand-alone accuracy with bootstrap 95% intervals over the architectures,
   and the supernet - hypernetwork Spearman gap with its paired interval.

Saves the JSON after every step (default ``results/hypernet.json``).

    nice -n 19 python benchmarks/hypernet.py [--data builtin:digits] [--hyper-min 12] [--supernet-min 6]
        [--hyper-steps N] [--supernet-epochs E] [--n-eval 30] [--reuse] [--standalone 20 --seeds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from results_io import save_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="builtin:digits")
    ap.add_argument("--work", default=str(ROOT / "out" / "bench-hypernet"), help="where the two networks are kept")
    ap.add_argument("--reuse", action="store_true", help="use the networks already in --work (no training)")
    ap.add_argument("--resume", action="store_true",
                    help="continue the (interrupted) training of the networks in --work, with their saved settings")
    ap.add_argument("--hyper-min", type=float, default=12.0,
                    help="hypernetwork training budget (minutes; with --hyper-steps a cap of 1.1x)")
    ap.add_argument("--hyper-steps", type=int, default=None, help="default: as many as the probe says fit the budget")
    ap.add_argument("--supernet-min", type=float, default=6.0,
                    help="supernet training budget (minutes; with --supernet-epochs a cap of 1.1x)")
    ap.add_argument("--supernet-epochs", type=int, default=None, help="default: as many as fit the budget")
    ap.add_argument("--archs-per-step", type=int, default=2)
    ap.add_argument("--n-eval", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--standalone", type=int, default=0, help="evaluated architectures also trained alone")
    ap.add_argument("--seeds", type=int, default=2, help="initialisations per stand-alone architecture")
    ap.add_argument("--out", default=str(HERE / "results" / "hypernet.json"))
    return ap.parse_args()


def _probe_hyper(space, data, cfg, steps: int = 3) -> float:
    """Median seconds of a hypernetwork step (:func:`hyper_step`) on a throwaway network."""
    import torch

    from hwnas.accuracy.hypernet import HyperNet, hyper_step
    from hwnas.accuracy.hypernet.training import make_optimizer, step_archs
    from hwnas.accuracy.supernet import Batches

    torch.manual_seed(123)
    net = HyperNet(space, data.n_classes, cfg.hidden).train()
    opt = make_optimizer(net, cfg)
    tr, _ = data.split(0.5, 0)
    b = Batches(data, tr, space)
    rng = np.random.default_rng(123)
    times = []
    for i in range(steps + 1):
        idx = tr[rng.permutation(len(tr))[:cfg.batch_size]]
        x, y = b.tensor(idx), torch.from_numpy(data.labels[idx])
        t0 = time.perf_counter()
        hyper_step(net, opt, b, x, y, step_archs(space, rng, cfg.archs_per_step))
        if i:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _rank(a, b) -> dict:
    from scipy import stats

    return {"spearman": float(stats.spearmanr(a, b).statistic), "kendall": float(stats.kendalltau(a, b).statistic)}


def _paired_boot_spearman(items_a: np.ndarray, items_b: np.ndarray, n_boot: int, seed: int) -> dict:
    """Spearman of two estimators' accuracies over resamples of the validation images (the same
    resample for both): its 95% percentile interval."""
    from scipy import stats

    rng = np.random.default_rng([seed, 7])
    n = items_a.shape[1]
    a, b = items_a.astype(np.float32), items_b.astype(np.float32)
    rs = []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float32)
        ra, rb = a @ w, b @ w
        if np.ptp(ra) > 0 and np.ptp(rb) > 0:
            rs.append(stats.spearmanr(ra, rb).statistic)
    lo, hi = np.percentile(rs, [2.5, 97.5])
    return {"ci95_low": float(lo), "ci95_high": float(hi), "n_boot": len(rs)}


def _ground_truth(args, res: dict, prev: dict, out: Path, data, space, archs, sdir: Path, ests: dict) -> None:
    """Step 5: ``args.standalone`` of ``archs`` trained alone (seed-major, the JSON saved after
    each; those ``prev`` holds for the same schedule are kept), and every estimator in ``ests``
    (name -> one value per arch of ``archs``) against their mean stand-alone accuracy."""
    from hwnas.accuracy.groundtruth import ground_truth_report, quantile_picks, train_seed_major
    from hwnas.accuracy.supernet import TrainConfig, _epoch_batches, read_meta, train_standalone

    cfg = TrainConfig.from_dict(read_meta(sdir)["config"]).resolved(data)
    tr, va = data.split(cfg.val_fraction, cfg.seed)
    steps = cfg.epochs * len(_epoch_batches(len(tr), cfg, 0))
    picks = quantile_picks(ests["macs"], args.standalone)
    old = prev.get("standalone", {})
    kept = {r["arch"]: r for r in old.get("subnets", [])} if (
        old.get("optimizer_steps") == steps and old.get("config") == cfg.to_dict()) else {}
    rows = [{"arch": str(archs[i]), "index": i, "estimates": {k: float(v[i]) for k, v in ests.items()},
             **{f: kept.get(str(archs[i]), {}).get(f, [])[:args.seeds] for f in ("alone", "seconds", "cpu_seconds")}}
            for i in picks]
    block = {"what": "stand-alone top-1 % (index = seed; init seed 1000 + seed), trained from scratch",
             "split": f"validation split of {args.data} ({len(va)} images)", "epochs": cfg.epochs,
             "optimizer_steps": steps, "config": cfg.to_dict(), "seeds": args.seeds, "order": "seed-major",
             "planned_archs": len(picks), "planned_trainings": len(picks) * args.seeds,
             "kept_from_previous_run": sum(len(r["alone"]) for r in rows), "subnets": rows}
    res["standalone"] = block
    by_arch = {r["arch"]: r for r in rows}

    def train(arch: str, seed: int) -> tuple[float, float]:
        c0 = time.process_time()
        acc, secs = train_standalone(space.parse(arch), data, cfg, space, init_seed=1000 + seed)
        by_arch[arch]["cpu_seconds"].append(time.process_time() - c0)
        return acc, secs

    def save() -> None:
        block.pop("note", None)  # "too few to rank" of an earlier save
        block.update(ground_truth_report(rows, {k: np.asarray(v)[picks] for k, v in ests.items()}, args.n_boot,
                                         args.seed, gap=("supernet", "hypernet")))
        save_results(res, out)

    print(f"stand-alone: {len(picks)} archs x {args.seeds} seeds, {steps} optimizer steps each "
          f"({block['kept_from_previous_run']} kept)", flush=True)
    train_seed_major(rows, args.seeds, train, save, log=lambda m: print(m, flush=True))
    save()
    for k, v in block.get("vs_truth", {}).items():
        b = v["spearman_bootstrap"]
        print(f"{k} vs stand-alone: Spearman {v['spearman']:.3f} (95% {b['ci95_low']:.3f} to {b['ci95_high']:.3f}), "
              f"Kendall {v['kendall']:.3f}")
    if "gap" in block:
        g = block["gap"]
        print(f"{g['what']}: {g['spearman_gap']:.3f} (paired 95% {g['paired_bootstrap']['ci95_low']:.3f} to "
              f"{g['paired_bootstrap']['ci95_high']:.3f})")


def main() -> None:
    args = _args()
    import torch

    torch.set_num_threads(args.threads)
    from hwnas.accuracy import make_estimator
    from hwnas.accuracy.data import load_dataset
    from hwnas.accuracy.hypernet import HyperTrainConfig, evaluate_generated, load_hypernet, train_hypernet
    from hwnas.accuracy.noise import accuracy_noise
    from hwnas.accuracy.supernet import TrainConfig, evaluate_archs, load_supernet, train_supernet
    from hwnas.space import DEFAULT_SPACE

    space = DEFAULT_SPACE
    work = Path(args.work)
    hdir, sdir = work / "hypernet", work / "supernet"
    out = Path(args.out)
    t_all = time.perf_counter()
    load = {"start": list(os.getloadavg())}
    data = load_dataset(args.data)
    opts = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                    if k not in ("out", "work", "reuse", "resume") and v is not None)
    res: dict = {"data": args.data, "n_images": data.n, "threads": args.threads, "seed": args.seed,
                 "command": f"python benchmarks/hypernet.py {opts}" + (" --reuse" if args.reuse else "")
                 + (" --resume" if args.resume else "")}
    prev = json.loads(out.read_text()) if (args.reuse or args.resume) and out.is_file() else {}
    if args.reuse and prev:  # the run that trained the reused networks
        res["training_run"] = prev.get("training_run") or {
            k: prev[k] for k in ("command", "hypernet_training", "supernet_training", "total_seconds") if k in prev}
    resumed = args.resume and (hdir / "hypernet.json").is_file()
    if resumed:
        from hwnas.accuracy.hypernet import read_meta

        old = json.loads(out.read_text()) if out.is_file() else {}
        res.update({k: v for k, v in old.items() if k in ("hypernet_training", "supernet_training")})
        res["resumed"] = True
        cfg = HyperTrainConfig.from_dict(read_meta(hdir)["config"])
        step_s = float(res.get("hypernet_training", {}).get("probe_step_s", float("nan")))
        print(f"hypernet: resuming {hdir} at step {read_meta(hdir)['steps_done']} of {cfg.steps}", flush=True)
    if not args.reuse:
        if not resumed:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True, exist_ok=True)
            cfg = HyperTrainConfig(archs_per_step=args.archs_per_step, seed=args.seed).resolved(data)
            step_s = _probe_hyper(space, data, cfg)
            steps = args.hyper_steps or max(10, int(0.95 * args.hyper_min * 60 / step_s))
            cfg = HyperTrainConfig.from_dict({**cfg.to_dict(), "steps": steps})
            print(f"hypernet: probe {step_s:.2f} s/step -> {steps} steps (budget {args.hyper_min} min)", flush=True)
        cpu0 = time.process_time()
        t0 = time.perf_counter()

        def prog(done, total, info):
            if done % 50 == 0 or done == total:
                print(f"  hypernet step {done}/{total} loss {info['loss']:.3f} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)

        r = train_hypernet(data, hdir, cfg, space, resume=resumed, time_budget_s=args.hyper_min * 60 * 1.1,
                           progress=prog)
        cpu_before = float(res.get("hypernet_training", {}).get("cpu_seconds", 0.0)) if resumed else 0.0
        res["hypernet_training"] = {"steps_done": r.steps_done, "steps": r.steps, "seconds": r.seconds,
                                    "cpu_seconds": cpu_before + time.process_time() - cpu0,
                                    "stopped_early": r.stopped_early, "probe_step_s": step_s, "config": cfg.to_dict(),
                                    "history": r.history}
        load["after_hypernet_training"] = list(os.getloadavg())
        res["load_average_1_5_15_min"] = load
        save_results(res, out)
        s_resume = resumed and (sdir / "supernet.json").is_file()
        if args.supernet_min > 0 and s_resume:
            from hwnas.accuracy.supernet import read_meta as supernet_meta

            scfg = TrainConfig.from_dict(supernet_meta(sdir)["config"])
            print(f"supernet: resuming {sdir} at epoch {supernet_meta(sdir)['epochs_done']} of {scfg.epochs}")
        elif args.supernet_min > 0:
            scfg = TrainConfig(epochs=1, seed=args.seed).resolved(data)
            per_epoch = len(data.split(scfg.val_fraction, scfg.seed)[0]) // scfg.batch_size
            # a sandwich step runs 2 + n_random subnets: about (2 + n_random) / archs_per_step hypernet steps
            sand_s = step_s * (2 + scfg.n_random) / args.archs_per_step
            epochs = args.supernet_epochs or max(1, int(0.95 * args.supernet_min * 60 / (sand_s * per_epoch)))
            scfg = TrainConfig.from_dict({**scfg.to_dict(), "epochs": epochs})
            print(f"supernet: ~{sand_s:.2f} s/step x {per_epoch} steps/epoch -> {epochs} epochs", flush=True)
        if args.supernet_min > 0:
            cpu0 = time.process_time()
            sr = train_supernet(data, sdir, scfg, space, resume=s_resume, time_budget_s=args.supernet_min * 60 * 1.1)
            cpu_before = float(res.get("supernet_training", {}).get("cpu_seconds", 0.0)) if s_resume else 0.0
            res["supernet_training"] = {"epochs_done": sr.epochs_done, "epochs": sr.epochs, "seconds": sr.seconds,
                                        "cpu_seconds": cpu_before + time.process_time() - cpu0,
                                        "stopped_by_budget": sr.stopped_by_budget}
            print(f"  supernet {sr.epochs_done}/{sr.epochs} epochs in {sr.seconds:.0f} s", flush=True)
            load["after_supernet_training"] = list(os.getloadavg())
            save_results(res, out)

    if args.reuse:  # what the saved networks' metadata says about their training
        from hwnas.accuracy.hypernet import read_meta

        m = read_meta(hdir)
        res["hypernet_training"] = {"steps_done": m["steps_done"], "steps": m["config"]["steps"],
                                    "seconds": m["train_seconds"], "config": m["config"], "history": m["history"],
                                    "from": "metadata (--reuse)"}
        if (sdir / "supernet.json").is_file():
            from hwnas.accuracy.supernet import read_meta as supernet_meta

            m = supernet_meta(sdir)
            res["supernet_training"] = {"epochs_done": m["epochs_done"], "epochs": m["config"]["epochs"],
                                        "seconds": m["train_seconds"], "from": "metadata (--reuse)"}
    archs = space.sample_many(args.n_eval, seed=1000 + args.seed)
    res["archs"] = [str(a) for a in archs]
    lh = load_hypernet(hdir, space, data)
    t0 = time.perf_counter()
    h_acc, h_items = evaluate_generated(lh, archs, return_items=True)
    h_noise = accuracy_noise(h_items, n_boot=args.n_boot, seed=args.seed)
    res["hypernet"] = {"eval_seconds": time.perf_counter() - t0, "n_val": int(h_items.shape[1]),
                       **h_noise.to_dict()}
    print(f"hypernet accuracy over {len(archs)} archs: min {h_acc.min():.1f} median {np.median(h_acc):.1f} max "
          f"{h_acc.max():.1f} %; median SE {h_noise.median_se_pp:.2f} pp; split-half reliability "
          f"{h_noise.reliability:.3f}", flush=True)
    macs = make_estimator("macs").estimate(archs)
    params = make_estimator("params").estimate(archs)
    rank = {"macs": _rank(h_acc, macs), "params": _rank(h_acc, params)}
    s_acc = None
    if (sdir / "supernet.pt").is_file():
        ls = load_supernet(sdir, space, data)
        t0 = time.perf_counter()
        s_acc, s_items = evaluate_archs(ls, archs, return_items=True)
        s_noise = accuracy_noise(s_items, n_boot=args.n_boot, seed=args.seed)
        res["supernet"] = {"eval_seconds": time.perf_counter() - t0, **s_noise.to_dict()}
        print(f"supernet accuracy: min {s_acc.min():.1f} median {np.median(s_acc):.1f} max {s_acc.max():.1f} %; "
              f"median SE {s_noise.median_se_pp:.2f} pp; split-half reliability {s_noise.reliability:.3f}", flush=True)
        rank["supernet"] = {**_rank(h_acc, s_acc), "spearman_paired_bootstrap": _paired_boot_spearman(
            h_items, s_items, args.n_boot, args.seed)}
        res["supernet_vs_macs"] = _rank(s_acc, macs)
        res["supernet_vs_params"] = _rank(s_acc, params)
    res["hypernet_vs"] = rank
    res["ground_truth"] = ("none: no stand-alone trained accuracies; these are agreements between estimators"
                           if args.standalone <= 0 else "'standalone' (step 5)")
    res["total_seconds"] = time.perf_counter() - t_all
    load["end"] = list(os.getloadavg())
    res["load_average_1_5_15_min"] = load
    save_results(res, out)
    for k, v in rank.items():
        extra = ""
        if "spearman_paired_bootstrap" in v:
            b = v["spearman_paired_bootstrap"]
            extra = f" (bootstrap 95% {b['ci95_low']:.3f} to {b['ci95_high']:.3f})"
        print(f"hypernet vs {k}: Spearman {v['spearman']:.3f}{extra}, Kendall {v['kendall']:.3f}")
    if args.standalone > 0 and s_acc is not None:
        from hwnas.accuracy.estimators import NaswotEstimator

        t0 = time.perf_counter()
        naswot = NaswotEstimator(space, data=data).estimate(archs)
        res["naswot"] = {"seconds": time.perf_counter() - t0, "score": naswot.tolist()}
        _ground_truth(args, res, prev, out, data, space, archs, sdir,
                      {"hypernet": h_acc, "supernet": s_acc, "naswot": naswot, "params": params, "macs": macs})
        res["total_seconds"] = time.perf_counter() - t_all
        load["end"] = list(os.getloadavg())
        save_results(res, out)
    elif args.standalone > 0:
        print("no supernet in --work: no stand-alone ground truth (it takes the supernet's schedule)")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
