"""MACs versus measured latency: how well does a cost proxy rank architectures on a device?

Everything here works on a device profile's measured data (``Profile.table("arch")``: the
end-to-end architectures, drift-corrected ms = canary-relative x the profile's canary
reference) plus, optionally, the profile's zoo models of other CNN families and ONNX models
measured right now.  One file per job:

* ``stats``: correlations, misranked pairs, spread among near-equals, counterexamples of a
  proxy (MACs, params, a predictor's output) against measured latency;
* ``budgets``: MACs-optimal vs latency-optimal picks under a budget, per device;
* ``precision``: int8 vs fp32 on the same machine settings;
* ``inputs``: loading profiles and ONNX models, measuring the models;
* ``run``: the whole comparison of one profile (``compare``), with the default latency
  predictor judged fairly (fitted on one half of the architectures, scored on the other);
* ``breakdown``: per-kernel-family latency of one architecture;
* ``headline``: the lesson in a few lines of text.
"""

from .breakdown import kernel_breakdown, profiled_archs, report_breakdown
from .budgets import BUDGET_QUANTILES, budget_picks, check_budgets, compare_devices, default_budgets
from .headline import headline
from .inputs import (MIN_ARCHS, Progress, load_models, load_profile, measure_models, open_profiles,
                     require_enough_archs)
from .precision import compare_precisions, precision_pair
from .heldout import default_arch_predictor, heldout_predictions
from .run import Comparison, compare
from .stats import (NEAR_EQUAL_TOL, counterexamples, largest_gap, misranked_pairs, near_equal_spread,
                    proxy_stats)

__all__ = [
    "BUDGET_QUANTILES", "MIN_ARCHS", "NEAR_EQUAL_TOL", "Comparison", "Progress", "budget_picks", "check_budgets",
    "compare", "compare_devices", "compare_precisions", "counterexamples", "default_arch_predictor",
    "default_budgets", "headline", "heldout_predictions", "kernel_breakdown", "largest_gap", "load_models",
    "load_profile", "measure_models", "misranked_pairs", "near_equal_spread", "open_profiles", "precision_pair",
    "profiled_archs", "proxy_stats", "report_breakdown", "require_enough_archs",
]
