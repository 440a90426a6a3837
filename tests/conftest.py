import pytest

from hwnas.devices import load_device
from hwnas.measure import MeasureConfig
from hwnas.profile import ProfilePlan, build_profile
from hwnas.space import SearchSpace

TINY_SPACE = SearchSpace(resolutions=(128,), width_mults=(1.0,))
TINY_PLAN = ProfilePlan(n_archs=36, n_kernels=24, n_kernel_profiles=3, zoo_per_family=1, time_budget_min=10)


@pytest.fixture(scope="session")
def tiny_profile(tmp_path_factory):
    """A real (small, quickly timed) cpu-1t profile: one resolution, one width."""
    d = tmp_path_factory.mktemp("prof") / "cpu-1t"
    reports = build_profile(load_device("cpu-1t"), d, TINY_PLAN, space=TINY_SPACE, config=MeasureConfig.quick())
    return d, reports
