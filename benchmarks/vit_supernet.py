"""The vit super-transformer on a built-in proxy task: train it within a time budget at one torch
thread, then the inherited-weight accuracy of seeded random subnets, its bootstrap noise, and its
rank correlation with params / MACs.

Steps (``--data``, default ``builtin:digits``: the 1,797 8x8 digits upscaled to 32x32, 50/50
stratified train/validation split, see ``VitTrainConfig.resolved``):

1. ``train_vit_supernet`` for ``--epochs`` epochs (sandwich rule: largest, smallest, 2 random per
   step), stopping at ``--budget-min`` whatever happens (the JSON then says so);
2. top-1 % on the validation split of ``--n-eval`` subnets drawn with ``--seed`` (weights
   inherited; no fine-tuning), with :func:`hwnas.accuracy.noise.accuracy_noise`: per-subnet
   bootstrap standard errors, the accuracy spread against the median standard error, the
   split-half reliability of the ranking;
3. Spearman / Kendall of those accuracies vs the subnets' params and MACs (the space's analytic
   figures at ImageNet size, :func:`hwnas.spaces.vit.vit_cost`; their ranking equals the proxy's
   up to the stem).

4. with ``--standalone K`` (default 0: no ground truth), ``K`` of the evaluated subnets spread over
   params (:func:`hwnas.accuracy.groundtruth.quantile_picks`) trained from scratch alone, each its
   own :class:`~hwnas.spaces.vit_supernet.VitModel` with the super-transformer's data, split,
   shifts, optimizer, schedule and epochs (:func:`hwnas.spaces.vit_standalone.train_vit_standalone`),
   ``--seeds`` seeds each in seed-major order (:func:`~hwnas.accuracy.groundtruth.train_seed_major`),
   the JSON saved after each training; then Spearman / Kendall with bootstrap intervals of the
   inherited accuracy, params and MACs against the mean stand-alone accuracy, and the seed-to-seed
   spread (:func:`~hwnas.accuracy.groundtruth.ground_truth_report`).

``--reuse``: continue (or keep) the checkpoint in ``--work`` instead of retraining, keep the
subnets' inherited accuracies and the stand-alone results of ``--out`` when they were measured with
the same settings (a rerun after an interruption continues where it stopped).

    nice -n 19 python benchmarks/vit_supernet.py [--data builtin:digits] [--budget-min 11] [--epochs 6] [--batch-size 32]
        [--standalone K --seeds S] [--reuse] [--out PATH]

Writes ``benchmarks/results/vit_supernet.json`` (``--out``); the checkpoint stays in ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _write(path: Path, res: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, path)


def _previous(args, key: dict) -> dict:
    """``--out``'s earlier result when ``--reuse`` and it was measured with the same ``key`` settings."""
    if not (args.reuse and args.out.is_file()):
        return {}
    try:
        old = json.loads(args.out.read_text())
    except ValueError:
        return {}
    return old if old.get("settings") == key else {}


def _standalone(args, res: dict, ls, archs, acc, params, macs, old: dict) -> None:
    """Step 4: the stand-alone ground truth (saved after each training) and its report."""
    import numpy as np

    from hwnas.accuracy.groundtruth import ground_truth_report, quantile_picks, train_seed_major
    from hwnas.spaces.vit_standalone import train_vit_standalone
    from hwnas.spaces.vit_supernet_train import VitTrainConfig

    cfg = VitTrainConfig.from_dict(ls.meta["config"])
    picks = quantile_picks(params, args.standalone)
    done = {r["arch"]: r for r in old.get("standalone", {}).get("rows", [])}
    rows = [{"arch": str(archs[i]), "params": int(params[i]), "macs": int(macs[i]), "inherited_pct": float(acc[i]),
             "alone": list(done.get(str(archs[i]), {}).get("alone", [])),
             "seconds": list(done.get(str(archs[i]), {}).get("seconds", []))} for i in picks]
    block = res["standalone"] = {"k": args.standalone, "seeds": args.seeds, "epochs": cfg.epochs,
                                 "what": "top-1 % on the super-transformer's validation split of each subnet's own "
                                         "VitModel trained from scratch with the super-transformer's VitTrainConfig "
                                         "(same data, split, shifts, AdamW, warmup + cosine, epochs), one forward "
                                         "pass per step", "rows": rows}
    arch_of = {str(a): a for a in archs}

    def report() -> None:
        est = {"inherited": np.array([r["inherited_pct"] for r in rows]),
               "params": np.array([r["params"] for r in rows], float),
               "macs": np.array([r["macs"] for r in rows], float)}
        block["report"] = ground_truth_report(rows, est, gap=("inherited", "params"))
        block["trainings_seconds"] = round(sum(sum(r["seconds"]) for r in rows), 1)
        _write(args.out, res)

    def train(arch: str, seed: int) -> tuple[float, float]:
        r = train_vit_standalone(arch_of[arch], ls.data, cfg, ls.net.geometry, ls.net.n_classes, seed=seed, threads=1)
        return r.top1_pct, r.seconds

    train_seed_major(rows, args.seeds, train, save=report, log=lambda m: print(m, flush=True))
    report()
    rep = block["report"]
    if "vs_truth" in rep:
        print(f"stand-alone ({rep['n_archs']} subnets, {rep['seeds_in_truth']} seed(s)): "
              f"{min(rep['truth_pct']):.1f}-{max(rep['truth_pct']):.1f}%; " + "; ".join(
                  f"{k} Spearman {v['spearman']:.2f} [{v['spearman_bootstrap']['ci95_low']:.2f}, "
                  f"{v['spearman_bootstrap']['ci95_high']:.2f}] Kendall {v['kendall']:.2f}"
                  for k, v in rep["vs_truth"].items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="builtin:digits")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32, help="32: 28 steps per epoch on the 899 training digits")
    ap.add_argument("--budget-min", type=float, default=11.0)
    ap.add_argument("--n-eval", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1, help="seed of the evaluated subnets")
    ap.add_argument("--work", type=Path, default=Path("/tmp/hwnas_vit_supernet_bench"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "vit_supernet.json")
    ap.add_argument("--standalone", type=int, default=0, help="subnets to train alone (ground truth)")
    ap.add_argument("--seeds", type=int, default=1, help="stand-alone seeds per subnet")
    ap.add_argument("--reuse", action="store_true",
                    help="continue/keep the checkpoint in --work and the matching results of --out")
    args = ap.parse_args()

    import numpy as np
    import torch
    from scipy import stats

    from hwnas.accuracy.noise import accuracy_noise
    from hwnas.spaces.vit import VitSpace, vit_cost
    from hwnas.spaces.vit_supernet import evaluate_vit_archs, proxy_arch, subnet_params
    from hwnas.spaces.vit_supernet_train import VIT_CHECKPOINT, VitTrainConfig, load_vit_supernet, train_vit_supernet

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        key = {"data": args.data, "epochs": args.epochs, "batch_size": args.batch_size, "n_eval": args.n_eval,
               "seed": args.seed}
        old = _previous(args, key)
        res: dict = {"command": "nice -n 19 python benchmarks/vit_supernet.py " + " ".join(sys.argv[1:]),
                     "settings": key, "data": args.data, "torch_threads": 1, "uptime_start": _uptime(),
                     "ground_truth": "none: no subnet was trained stand-alone; these figures measure separation "
                                     "beyond validation noise and agreement with size, not correctness"
                     if args.standalone <= 0 else "stand-alone training of the subnets in 'standalone'"}
        reuse = args.reuse and (args.work / VIT_CHECKPOINT).is_file()
        if args.work.exists() and not reuse:
            shutil.rmtree(args.work)
        t0 = time.perf_counter()
        tr = train_vit_supernet(args.data, args.work, VitTrainConfig(epochs=args.epochs, batch_size=args.batch_size), space=VitSpace(),
                                time_budget_s=60 * args.budget_min, threads=1, resume=reuse)
        res["train"] = {"epochs_done": tr.epochs_done, "epochs": tr.epochs, "seconds": tr.seconds,
                        "stopped_by_budget": tr.stopped_by_budget, "budget_min": args.budget_min,
                        "history": tr.history, "reused_checkpoint": reuse}
        ls = load_vit_supernet(args.work)
        res["geometry"] = ls.net.geometry.to_dict()
        res["n_val_images"] = int(len(ls.data.y_val))
        archs = VitSpace().sample_many(args.n_eval, seed=args.seed)
        t1 = time.perf_counter()
        if old.get("train", {}).get("epochs_done") == tr.epochs_done and "items" in old:
            acc = np.array([r["top1_pct"] for r in old["subnets"]])
            items = np.array([[c == "1" for c in row] for row in old["items"]], dtype=bool)
            res["eval_seconds"] = old["eval_seconds"]
        else:
            acc, items = evaluate_vit_archs(ls.net, ls.data.x_val, ls.data.y_val, archs)
            res["eval_seconds"] = round(time.perf_counter() - t1, 1)
        res["items"] = ["".join("1" if b else "0" for b in row) for row in items]
        noise = accuracy_noise(items, seed=0)
        params = np.array([vit_cost(a).params for a in archs], float)
        macs = np.array([vit_cost(a).macs for a in archs], float)
        res["subnets"] = [{"arch": str(a), "top1_pct": float(v), "se_pp": float(se), "params": int(p), "macs": int(m),
                           "proxy_params": subnet_params(ls.net, a),
                           "proxy_arch": str(proxy_arch(a, ls.net.geometry))}
                          for a, v, se, p, m in zip(archs, acc, noise.se_pp, params, macs)]
        res["noise"] = noise.to_dict(per_arch=False)
        res["vs_size"] = {k: {"spearman": float(stats.spearmanr(acc, x).statistic),
                              "kendall": float(stats.kendalltau(acc, x).statistic)}
                          for k, x in (("params", params), ("macs", macs))}
        _write(args.out, res)
        if args.standalone > 0:
            _standalone(args, res, ls, archs, acc, params, macs, old)
        res["total_seconds"] = round(time.perf_counter() - t0, 1)
        res["uptime_end"] = _uptime()
        _write(args.out, res)
        n = res["noise"]
        print(f"trained {tr.epochs_done}/{tr.epochs} epochs in {tr.seconds:.0f} s; {args.n_eval} subnets: top-1 "
              f"{acc.min():.1f}-{acc.max():.1f}% (range {n['range_pp']:.1f} pp = {n['range_over_median_se']:.1f} x median "
              f"SE {n['median_se_pp']:.2f} pp; split-half reliability {n['reliability']:.2f}); Spearman vs params "
              f"{res['vs_size']['params']['spearman']:.2f}, vs MACs {res['vs_size']['macs']['spearman']:.2f}; wrote {args.out}")
    finally:
        torch.set_num_threads(before)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
