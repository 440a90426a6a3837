"""The accuracy predictor (:mod:`hwnas.accuracy.predictor`): fit, save and load with validation,
the cross-validated choice, vectorized cost features, the pairs CSV, the bundled predictor, and
the search's genome path."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.accuracy import make_estimator
from hwnas.accuracy.predictor import AccuracyPredictor, fit_predictor, read_pairs_csv
from hwnas.cost import arch_cost
from hwnas.errors import InputError
from hwnas.space import DEFAULT_SPACE, SearchSpace


@pytest.mark.parametrize("model", ["gbm", "mlp"])
def test_predictor_fit_save_load_roundtrip(tmp_path, model):
    archs = DEFAULT_SPACE.sample_many(80, seed=0)
    y = np.array([np.log10(arch_cost(a).macs) * 10 + a.width_mult for a in archs])
    p, m = fit_predictor(archs, y, model=model, features="ordinal+cost")
    assert m["n"] + m["n_train"] == 80 and m["spearman"] > 0.8
    path = p.save(tmp_path / "predictor.json")
    q = AccuracyPredictor.load(path)
    new = DEFAULT_SPACE.sample_many(20, seed=1)
    assert np.array_equal(p.predict(new), q.predict(new))
    assert q.info["heldout"]["n"] == m["n"]
    est = make_estimator("predictor", tmp_path)
    assert np.array_equal(est.estimate(new), p.predict(new))
    assert np.allclose(q.predict_encoded(DEFAULT_SPACE.encode(new, "ordinal")), p.predict(new))
    path.write_text("{\"format\": \"hwnas-accuracy-predictor\", \"version\": 1}")
    with pytest.raises(InputError, match="corrupt"):
        AccuracyPredictor.load(path)


def _tamper(d: dict, model: str) -> list:
    """Ways to spoil a saved predictor dict's regressor (each must give a one-line error)."""
    import copy

    def edit(fn):
        e = copy.deepcopy(d)
        fn(e["regressor"])
        return e

    out = [edit(lambda r: r.update(n_features=r["n_features"] + 1)),
           edit(lambda r: r.update(kind="mlp" if model == "gbm" else "gbm")),
           edit(lambda r: r.update(version=7)),
           {**copy.deepcopy(d), "version": "2"}, {**copy.deepcopy(d), "version": 99},
           {**copy.deepcopy(d), "model": "svm"}]
    if model == "gbm":
        out.append(edit(lambda r: r["trees"][0]["value"].__setitem__(0, "NaN")))
        out.append(edit(lambda r: r["trees"][1].update(children_left=r["trees"][1]["children_left"][:-1])))
    else:
        out.append(edit(lambda r: r["coefs"][0][0].__setitem__(0, None)))
        out.append(edit(lambda r: r["x_scale"].__setitem__(0, 0.0)))
        out.append(edit(lambda r: r.update(activation="tanh")))
    return out


@pytest.mark.parametrize("model", ["gbm", "mlp"])
def test_predictor_file_is_validated_and_old_mlp_files_load(tmp_path, model):
    """Both models go through the validated model path: a tampered file gets a one-line error; a
    version-1 file (the mlp as a bare dict) still loads and predicts the same."""
    import json

    archs = DEFAULT_SPACE.sample_many(40, seed=0)
    y = np.array([np.log10(arch_cost(a).macs) * 10 + a.width_mult for a in archs])
    p = AccuracyPredictor(DEFAULT_SPACE, model=model, features="ordinal+cost").fit(archs, y)
    d = p.to_dict()
    assert d["version"] == 2 and d["regressor"]["kind"] == model
    for i, bad in enumerate(_tamper(d, model)):
        path = tmp_path / f"bad{i}.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(InputError) as info:
            AccuracyPredictor.load(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    if model == "mlp":  # the layout version 1 wrote
        r = d.pop("regressor")
        d["version"] = 1
        d["mlp"] = {"mean": r["x_mean"], "scale": r["x_scale"], "y_mean": r["y_mean"], "y_std": r["y_std"],
                    "coefs": r["coefs"], "intercepts": r["intercepts"], "activation": r["activation"]}
        (tmp_path / "v1.json").write_text(json.dumps(d))
        new = DEFAULT_SPACE.sample_many(20, seed=1)
        assert np.array_equal(AccuracyPredictor.load(tmp_path / "v1.json").predict(new), p.predict(new))
        d["mlp"]["scale"][0] = 0.0
        (tmp_path / "v1.json").write_text(json.dumps(d))
        with pytest.raises(InputError, match="zero scale"):
            AccuracyPredictor.load(tmp_path / "v1.json")


@pytest.mark.slow  # 7-12 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_auto_predictor_is_chosen_by_cross_validation():
    from hwnas.accuracy.predictor import AUTO_CANDIDATES, fit_auto

    archs = DEFAULT_SPACE.sample_many(60, seed=4)
    y = np.array([np.log10(arch_cost(a).macs) for a in archs])
    p = fit_auto(archs, y)
    assert set(p.info["cv"]) == {f"{m}/{f}" for m, f in AUTO_CANDIDATES}
    assert p.info["cv"][f"{p.model}/{p.features}"] == max(p.info["cv"].values())
    assert fit_auto(archs, y, model="gbm", features="ordinal").features == "ordinal"
    with pytest.raises(InputError, match="unknown predictor features"):
        fit_auto(archs, y, features="pixels")


def test_vectorized_cost_features_equal_arch_cost():
    from hwnas.accuracy.predictor import cost_features

    archs = DEFAULT_SPACE.sample_many(300, seed=3) + [DEFAULT_SPACE.largest(), DEFAULT_SPACE.smallest()]
    got = cost_features(DEFAULT_SPACE.encode(archs, "ordinal"), DEFAULT_SPACE)
    want = np.log10([[arch_cost(a).macs, arch_cost(a).params] for a in archs])
    assert np.array_equal(got, want)


def test_pairs_csv(tmp_path):
    archs = DEFAULT_SPACE.sample_many(3, seed=0)
    good = tmp_path / "p.csv"
    good.write_text("arch,accuracy\n" + "".join(f"{a},{70 + i}\n" for i, a in enumerate(archs)))
    a, y = read_pairs_csv(good)
    assert [str(x) for x in a] == [str(x) for x in archs] and list(y) == [70, 71, 72]
    bad = tmp_path / "b.csv"
    bad.write_text(f"arch,accuracy\n{archs[0]},71\nr999_w1.0_k3e3,50\n")
    with pytest.raises(InputError, match="line 3"):
        read_pairs_csv(bad)
    bad.write_text(f"model,acc\n{archs[0]},71\n")
    with pytest.raises(InputError, match="header"):
        read_pairs_csv(bad)


def test_bundled_predictor_answers_out_of_the_box():
    """The shipped predictor is there (a packaging regression fails here) and ranks the shipped
    (subnet, accuracy) pairs it was fitted from."""
    from scipy.stats import spearmanr

    from hwnas.accuracy import default_accuracy_dir

    d = default_accuracy_dir()
    assert (d / "predictor.json").is_file(), f"the shipped accuracy predictor {d / 'predictor.json'} is missing"
    est = make_estimator("predictor")
    big, small = est.estimate([DEFAULT_SPACE.largest(), DEFAULT_SPACE.smallest()])
    assert big > small and ("digits" in est.meaning or "shapes" in est.meaning)  # the dataset it was fitted on
    archs, acc = read_pairs_csv(d / "pairs.csv")
    assert len(archs) >= 300
    assert spearmanr(est.estimate(archs), acc).statistic > 0.8


@pytest.mark.parametrize("features", ["onehot+cost", "ordinal+cost", "onehot"])
def test_predictor_genome_path_on_a_smaller_space(tmp_path, features):
    """The search's vectorized path (index genomes of the search's space) gives the same figures
    as predicting the architectures, also when the search space is a subset of the predictor's
    (its genomes index other choices: onehot features had the wrong width)."""
    archs = DEFAULT_SPACE.sample_many(80, seed=0)
    y = np.array([np.log10(arch_cost(a).macs) * 10 + a.width_mult for a in archs])
    p, _ = fit_predictor(archs, y, model="gbm", features=features)
    p.save(tmp_path / "predictor.json")
    for space in (DEFAULT_SPACE, SearchSpace(resolutions=(160, 224), width_mults=(1.2,), kernels=(5, 7), expands=(4, 6))):
        est = make_estimator("predictor", tmp_path, space)
        G = space.random_genomes(np.random.default_rng(3), 50)
        np.testing.assert_allclose(est.estimate_genomes(G), est.estimate(space.genomes_to_archs(G)), rtol=1e-12)


def test_genomes_into_a_covering_space():
    small = SearchSpace(resolutions=(160, 224), width_mults=(1.2,), depths=(2, 3), kernels=(7,), expands=(3, 6))
    G = small.random_genomes(np.random.default_rng(0), 40)
    big = small.genomes_into(DEFAULT_SPACE, G)
    assert DEFAULT_SPACE.genomes_to_archs(big) == small.genomes_to_archs(G)
    with pytest.raises(ValueError, match="resolutions: 224"):
        small.genomes_into(SearchSpace(resolutions=(128, 160)), G)
