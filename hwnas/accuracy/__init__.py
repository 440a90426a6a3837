"""Accuracy estimation for the search: a weight-sharing supernet with inherited weights, an
accuracy predictor, a zero-cost proxy and trivial baselines, behind one interface.

    from hwnas.accuracy import make_estimator
    acc = make_estimator("predictor").estimate(["r224_w1.0_..."])   # higher is better

Modules: :mod:`.data` (datasets, the offline digits set), :mod:`.shapes` (the procedural proxy
task ``builtin:shapes``), :mod:`.noise` (bootstrap intervals and split-half reliability of
accuracies), :mod:`.supernet` (the supernet,
training, inherited-weight evaluation), :mod:`.predictor` (accuracy predictor),
:mod:`.proxy` (NASWOT), :mod:`.estimators` (the interface and the registry).
"""

from .estimators import (DEFAULT_ESTIMATOR, ESTIMATORS, AccuracyEstimator, NotTrainedError, default_accuracy_dir,
                         make_estimator)

__all__ = ["DEFAULT_ESTIMATOR", "ESTIMATORS", "AccuracyEstimator", "NotTrainedError", "default_accuracy_dir",
           "make_estimator"]
