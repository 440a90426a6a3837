"""How far morph search's climb reaches towards a latency budget, without training (issue 19).

A dry run of ``--strategy morph`` (the bundled latency predictor) in which no model is trained and
each child's "accuracy" is a seeded random draw around 97% (what a saturated proxy such as the
digits looks like to the climb): the children and their morphs are drawn exactly as in a real
search (real function-preserving morphs of real, untrained models), so the predicted latency of
the final incumbent shows whether ``--morph-rounds`` x ``--morphs-per-child`` can cover the
distance from the smallest architecture to the budget.  Per setting, budget and seed: the final
pick's predicted latency and the incumbent's latency after each round.

    python benchmarks/morph_reach.py [--budgets-ms 5.5 8] [--seeds 3] [--settings 8x5 8x8 8x10]

Each setting is ROUNDSxMORPHS_PER_CHILD (4 children per round, the default).  Prints a table and
saves ``benchmarks/results/morph_reach.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from results_io import save_results

HERE = Path(__file__).resolve().parent


class RandomReadout:
    """Stands in for the proxy task: untrained models, accuracy drawn from N(97, 0.4) (seeded)."""

    def __init__(self, space, seed: int) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)

    def adopt(self, space) -> None:
        self.space = space

    def scratch(self, arch, seed: int):
        from hwnas.builders.torch_model import build_torch

        return build_torch(arch, 10)

    def train(self, model, steps: int, seed: int) -> None:
        pass

    def accuracy_pct(self, model, seed: int = 0) -> float:
        return float(97.0 + self.rng.normal(0.0, 0.4))


def main() -> None:
    import torch

    from hwnas.search import SearchConfig, make_searcher, run_search

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets-ms", type=float, nargs="+", default=[5.5, 8.0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--settings", nargs="+", default=["8x5", "8x8", "8x10"], help="ROUNDSxMORPHS_PER_CHILD")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "morph_reach.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    rows = []
    for setting in args.settings:
        rounds, per_child = (int(v) for v in setting.split("x"))
        for b in args.budgets_ms:
            for seed in range(args.seeds):
                cfg = SearchConfig(budgets_ms=(b,), strategy="morph", seed=seed, morph_rounds=rounds,
                                   morphs_per_child=per_child)
                s = make_searcher(cfg)
                s.task = RandomReadout(None, seed)
                s.prepare = s.task.adopt  # the search's space, instead of loading the proxy data
                best = run_search(cfg, searcher=s).best[0]
                path = [round(st.latency_ms[0], 3) for st in s.steps if st.accepted]
                rows.append({"rounds": rounds, "morphs_per_child": per_child, "budget_ms": b, "seed": seed,
                             "final_ms": best.predicted_latency_ms, "arch": best.arch, "incumbent_ms": path})
                print(f"{setting:>5} budget {b:g} ms seed {seed}: {best.predicted_latency_ms:.2f} ms after "
                      f"{len(path) - 1} rounds ({' -> '.join(f'{v:.2f}' for v in path)})", flush=True)
    save_results({"command": "python benchmarks/morph_reach.py --budgets-ms "
                  + " ".join(f"{b:g}" for b in args.budgets_ms) + f" --seeds {args.seeds} --settings "
                  + " ".join(args.settings), "rows": rows, "seconds": round(time.time() - t0, 1)}, args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
