"""Weight inheritance by network morphisms: is a child fine-tuned from its parent's weights better
than the same child trained from scratch for the same number of steps?

The parent (the space's smallest architecture) is trained ``--parent-steps`` steps on the offline
digits (``builtin:digits``, half the images held out for validation).  ``--children`` of its
one-step morphs (:func:`hwnas.morph.children`, drawn without replacement, seeded) are each
trained ``--steps`` steps twice, with the same batches: from the inherited weights (function-
preserving transform of the trained parent) and from a fresh initialization.  Accuracy is top-1
on the validation split after batch-norm recalibration (as the stand-alone ground truth), with a
95% bootstrap interval over the validation images; the gain (inherited - scratch) per child with a
paired bootstrap interval over images, and over children the number where inheritance wins and
the mean gain with a bootstrap interval over children.  The inherited child before any step is
also scored: function preservation means it matches the parent.

    python benchmarks/morph.py [--children 12] [--steps 100] [--parent-steps 300] [--seed 0]

Prints a table and saves ``benchmarks/results/morph.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
N_BOOT = 2000


def _interval(values: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT) -> list[float]:
    """95% percentile bootstrap interval of the mean of ``values``."""
    values = np.asarray(values, dtype=float)
    idx = rng.integers(len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=12)
    ap.add_argument("--steps", type=int, default=100, help="training steps per child, inherited and scratch alike")
    ap.add_argument("--parent-steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "morph.json")
    args = ap.parse_args()

    import torch

    from hwnas.morph import apply_morph, children
    from hwnas.morph.train import ProxyTask
    from hwnas.space import DEFAULT_SPACE

    torch.set_num_threads(args.threads)  # a script: the whole process is ours
    space = DEFAULT_SPACE
    rng = np.random.default_rng(args.seed)
    boot = np.random.default_rng([args.seed, 1])
    t0 = time.perf_counter()
    task = ProxyTask.load("builtin:digits", space, split_seed=args.seed)
    parent = space.smallest()
    pmodel = task.scratch(parent, args.seed)
    task.train(pmodel, args.parent_steps, args.seed)
    pc = task.correct(pmodel, args.seed)
    print(f"parent {parent}: {100 * pc.mean():.1f}% after {args.parent_steps} steps "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    morphs = children(parent, rng, space)
    pick = sorted(rng.choice(len(morphs), size=min(args.children, len(morphs)), replace=False))
    rows = []
    for n, i in enumerate(pick):
        m = morphs[int(i)]
        t1 = time.perf_counter()
        child, inherited = apply_morph(pmodel, m, space)
        c0 = task.correct(inherited, args.seed)  # before any step: the parent's function
        train_seed = int(rng.integers(2**31 - 1))
        task.train(inherited, args.steps, train_seed)
        ci = task.correct(inherited, args.seed)
        scratch = task.scratch(child, int(rng.integers(2**31 - 1)))
        task.train(scratch, args.steps, train_seed)
        cs = task.correct(scratch, args.seed)
        gain = ci.astype(float) - cs.astype(float)
        row = {"morph": str(m), "arch": str(child), "inherited_at_step0_pct": 100 * float(c0.mean()),
               "inherited_pct": 100 * float(ci.mean()), "inherited_ci_pct": [100 * v for v in _interval(ci, boot)],
               "scratch_pct": 100 * float(cs.mean()), "scratch_ci_pct": [100 * v for v in _interval(cs, boot)],
               "gain_pct": 100 * float(gain.mean()), "gain_ci_pct": [100 * v for v in _interval(gain, boot)],
               "seconds": time.perf_counter() - t1}
        rows.append(row)
        print(f"{n + 1:2d}/{len(pick)} {row['morph']:<24} step0 {row['inherited_at_step0_pct']:5.1f}%  inherited "
              f"{row['inherited_pct']:5.1f}% [{row['inherited_ci_pct'][0]:.1f}, {row['inherited_ci_pct'][1]:.1f}]  "
              f"scratch {row['scratch_pct']:5.1f}% [{row['scratch_ci_pct'][0]:.1f}, {row['scratch_ci_pct'][1]:.1f}]  "
              f"gain {row['gain_pct']:+5.1f} [{row['gain_ci_pct'][0]:+.1f}, {row['gain_ci_pct'][1]:+.1f}]  "
              f"({row['seconds']:.0f} s)", flush=True)
        _save(args, task, rows, None, t0)  # after every child: an interrupted run keeps what it measured
    gains = np.array([r["gain_pct"] for r in rows])
    summary = {"children": len(rows), "inherited_wins": int((gains > 0).sum()), "ties": int((gains == 0).sum()),
               "mean_gain_pct": float(gains.mean()), "mean_gain_ci_pct": _interval(gains, boot),
               "parent": str(parent), "parent_pct": 100 * float(pc.mean()),
               "max_step0_drift_pct": float(max(abs(r["inherited_at_step0_pct"] - 100 * pc.mean()) for r in rows))}
    print(f"inherited beats scratch on {summary['inherited_wins']} of {len(rows)} children (ties {summary['ties']}); "
          f"mean gain {summary['mean_gain_pct']:+.2f} points, 95% interval [{summary['mean_gain_ci_pct'][0]:+.2f}, "
          f"{summary['mean_gain_ci_pct'][1]:+.2f}]")
    print(f"wrote {_save(args, task, rows, summary, t0)}")


def _save(args, task, rows: list[dict], summary: dict | None, t0: float) -> Path:
    out = {"settings": {"data": "builtin:digits", "children": args.children, "steps": args.steps,
                        "parent_steps": args.parent_steps, "seed": args.seed, "threads": args.threads,
                        "validation_images": int(len(task.val_idx)), "bootstrap_resamples": N_BOOT},
           "complete": summary is not None, "summary": summary, "rows": rows, "seconds": time.perf_counter() - t0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return args.out

if __name__ == "__main__":
    main()
