"""What the commands do with ``--space vit`` (the vit space of :mod:`hwnas.spaces.vit`): helpers the
commands call; the commands themselves stay where they are."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from rich.table import Table

from ..errors import InputError
from .common import _emit_json, _profile_dir, err, out, print_heldout

VIT_PROFILE_NAME = "cpu-1t-vit"


def space_option_help() -> str:
    return "search space: mbv3 (default, MobileNetV3 / OFA) | vit (vision transformer)"


def check_targets_space(targets: List[str], space: str) -> None:
    """A one-line InputError for an architecture string of the other space (ONNX paths pass)."""
    from ..spaces import check_space_name, guess_space
    from .common import _looks_like_onnx

    check_space_name(space)
    for t in targets:
        if space != "vit" and _looks_like_onnx(t):
            continue
        other = guess_space(t)
        if other != space:
            raise InputError(f"{t!r} is an architecture of the {other!r} search space, not {space!r}: "
                             f"pass --space {other}")


def profile_for(profile: Optional[Path], space: str) -> Path:
    """The profile to use: the given one (checked to be of ``space``) or the space's bundled one."""
    from ..paths import profiles_dir
    from ..spaces import check_profile_space

    if profile is None and space == "vit":
        profile = profiles_dir() / VIT_PROFILE_NAME
    d = _profile_dir(profile)
    check_profile_space(d, space)
    return d


def check_space_if_profile(d: Path, space: str) -> None:
    """When ``d`` holds a profile, that it is of ``space`` (other paths are left to the command)."""
    from ..spaces import check_profile_space

    if (Path(d) / "profile.sqlite").is_file():
        check_profile_space(d, space)


def vit_space_sample(n: int, seed: int) -> None:
    from ..spaces.vit import VitSpace

    for a in VitSpace(seed=seed).sample_many(n):
        sys.stdout.write(f"{a}\n")


def vit_space_info(archs: Optional[List[str]], json_out: bool) -> None:
    from ..spaces import parse_arch_in
    from ..spaces.vit import VitSpace, vit_cost

    sp = VitSpace()
    if not archs:
        d = sp.to_dict() | {"size": sp.size, "grammar": "vit_p<patch>_r<res>_e<embed>_h<heads>m<mlp>-h<heads>m<mlp>-..."}
        _emit_json(d) if json_out else out.print(d)
        return
    rows = []
    for s in archs:
        a = parse_arch_in(s, "vit", sp)
        c = vit_cost(a)
        rows.append({"arch": str(a), "macs": c.macs, "params": c.params, "tokens": a.tokens, "depth": a.depth})
    if json_out:
        _emit_json(rows)
    else:
        for r in rows:
            out.print(f"{r['arch']}  macs={r['macs'] / 1e6:.1f}M  params={r['params'] / 1e6:.2f}M  "
                      f"tokens={r['tokens']}  depth={r['depth']}")


def vit_export(arch: str, out_path: Path, batch: int) -> None:
    import onnx

    from ..spaces import parse_arch_in
    from ..spaces.vit_onnx import build_vit_onnx

    a = parse_arch_in(arch, "vit")
    model = build_vit_onnx(a, batch=batch)
    tmp = out_path.with_name(out_path.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out_path)
    err.print(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB, batch {batch})")


def vit_train(d: Path, names: Optional[List[str]]) -> None:
    from ..spaces.vit_predictors import VIT_PREDICTORS, train_vit, vit_predictors_dir

    for n in names or []:
        if n not in VIT_PREDICTORS:
            raise InputError(f"unknown vit-space predictor {n!r}; choose from {', '.join(VIT_PREDICTORS)}")
    index = train_vit(d, names, progress=lambda m: err.print(m))
    print_heldout(index["heldout"], "vit architectures", spearman=True)
    err.print(f"default: {index['default']}; saved to {vit_predictors_dir(d)}")


def vit_evaluate(d: Path, json_out: bool) -> None:
    from ..profile import Profile
    from ..spaces.vit_predictors import evaluate_vit

    h = evaluate_vit(Profile.load(d))
    if json_out:
        _emit_json({"profile": str(d), "space": "vit", "in_space": h})
        return
    t = Table("predictor", "MAPE %", "RMSPE %", "±5%", "±10%", "Spearman", "Kendall",
              title=f"vit space, {h['n_test']} held-out architectures ({h['n_train']} for fitting)")
    for name, m in h["predictors"].items():
        if "error" in m:
            t.add_row(name, m["error"], "", "", "", "", "")
            continue
        t.add_row(name, f"{m['mape_pct']:.2f}", f"{m['rmspe_pct']:.2f}", f"{100 * m['within_5pct']:.1f}%",
                  f"{100 * m['within_10pct']:.1f}%", f"{m.get('spearman', float('nan')):.4f}",
                  f"{m.get('kendall', float('nan')):.4f}")
    out.print(t)
    if h["noise_floor_median_rel"] is not None:
        out.print(f"noise floor: median per-round spread of the held-out measurements "
                  f"{100 * h['noise_floor_median_rel']:.1f}%", highlight=False)


def vit_predict(targets: List[str], d: Path, predictor: Optional[str], json_out: bool) -> None:
    from ..spaces import parse_arch_in
    from ..spaces.vit_predictors import load_vit_predictor

    from ..profile import warn_if_other_machine

    warn_if_other_machine(d)  # no calibration for the vit space yet: say when the profile is another machine's
    pred = load_vit_predictor(d, predictor)
    archs = [parse_arch_in(t, "vit", pred.space_) for t in targets]
    rel = pred.predict_relative(archs)
    rows = [{"target": str(a), "kind": "arch", "space": "vit", "latency_ms": float(r * pred.canary_reference_ms_),
             "relative_to_canary": float(r), "predictor": pred.name, "profile": str(d),
             "canary_reference_ms": pred.canary_reference_ms_} for a, r in zip(archs, rel)]
    if json_out:
        _emit_json(rows)
        return
    t = Table("target", "predicted ms", "rel. to canary", "predictor")
    for r in rows:
        t.add_row(r["target"], f"{r['latency_ms']:.3f}", f"{r['relative_to_canary']:.3f}", f"vit {r['predictor']}")
    out.print(t)


def vit_search(budgets: list[float], d: Path, strategy: str, predictor: Optional[str], population: int,
               generations: int, n_samples: Optional[int], seed: int, json_out: bool,
               accuracy_dir: Optional[Path] = None) -> None:
    from ..spaces.vit_predictors import load_vit_predictor
    from ..spaces.vit_search import ACCURACY_MEANING, search_vit

    from ..profile import warn_if_other_machine

    warn_if_other_machine(d)  # no calibration for the vit space yet: say when the profile is another machine's
    pred = load_vit_predictor(d, predictor)
    est = None
    if accuracy_dir is not None:
        from ..spaces.vit_supernet_train import VitSupernetEstimator

        est = VitSupernetEstimator(accuracy_dir)
        if est.loaded.net.space.to_dict() != pred.space_.to_dict():
            raise InputError(f"the vit supernet in {accuracy_dir} covers another vit space than the profile {d}")
    results = [search_vit(pred, b, strategy, population=population, generations=generations, n_samples=n_samples,
                          seed=seed, accuracy=None if est is None else est.estimate,
                          accuracy_meaning=None if est is None else est.meaning) for b in budgets]
    err.print(f"note: accuracy = {ACCURACY_MEANING if est is None else est.meaning}", soft_wrap=True, highlight=False)
    for r in results:
        err.print(f"{r.n_queries} vit candidates evaluated in {r.seconds:.2f} s (budget {r.budget_ms:g} ms, "
                  f"{r.strategy}, latency predictor vit {pred.name})", soft_wrap=True)
    rows = [c.__dict__ | {"profile": str(d), "space": "vit"} for r in results for c in r.top[:1]]
    if json_out:
        _emit_json(rows)
        return
    t = Table("profile", "arch", "pred. ms", "budget ms",
              "params (placeholder obj.)" if est is None else "supernet top-1 %", "MMACs")
    for r in rows:
        obj = f"{r['params'] / 1e6:.2f}M" if est is None else f"{r['accuracy_estimate']:.2f}"
        t.add_row(Path(r["profile"]).name, r["arch"], f"{r['predicted_latency_ms']:.3f}", f"{r['budget_ms']:g}",
                  obj, f"{r['macs'] / 1e6:.1f}")
    out.print(t)


def vit_compare(d: Path, json_out: bool) -> None:
    from ..profile import Profile
    from ..spaces.vit_search import compare_vit

    st = compare_vit(Profile.load(d))
    if json_out:
        _emit_json(st)
        return
    t = Table("proxy", "n", "Pearson", "Spearman", "Kendall", "misranked",
              title=f"vit space: MACs vs measured latency on {st['device']} ({st['profile']})")
    for proxy in ("macs", "params"):
        s = st[proxy]
        t.add_row(proxy, str(st["n"]), f"{s['pearson']:.3f}", f"{s['spearman']:.3f}", f"{s['kendall']:.3f}",
                  f"{100 * s['misranked_share']:.1f}%")
    h = st["heldout"]
    for name, m in h["predictors"].items():
        if "spearman" in m:
            t.add_row(f"{name} predictor (held-out half)", str(m["n"]), "", f"{m['spearman']:.3f}",
                      f"{m['kendall']:.3f}", f"MAPE {m['mape_pct']:.1f}%")
    out.print(t)
    lo, hi = st["latency_ms_range"]
    out.print(f"- measured latency spans {lo:.2f}-{hi:.2f} ms ({hi / lo:.1f}x) over {st['n']} architectures",
              highlight=False)
    for c in st["macs"]["counterexamples"][:3]:
        out.print(f"- {c['a']} has {100 * (1 - c['proxy_ratio']):.0f}% fewer MACs than {c['b']} yet is "
                  f"{100 * (c['latency_ratio'] - 1):.0f}% slower", highlight=False, soft_wrap=True)
