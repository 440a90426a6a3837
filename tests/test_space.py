import numpy as np
import pytest

from hwnas.space import DEFAULT_SPACE, Arch, Block, SearchSpace

SPACE = DEFAULT_SPACE


def test_round_trip_many():
    for a in SPACE.sample_many(300, seed=1):
        s = str(a)
        b = Arch.parse(s)
        assert b == a and hash(b) == hash(a) and str(b) == s
        SPACE.validate(b)


def test_known_string():
    s = "r224_w1.2_k3e4-k5e6_k7e3-k3e3-k5e4_k3e6-k3e6_k5e4-k5e4-k7e3-k3e3_k3e3-k5e6"
    a = Arch.parse(s)
    assert a.resolution == 224 and a.width_mult == 1.2
    assert a.depths == (2, 3, 2, 4, 2)
    assert a.stages[0][1] == Block(5, 6)
    assert str(a) == s


def test_immutable_and_hashable():
    a = SPACE.smallest()
    with pytest.raises(Exception):
        a.resolution = 160  # type: ignore[misc]
    assert len({a, Arch.parse(str(a))}) == 1


@pytest.mark.parametrize(
    "text, bad",
    [
        ("r224_w1.0_k3e4-k5e6_k7e3_k3e6-k3e6_k5e4-k5e4_k3e3-k5x6", "k5x6"),
        ("x224_w1.0_k3e4-k5e6_k7e3-k3e3_k3e6-k3e6_k5e4-k5e4_k3e3-k5e6", "x224"),
        ("r224_wide_k3e4-k5e6_k7e3-k3e3_k3e6-k3e6_k5e4-k5e4_k3e3-k5e6", "wide"),
        ("r224_w1.0_k3e4-k5e6_k7e3-k3e3_k3e6-k3e6_k5e4-k5e4", "expected 7"),
        ("r224_w1.0_k3e4--k5e6_k7e3-k3e3_k3e6-k3e6_k5e4-k5e4_k3e3-k5e6", "''"),
    ],
)
def test_bad_string_names_token(text, bad):
    with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
        Arch.parse(text)


@pytest.mark.parametrize(
    "text, why",
    [
        ("r300_w1.0_k3e4-k5e6_k7e3-k3e3_k3e6-k3e6_k5e4-k5e4_k3e3-k5e6", "resolution 300"),
        ("r224_w1.5_k3e4-k5e6_k7e3-k3e3_k3e6-k3e6_k5e4-k5e4_k3e3-k5e6", "width multiplier 1.5"),
        ("r224_w1.0_k4e4-k5e6_k7e3-k3e3_k3e6-k3e6_k5e4-k5e4_k3e3-k5e6", "kernel 4"),
        ("r224_w1.0_k3e5-k5e6_k7e3-k3e3_k3e6-k3e6_k5e4-k5e4_k3e3-k5e6", "expand 5"),
        ("r224_w1.0_k3e4_k7e3-k3e3_k3e6-k3e6_k5e4-k5e4_k3e3-k5e6", "depth 1"),
        ("r224_w1.0_k3e4-k3e4-k3e4-k3e4-k3e4_k7e3-k3e3_k3e6-k3e6_k5e4-k5e4_k3e3-k5e6", "depth 5"),
    ],
)
def test_outside_space(text, why):
    Arch.parse(text)  # well-formed
    with pytest.raises(ValueError, match=why):
        SPACE.parse(text)


def test_sampling_seeded_valid_and_diverse():
    a = SPACE.sample_many(50, seed=3)
    b = SPACE.sample_many(50, seed=3)
    c = SPACE.sample_many(50, seed=4)
    assert a == b and a != c
    assert len(set(a)) == 50
    for x in a:
        SPACE.validate(x)
    assert {x.resolution for x in a} == set(SPACE.resolutions)
    assert {d for x in a for d in x.depths} == set(SPACE.depths)


def test_mutation_and_crossover_stay_in_space():
    rng = np.random.default_rng(0)
    parents = SPACE.sample_many(40, seed=5)
    changed = 0
    for p, q in zip(parents, parents[1:]):
        m = SPACE.mutate(p, rng, prob=0.3)
        SPACE.validate(m)
        changed += m != p
        c = SPACE.crossover(p, q, rng)
        SPACE.validate(c)
        # every block of the child comes from a parent at the same position
        for si, stage in enumerate(c.stages):
            for j, b in enumerate(stage):
                assert b in [s[j] for s in (p.stages[si], q.stages[si]) if j < len(s)]
        assert c.resolution in (p.resolution, q.resolution)
    assert changed >= 30
    # prob=0 mutation is the identity
    assert SPACE.mutate(parents[0], rng, prob=0.0) == parents[0]


def test_mutation_reproducible():
    a = SPACE.smallest()
    m1 = [SPACE.mutate(a, np.random.default_rng(9), 0.5) for _ in range(3)]
    assert m1[0] == m1[1] == m1[2]


def test_grid_enumeration():
    grid = list(SPACE.enumerate_grid(resolutions=[160], width_mults=[1.0]))
    assert len(grid) == 3**5 and len(set(grid)) == 3**5
    assert all(a.resolution == 160 for a in grid)


def test_space_size_and_extremes():
    assert SPACE.size > 10**19
    assert SPACE.contains(SPACE.smallest()) and SPACE.contains(SPACE.largest())


def test_encodings():
    archs = SPACE.sample_many(20, seed=2)
    o = SPACE.encode(archs, "ordinal")
    h = SPACE.encode(archs, "onehot")
    assert o.shape == (20, len(SPACE.feature_names()))
    assert o.dtype == np.float32
    assert (o[:, 0] == [a.resolution for a in archs]).all()
    # one-hot: exactly one active resolution, width and depth choice per stage; 2 per present block
    assert h.sum(axis=1).tolist() == [2 + 5 + 2 * a.n_blocks for a in archs]
    assert len({row.tobytes() for row in h}) == 20
    with pytest.raises(ValueError, match="unknown encoding"):
        SPACE.encode(archs, "binary")


def test_space_round_trips_through_dict():
    s = SearchSpace(resolutions=(160, 192))
    assert SearchSpace.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError):
        SearchSpace(resolutions=(161,))


def test_genome_encodings_match_arch_encodings():
    """The search's vectorized genome -> encoding paths equal encode() on the architectures."""
    rng = np.random.default_rng(3)
    G = SPACE.canonical(SPACE.random_genomes(rng, 300))
    archs = SPACE.genomes_to_archs(G)
    assert np.array_equal(SPACE.genomes_to_onehot(G), SPACE.encode(archs, "onehot"))
    assert np.array_equal(SPACE.genomes_to_ordinal(G), SPACE.encode(archs, "ordinal"))
    assert np.array_equal(SPACE.archs_to_genomes(archs), G)
