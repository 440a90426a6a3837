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

There is **no stand-alone ground truth** here (no subnet is trained from scratch): these figures
say how much the supernet separates subnets beyond noise, not whether its ranking is right.

    nice -n 19 python benchmarks/vit_supernet.py [--data builtin:digits] [--budget-min 11] [--epochs 6] [--batch-size 32]

Writes ``benchmarks/results/vit_supernet.json``; the checkpoint stays in ``--work``.
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
    args = ap.parse_args()

    import numpy as np
    import torch
    from scipy import stats

    from hwnas.accuracy.noise import accuracy_noise
    from hwnas.spaces.vit import VitSpace, vit_cost
    from hwnas.spaces.vit_supernet import evaluate_vit_archs, proxy_arch, subnet_params
    from hwnas.spaces.vit_supernet_train import VitTrainConfig, load_vit_supernet, train_vit_supernet

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res: dict = {"command": "nice -n 19 python benchmarks/vit_supernet.py " + " ".join(sys.argv[1:]),
                     "data": args.data, "torch_threads": 1, "uptime_start": _uptime(),
                     "ground_truth": "none: no subnet was trained stand-alone; these figures measure separation "
                                     "beyond validation noise and agreement with size, not correctness"}
        if args.work.exists():
            shutil.rmtree(args.work)
        t0 = time.perf_counter()
        tr = train_vit_supernet(args.data, args.work, VitTrainConfig(epochs=args.epochs, batch_size=args.batch_size), space=VitSpace(),
                                time_budget_s=60 * args.budget_min, threads=1)
        res["train"] = {"epochs_done": tr.epochs_done, "epochs": tr.epochs, "seconds": tr.seconds,
                        "stopped_by_budget": tr.stopped_by_budget, "budget_min": args.budget_min,
                        "history": tr.history}
        ls = load_vit_supernet(args.work)
        res["geometry"] = ls.net.geometry.to_dict()
        res["n_val_images"] = int(len(ls.data.y_val))
        archs = VitSpace().sample_many(args.n_eval, seed=args.seed)
        t1 = time.perf_counter()
        acc, items = evaluate_vit_archs(ls.net, ls.data.x_val, ls.data.y_val, archs)
        res["eval_seconds"] = round(time.perf_counter() - t1, 1)
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
        res["total_seconds"] = round(time.perf_counter() - t0, 1)
        res["uptime_end"] = _uptime()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
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
