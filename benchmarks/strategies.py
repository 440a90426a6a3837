"""Which search strategy?  Every strategy at equal predictor queries, and ProxylessNAS on a supernet.

1. ``queries``: evolution, random, NSGA-II and REINFORCE (categorical policy, MnasNet soft reward)
   on the bundled profile's default latency predictor and the bundled accuracy predictor, at 5
   budgets spread over the latency range, ``--seeds`` seeds each.  One run per (strategy,
   budget, seed) is stopped at the largest query count; the best feasible predicted accuracy
   after 1k / 5k / 20k queries is read from its history (the order of first evaluation), so each
   figure is what a run of that length finds.  Grid search is deterministic and its size fixed
   (one run per budget).  Saves ``strategies.json`` and ``strategies.png``.
2. ``gradient``: ProxylessNAS (``--strategy gradient``) on a small supernet trained on the
   offline digits (``--supernet DIR``; train one with ``hwnas supernet train --data
   builtin:digits --out DIR --epochs 4 --threads 1``), at the same 5 budgets, at the resolution
   and width of evolution's pick at that budget: wall time, the derived architecture's expected
   latency (final alpha), its LUT sum, its measured latency (canary-corrected, the project's
   Measurer; the median of ``--measure-repeats`` measurements, all kept, as the machine is
   shared), and its inherited-weight accuracy next to evolution's pick's (both on the
   supernet's validation split).  Peak memory against the number of choices per block comes
   from fresh processes (``--memory-probe``) on untrained supernets of spaces with 1-9 choices.
3. ``rl``: REINFORCE with ``--rl-reward`` (default hard) against evolution at 20k queries only.
4. ``remeasure``: the saved gradient rows' architectures measured again (a quieter moment).

    python benchmarks/strategies.py [--part queries|gradient|rl|remeasure|all] [--seeds 10] [--supernet DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LEVELS = (1000, 5000, 20000)
FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.45)
STRATS = ("evolution", "random", "nsga2", "rl")


class _Stop(Exception):
    pass


def _budgets(accuracy: str) -> tuple[list[float], float, float]:
    from hwnas.search import SearchConfig, run_search

    probe = run_search(SearchConfig(budgets_ms=(1e6,), accuracy=accuracy, population=10, generations=1))
    lo, hi = probe.min_latency_ms[0], probe.max_latency_ms[0]
    return [round(lo + f * (hi - lo), 2) for f in FRACTIONS], lo, hi


def _one_run(strategy: str, budget: float, seed: int, pred, acc, space, cap: int = max(LEVELS),
             rl_reward: str = "soft") -> dict:
    """A search stopped once it has made ``cap`` predictor queries; figures per level (None for a
    level beyond the cap)."""
    from hwnas.search import SearchConfig, make_searcher
    from hwnas.search.problem import Constraints, Evaluator
    from hwnas.search.strategies import SearchProblem

    ev = Evaluator(space, [pred], [pred.canary_reference_ms_], acc, Constraints((budget,)))
    _, _, argmin = ev.latency_range(seed=seed)
    crossed: dict[int, float] = {}
    t0 = time.perf_counter()

    class Capped(SearchProblem):
        def evaluate(self, G):
            if self.evaluator.n_queries >= cap:
                raise _Stop
            out = super().evaluate(G)
            for lv in LEVELS:
                if lv not in crossed and self.evaluator.n_queries >= lv:
                    crossed[lv] = time.perf_counter() - t0
            return out

    problem = Capped(ev, (budget,), seeds=space.archs_to_genomes(list(dict.fromkeys(argmin))))
    if strategy == "rl":
        from hwnas.search.rl import RLSearcher

        searcher = RLSearcher(n_samples=cap, max_steps=4 * cap // 50, reward=rl_reward, seed=seed)
    else:
        searcher = make_searcher(SearchConfig(budgets_ms=(budget,), strategy=strategy, population=100,
                                              generations=10**6, n_samples=10**9, seed=seed))
    try:
        searcher.run(problem)
    except _Stop:
        pass
    wall = time.perf_counter() - t0
    h = ev.history()
    feas = h.feasible((budget,))[:, 0]
    row = {"strategy": strategy, "budget_ms": budget, "seed": seed, "queries": int(ev.n_queries), "wall_s": wall,
           "cap": cap}
    for lv in LEVELS:
        if lv > cap:
            row[f"best_{lv}"] = row[f"wall_{lv}"] = None
            row[f"ran_{lv}"] = False
            continue
        row[f"ran_{lv}"] = True
        f = feas[:lv]
        row[f"best_{lv}"] = float(h.accuracy[:lv][f].max()) if f.any() else None
        row[f"wall_{lv}"] = crossed.get(lv)
    return row


def part_queries(args, res: dict) -> None:
    from hwnas.accuracy import make_estimator
    from hwnas.predictors import load_predictor
    from hwnas.search import SearchConfig, run_search

    budgets, lo, hi = _budgets(args.accuracy)
    res["latency_range_ms"] = [lo, hi]
    res["budgets_ms"] = budgets
    pred = load_predictor(None)
    space = pred.space_
    acc = make_estimator(args.accuracy, None, space)
    rows = []
    for b in budgets:
        for strat in STRATS:
            for seed in range(args.nsga2_seeds if strat == "nsga2" else args.seeds):
                rows.append(_one_run(strat, b, seed, pred, acc, space,
                                     args.nsga2_max_queries if strat == "nsga2" else max(LEVELS)))
            sel = [r for r in rows if r["budget_ms"] == b and r["strategy"] == strat]
            top = max(lv for lv in LEVELS if sel[0][f"ran_{lv}"])
            best = [r[f"best_{top}"] for r in sel if r[f"best_{top}"] is not None]
            print(f"budget {b:6.2f} ms {strat:9s}: best at {top} {np.mean(best) if best else float('nan'):.4f} "
                  f"(sd {np.std(best) if best else float('nan'):.4f}), feasible {len(best)}/{len(sel)}, "
                  f"{np.mean([r['wall_s'] for r in sel]):.1f} s/run", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        g = run_search(SearchConfig(budgets_ms=(b,), strategy="grid", accuracy=args.accuracy))
        rows.append({"strategy": "grid", "budget_ms": b, "seed": 0, "queries": g.n_queries,
                     "wall_s": time.perf_counter() - t0, "best_grid": g.best[0].accuracy_estimate})
    res["runs"] = rows
    summary = {}
    for strat in STRATS:
        for b in budgets:
            sel = [r for r in rows if r["budget_ms"] == b and r["strategy"] == strat]
            for lv in LEVELS:
                if not sel[0][f"ran_{lv}"]:
                    summary[f"{strat}|{b}|{lv}"] = {"mean": None, "sd": None, "min": None, "max": None,
                                                    "feasible_share": None, "wall_s_mean": None, "runs": 0}
                    continue
                v = [r[f"best_{lv}"] for r in sel if r[f"best_{lv}"] is not None]
                w = [r[f"wall_{lv}"] for r in sel if r[f"wall_{lv}"] is not None]
                summary[f"{strat}|{b}|{lv}"] = {"runs": len(sel),
                    "mean": float(np.mean(v)) if v else None, "sd": float(np.std(v)) if v else None,
                    "min": float(np.min(v)) if v else None, "max": float(np.max(v)) if v else None,
                    "feasible_share": len(v) / len(sel), "wall_s_mean": float(np.mean(w)) if w else None}
    res["summary"] = summary
    gap = []
    for b in budgets:
        e = summary[f"evolution|{b}|20000"]["mean"]
        r = summary[f"rl|{b}|20000"]["mean"]
        gap.append({"budget_ms": b, "rl_minus_evolution_pp": None if e is None or r is None else r - e})
    res["rl_vs_evolution_20k"] = gap
    _plot(res, Path(args.out).with_suffix(".png"))


def part_rl(args, res: dict) -> None:
    """RL (reward ``--rl-reward``) against evolution at 20k queries, ``--seeds`` seeds per budget:
    the per-seed bests and the gap's mean and spread (the evolution runs are the queries part's,
    same seeds, deterministic)."""
    from hwnas.accuracy import make_estimator
    from hwnas.predictors import load_predictor

    budgets = res.get("budgets_ms") or _budgets(args.accuracy)[0]
    pred = load_predictor(None)
    space = pred.space_
    acc = make_estimator(args.accuracy, None, space)
    rows = []
    for b in budgets:
        best = {s: [_one_run(s, b, seed, pred, acc, space, rl_reward=args.rl_reward)["best_20000"]
                    for seed in range(args.seeds)] for s in ("rl", "evolution")}
        gap = np.array(best["rl"]) - np.array(best["evolution"])
        rows.append({"budget_ms": b, "rl_reward": args.rl_reward, "rl_best_20k": best["rl"],
                     "evolution_best_20k": best["evolution"], "rl_mean": float(np.mean(best["rl"])),
                     "rl_sd": float(np.std(best["rl"])), "evolution_mean": float(np.mean(best["evolution"])),
                     "evolution_sd": float(np.std(best["evolution"])), "gap_mean_pp": float(gap.mean()),
                     "gap_sd_pp": float(gap.std()), "rl_feasible": sum(x is not None for x in best["rl"]),
                     "load_avg_1_5_15": list(os.getloadavg())})
        print(json.dumps({k: v for k, v in rows[-1].items() if not k.endswith("20k")}), file=sys.stderr, flush=True)
    res[f"rl_{args.rl_reward}_vs_evolution_20k"] = rows


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = res["budgets_ms"]
    fig, axes = plt.subplots(1, len(budgets), figsize=(4 * len(budgets), 3.6), sharex=True)
    for ax, b in zip(np.atleast_1d(axes), budgets):
        for strat in STRATS:
            m = [res["summary"][f"{strat}|{b}|{lv}"] for lv in LEVELS]
            y = np.array([np.nan if x["mean"] is None else x["mean"] for x in m])
            e = np.array([np.nan if x["sd"] is None else x["sd"] for x in m])
            ax.errorbar(LEVELS, y, yerr=e, marker="o", capsize=3, label=strat)
        grid = [r for r in res["runs"] if r["strategy"] == "grid" and r["budget_ms"] == b]
        if grid:
            ax.scatter([grid[0]["queries"]], [grid[0]["best_grid"]], marker="x", color="k", label="grid")
        ax.set_xscale("log")
        ax.set_title(f"budget {b:g} ms")
        ax.set_xlabel("predictor queries")
    np.atleast_1d(axes)[0].set_ylabel("best feasible predicted top-1 (%)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# gradient search


def _gradient_config(args):
    from hwnas.search.gradient import GradientConfig

    return GradientConfig(steps=args.gradient_steps, alpha_every=2, batch_size=32, alpha_lr=0.2)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class _PeakRss:
    """The peak resident memory (MB) while the ``with`` block runs, sampled every 2 ms."""

    def __enter__(self) -> "_PeakRss":
        import threading

        self.before_mb = self.peak_mb = _rss_mb()
        self._done = threading.Event()

        def sample():
            while not self._done.is_set():
                self.peak_mb = max(self.peak_mb, _rss_mb())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def memory_probe(n_kernels: int, n_expands: int, steps: int) -> dict:
    """Peak resident memory of a few ProxylessNAS steps (weight and two-path alpha steps) on an
    untrained supernet with n_kernels x n_expands choices per block (the largest kernel and
    expand always present, so the weights are the same size), on 64x64 synthetic images: the
    peak RSS during the run (sampled every 2 ms) above the RSS just before it."""
    import torch

    from hwnas.accuracy.data import ImageDataset
    from hwnas.accuracy.supernet import Batches, Supernet
    from hwnas.search.gradient import Choices, GradientConfig, LatencyTable, SupernetPaths, run_gradient
    from hwnas.space import N_STAGES, SearchSpace

    torch.set_num_threads(1)
    space = SearchSpace(resolutions=(224,), width_mults=(1.0,), kernels=(3, 5, 7)[-n_kernels:],
                        expands=(3, 4, 6)[-n_expands:])
    rng = np.random.default_rng(0)
    data = ImageDataset(rng.integers(0, 256, size=(160, 3, 64, 64), dtype=np.uint8), rng.integers(0, 10, 160),
                        [str(i) for i in range(10)], "synthetic")
    torch.manual_seed(0)
    net = Supernet(space, data.n_classes)
    ch = Choices(space, 224, 1.0)
    t = LatencyTable(1.0, np.full((N_STAGES, space.max_depth, ch.n), 0.1))
    b = Batches(data, np.arange(data.n), space)
    t0 = time.perf_counter()
    with _PeakRss() as mem:
        run_gradient(SupernetPaths(net), b, np.arange(data.n), data.labels, ch, [t], [100.0],
                     GradientConfig(steps=steps, alpha_every=2, batch_size=32, budget_mode=False), seed=0)
    return {"choices_per_block": n_kernels * n_expands, "params": int(sum(p.numel() for p in net.parameters())),
            "rss_before_mb": mem.before_mb, "peak_rss_mb": mem.peak_mb, "peak_above_before_mb": mem.peak_mb - mem.before_mb,
            "seconds": time.perf_counter() - t0}


def part_gradient(args, res: dict) -> None:
    from hwnas.accuracy import make_estimator
    from hwnas.search import SearchConfig, run_search, verify
    from hwnas.search.gradient import GradientSearcher
    from hwnas.space import Arch

    budgets = res.get("budgets_ms") or _budgets(args.accuracy)[0]
    res.setdefault("budgets_ms", budgets)
    from hwnas.predictors import load_predictor

    sn_acc = make_estimator("supernet", args.supernet, load_predictor(None).space_)
    rows = []
    for b in budgets:
        evo = run_search(SearchConfig(budgets_ms=(b,), accuracy=args.accuracy, generations=60, seed=0))
        pick = Arch.parse(evo.best[0].arch)
        gs = GradientSearcher(args.supernet, [evo.best[0].profile], pick.resolution, pick.width_mult,
                              _gradient_config(args), seed=0)
        t0 = time.perf_counter()
        with _PeakRss() as mem:
            r = run_search(SearchConfig(budgets_ms=(b,), strategy="gradient", accuracy="supernet",
                                        accuracy_dir=args.supernet), searcher=gs)
        wall = time.perf_counter() - t0
        measured = []
        for _ in range(args.measure_repeats):
            verify(r, 1)
            measured.append(r.best[0].measured_latency_ms)
        c = r.best[0]
        c.measured_latency_ms = float(np.median(measured))
        run = gs.runs[0]
        derived = str(run.arch) == c.arch
        evo_acc = float(sn_acc.estimate([pick])[0])
        row = {"budget_ms": b, "load_avg_1_5_15": list(os.getloadavg()), "peak_rss_mb": mem.peak_mb,
               "resolution": pick.resolution, "width_mult": pick.width_mult, "arch": c.arch,
               "is_final_derived": derived, "wall_s": wall, "search_s": run.seconds,
               "weight_steps": run.weight_steps, "alpha_steps": run.alpha_steps,
               "final_tau": run.tau, "expected_ms": run.expected_ms[0], "lut_ms": run.lut_ms[0] if derived else None,
               "lut_over_budget": run.lut_ms[0] / b if derived else None,
               "predicted_ms": c.predicted_latency_ms, "measured_ms": c.measured_latency_ms,
               "measured_each_ms": measured,
               "measured_le_1.05T": bool(c.measured_latency_ms <= 1.05 * b),
               "expected_vs_lut_pct": 100 * (run.expected_ms[0] / run.lut_ms[0] - 1) if derived else None,
               "lut_vs_measured_pct": 100 * (run.lut_ms[0] / c.measured_latency_ms - 1) if derived else None,
               "expected_vs_measured_pct": 100 * (run.expected_ms[0] / c.measured_latency_ms - 1),
               "gradient_accuracy": c.accuracy_estimate, "evolution_arch": str(pick), "evolution_accuracy": evo_acc,
               "evolution_predicted_accuracy": evo.best[0].accuracy_estimate, "lambda": run.lambdas[0]}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    res["gradient"] = rows
    mem = []
    for nk, ne in ((1, 1), (1, 2), (2, 2), (3, 3)):
        out = subprocess.run([sys.executable, __file__, "--memory-probe", f"{nk},{ne}", "--probe-steps",
                              str(args.probe_steps)], capture_output=True, text=True, check=True)
        mem.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(mem[-1], file=sys.stderr, flush=True)
    res["gradient_memory"] = mem


def part_remeasure(args, res: dict) -> None:
    """Measure the saved gradient rows' architectures again (``--measure-repeats`` each, median),
    e.g. once the machine is quieter; kept apart from the search-time figures."""
    from hwnas.builders.onnx_graph import build_onnx
    from hwnas.measure import Measurer
    from hwnas.predictors.saved import default_profile_dir
    from hwnas.profile import Profile
    from hwnas.space import Arch

    prof = Profile.load(default_profile_dir(), check_machine=False)
    rows = []
    with Measurer(prof.device) as m:
        for r in res["gradient"]:
            onnx = build_onnx(Arch.parse(r["arch"]), batch=prof.device.batch_size)
            each = [m.measure(onnx, r["arch"]).relative_to_canary * prof.canary_reference_ms
                    for _ in range(args.measure_repeats)]
            med = float(np.median(each))
            rows.append({"budget_ms": r["budget_ms"], "arch": r["arch"], "measured_each_ms": each, "measured_ms": med,
                         "load_avg_1_5_15": list(os.getloadavg()), "measured_le_1.05T": bool(med <= 1.05 * r["budget_ms"]),
                         "expected_vs_measured_pct": 100 * (r["expected_ms"] / med - 1),
                         "lut_vs_measured_pct": 100 * (r["lut_ms"] / med - 1) if r["lut_ms"] else None})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    res["gradient_remeasured"] = rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("queries", "gradient", "rl", "remeasure", "all"), default="all",
                    help="rl: RL (--rl-reward) against evolution at 20k queries only; remeasure: the saved "
                         "gradient rows' architectures again")
    ap.add_argument("--rl-reward", choices=("soft", "hard"), default="hard", help="the reward of --part rl")
    ap.add_argument("--accuracy", default="predictor")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--nsga2-seeds", type=int, default=3, help="NSGA-II is ~40x slower per query (pymoo)")
    ap.add_argument("--nsga2-max-queries", type=int, default=5000, help="NSGA-II stops here (pymoo slows down)")
    ap.add_argument("--supernet", default=None, help="trained supernet directory for the gradient part")
    ap.add_argument("--gradient-steps", type=int, default=120)
    ap.add_argument("--probe-steps", type=int, default=6)
    ap.add_argument("--measure-repeats", type=int, default=3, help="gradient: measurements per derived arch (median)")
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(HERE / "results" / "strategies.json"))
    args = ap.parse_args()
    if args.memory_probe:
        nk, ne = (int(x) for x in args.memory_probe.split(","))
        print(json.dumps(memory_probe(nk, ne, args.probe_steps)))
        return
    import torch

    torch.set_num_threads(1)  # a loaded 2-core machine: threads only contend
    out = Path(args.out)
    res: dict = json.loads(out.read_text()) if out.is_file() else {}
    res["accuracy"] = args.accuracy
    if args.part in ("queries", "all"):
        part_queries(args, res)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
    if args.part in ("rl", "remeasure"):
        (part_rl if args.part == "rl" else part_remeasure)(args, res)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
    if args.part in ("gradient", "all"):
        if args.supernet is None:
            sys.exit("give --supernet DIR (hwnas supernet train --data builtin:digits --out DIR --epochs 4 --threads 1)")
        part_gradient(args, res)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
