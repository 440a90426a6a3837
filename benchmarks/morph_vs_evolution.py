"""Morph search's pick against evolution's at the same latency budget, both trained alone (issue 19).

For each budget, hill climbing with network morphisms (``--strategy morph``: the smallest
architecture trained briefly, then grown by function-preserving transforms and fine-tuned, on
``builtin:digits``) and evolution (the bundled accuracy predictor, the bundled latency predictor)
each return an architecture within the budget; both are then trained alone from scratch with the
same schedule (:func:`hwnas.accuracy.supernet.train_standalone`: the supernet's data split,
augmentation and loop, ``--epochs`` epochs) from ``--seeds`` initialisations.  Reported per
budget: each pick's predicted latency, MACs, per-seed top-1 on the validation split, and the
difference (morph - evolution) per seed with a 95% bootstrap interval over the validation images
(paired: the same images); for morph also its settings and the climb (every trained child: round,
morphs, architecture, proxy accuracy, predicted latency, accepted).  Saved after every training; a
rerun skips trainings already saved.

    nice -n 19 python benchmarks/morph_vs_evolution.py [--budgets-ms 5.5 8.0] [--seeds 2] [--epochs 10]

On ``builtin:digits`` stand-alone accuracies differ by about their seed noise (see the hypernet
ground truth in the README): read the intervals before the point figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from morph import _interval
from results_io import save_results

HERE = Path(__file__).resolve().parent


def main() -> None:
    import torch

    from hwnas.accuracy.data import load_dataset
    from hwnas.accuracy.supernet import TrainConfig
    from hwnas.accuracy.supernet.standalone import train_standalone_correct
    from hwnas.search import SearchConfig, make_searcher, run_search
    from hwnas.space import DEFAULT_SPACE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets-ms", type=float, nargs="+", default=[5.5, 8.0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10, help="stand-alone epochs (digits: 14 steps each)")
    ap.add_argument("--seed", type=int, default=0, help="the searches' seed")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "morph_vs_evolution.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("builtin:digits")
    cfg = TrainConfig(epochs=args.epochs, seed=0).resolved(data)
    res = json.loads(args.out.read_text()) if args.out.is_file() else {}
    res.update({"command": "python benchmarks/morph_vs_evolution.py " + " ".join(
        [f"--budgets-ms {' '.join(f'{b:g}' for b in args.budgets_ms)}", f"--seeds {args.seeds}",
         f"--epochs {args.epochs}", f"--seed {args.seed}"]),
        "data": "builtin:digits", "train_config": cfg.to_dict(), "load_average_at_start": list(os.getloadavg())})
    budgets = res.setdefault("budgets", {})
    t0 = time.time()
    for b in args.budgets_ms:
        row = budgets.setdefault(f"{b:g}", {})
        for strategy in ("morph", "evolution"):
            if strategy not in row:
                t = time.time()
                cfg_s = SearchConfig(budgets_ms=(b,), strategy=strategy, seed=args.seed)
                searcher = make_searcher(cfg_s)
                best = run_search(cfg_s, searcher=searcher).best[0]
                row[strategy] = {"arch": best.arch, "predicted_ms": best.predicted_latency_ms,
                                 "accuracy_estimate": best.accuracy_estimate, "macs": best.macs,
                                 "search_s": round(time.time() - t, 1),
                                 "accuracy_pct": {}, "correct": {}}
                if strategy == "morph":  # the climb: its settings and every trained child
                    row[strategy]["settings"] = {"rule": searcher.rule, "rounds": searcher.rounds,
                                                 "children_per_round": searcher.children_per_round,
                                                 "morphs_per_child": searcher.morphs_per_child,
                                                 "finetune_steps": searcher.finetune_steps}
                    row[strategy]["climb"] = [asdict(st) for st in searcher.steps]
                print(f"budget {b:g} ms: {strategy} picked {best.arch} ({best.predicted_latency_ms:.3f} ms predicted)",
                      flush=True)
                save_results(res, args.out)
        for seed in range(args.seeds):
            for strategy in ("morph", "evolution"):
                pick = row[strategy]
                if str(seed) in pick["accuracy_pct"]:
                    continue
                arch = DEFAULT_SPACE.parse(pick["arch"])
                acc, correct, secs = train_standalone_correct(arch, data, cfg, DEFAULT_SPACE, init_seed=1000 + seed)
                pick["accuracy_pct"][str(seed)] = acc
                pick["correct"][str(seed)] = "".join("1" if c else "0" for c in correct)
                print(f"budget {b:g} ms, {strategy}, seed {seed}: {acc:.2f}% alone ({secs:.0f} s)", flush=True)
                save_results(res, args.out)
        diffs = {}
        for seed in range(args.seeds):
            m, e = (np.array([c == "1" for c in row[s]["correct"][str(seed)]]) for s in ("morph", "evolution"))
            # paired over the same images: the bootstrap interval of the per-image difference's mean
            diffs[str(seed)] = {"morph_minus_evolution_pts": float(100.0 * (m.mean() - e.mean())),
                                "interval_95": [100.0 * v for v in _interval(m.astype(float) - e,
                                                                             np.random.default_rng(seed))]}
        row["difference"] = diffs
        row["same_arch"] = row["morph"]["arch"] == row["evolution"]["arch"]
        save_results(res, args.out)
    res["seconds"] = round(time.time() - t0, 1)
    save_results(res, args.out)
    for b, row in budgets.items():
        print(f"budget {b} ms: morph {row['morph']['arch']} {row['morph']['accuracy_pct']}, evolution "
              f"{row['evolution']['arch']} {row['evolution']['accuracy_pct']}, difference {row['difference']}")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
