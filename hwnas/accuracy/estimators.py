"""Accuracy estimators: one interface, ``estimate(archs) -> np.ndarray`` (higher is better).

Every estimator states what its numbers mean (``meaning``, ``unit``), validates architectures
against its space, evaluates in batches and caches results per architecture string.

=============  ====================================================================  =============
name           what                                                                   needs
=============  ====================================================================  =============
``predictor``  predicted inherited-weight top-1 (%), accuracy predictor (GBM / MLP)   ``predictor.json``
``supernet``   top-1 (%) with inherited supernet weights after BN recalibration       ``supernet.pt`` + data
``hypernet``   top-1 (%) with hypernetwork-generated weights after BN recalibration   ``hypernet.pt`` + data
``naswot``     NASWOT zero-cost proxy score, log|det K| at initialisation             one mini-batch
``params``     parameter count (trivial baseline)                                     nothing
``macs``       multiply-accumulates at the architecture's resolution (baseline)       nothing
=============  ====================================================================  =============

Trained estimators read an *accuracy directory* (default :func:`default_accuracy_dir`,
``profiles/accuracy/``): ``supernet.pt`` / ``supernet.json`` from ``hwnas supernet train``,
``predictor.json`` / ``pairs.csv`` from ``hwnas supernet fit-predictor``.  The bundled
directory ships the predictor fitted on the offline digits dataset (the supernet checkpoint,
74 MB with its optimizer state, 37 MB of weights, is not shipped).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..space import DEFAULT_SPACE, Arch, SearchSpace

__all__ = [
    "ESTIMATORS",
    "AccuracyEstimator",
    "MacsEstimator",
    "NaswotEstimator",
    "NotTrainedError",
    "ParamsEstimator",
    "PredictorEstimator",
    "HypernetEstimator",
    "SupernetEstimator",
    "default_accuracy_dir",
    "make_estimator",
]


class NotTrainedError(InputError):
    """An estimator that needs a trained supernet or predictor found none."""


def default_accuracy_dir() -> Path:
    """``profiles/accuracy`` under the project root (``HWNAS_HOME`` overrides the root)."""
    from ..paths import profiles_dir

    return profiles_dir() / "accuracy"


class AccuracyEstimator:
    """Base class.  Subclasses set ``name``, ``meaning``, ``unit`` and implement ``_estimate``."""

    name = ""
    meaning = ""
    unit = ""
    higher_is_better = True
    batch_size = 256

    def __init__(self, space: SearchSpace = DEFAULT_SPACE) -> None:
        self.space = space
        self._cache: dict[str, float] = {}

    def _arch(self, a: Arch | str) -> Arch:
        try:
            return self.space.parse(a) if isinstance(a, str) else self.space.validate(a)
        except ValueError as e:
            raise InputError(str(e)) from None

    def estimate(self, archs: Sequence[Arch | str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """One value per architecture (float64), in order; cached per architecture."""
        parsed = [self._arch(a) for a in archs]
        keys = [str(a) for a in parsed]
        todo: dict[str, Arch] = {}
        for k, a in zip(keys, parsed):
            if k not in self._cache and k not in todo:
                todo[k] = a
        items = list(todo.items())
        for i in range(0, len(items), self.batch_size):
            chunk = items[i:i + self.batch_size]
            vals = np.asarray(self._estimate([a for _, a in chunk]), dtype=np.float64)
            for (k, _), v in zip(chunk, vals):
                self._cache[k] = float(v)
            if progress is not None:
                progress(len(chunk))
        return np.array([self._cache[k] for k in keys], dtype=np.float64)

    def _estimate(self, archs: list[Arch]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def describe(self) -> dict:
        return {"estimator": self.name, "meaning": self.meaning, "unit": self.unit,
                "higher_is_better": self.higher_is_better}


class _CostEstimator(AccuracyEstimator):
    """A trivial baseline that is one column of the space's cost table (``params`` or ``macs``)."""

    column = ""
    batch_size = 4096

    def _estimate(self, archs: list[Arch]) -> np.ndarray:
        return self.estimate_genomes(self.space.archs_to_genomes(archs))

    def estimate_genomes(self, G: np.ndarray) -> np.ndarray:
        from ..cost import cost_table

        return cost_table(self.space).costs(G)[self.column].astype(np.float64)


class ParamsEstimator(_CostEstimator):
    name = column = "params"
    meaning = "parameter count of the architecture (1000-class head), a trivial baseline: bigger is assumed better"
    unit = "parameters"


class MacsEstimator(_CostEstimator):
    name = column = "macs"
    meaning = "multiply-accumulates per image at the architecture's resolution, a trivial baseline"
    unit = "MACs"


def _dataset_of(accuracy_dir: Path | None) -> str:
    """The ``--data`` source recorded with a supernet, else the offline digits dataset."""
    from .data import BUILTIN_DIGITS

    if accuracy_dir is not None and (accuracy_dir / "supernet.json").is_file():
        from .supernet import read_meta

        return read_meta(accuracy_dir)["dataset"]["source"]
    return BUILTIN_DIGITS


class NaswotEstimator(AccuracyEstimator):
    """NASWOT (:mod:`hwnas.accuracy.proxy`) on one fixed mini-batch of the dataset's training split."""

    name = "naswot"
    unit = "log|det K|"
    batch_size = 16

    def __init__(self, space: SearchSpace = DEFAULT_SPACE, data=None, accuracy_dir: str | os.PathLike | None = None,
                 n_images: int = 64, seed: int = 0) -> None:
        super().__init__(space)
        from .data import ImageDataset, load_dataset
        from .supernet import Batches

        if data is None:
            data = _dataset_of(Path(accuracy_dir) if accuracy_dir is not None else None)
        ds = data if isinstance(data, ImageDataset) else load_dataset(data)
        train_idx, _ = ds.split(0.2, seed)
        pick = train_idx[np.random.default_rng([seed, 4]).permutation(len(train_idx))[:n_images]]
        self._batches = Batches(ds, train_idx, space)
        self._x = self._batches.tensor(np.sort(pick))
        self._n_classes = ds.n_classes
        self._seed = seed
        self._sized: dict = {}
        self.meaning = (f"NASWOT zero-cost proxy: log|det K| of activation codes of the untrained network on "
                        f"{len(pick)} images of {ds.source} (higher = activations separate images better)")

    def _estimate(self, archs: list[Arch]) -> np.ndarray:
        from .proxy import naswot_score

        out = []
        for a in archs:
            size = self._batches.size_of(a)
            if size not in self._sized:
                self._sized[size] = self._batches.resize(self._x, size)
            out.append(naswot_score(a, self._sized[size], self._n_classes, self._seed))
        return np.array(out)


class SupernetEstimator(AccuracyEstimator):
    """Inherited-weight top-1 accuracy, measured on the supernet in ``accuracy_dir``."""

    name = "supernet"
    unit = "% top-1"
    batch_size = 8

    def __init__(self, space: SearchSpace = DEFAULT_SPACE, accuracy_dir: str | os.PathLike | None = None,
                 data=None) -> None:
        super().__init__(space)
        from .supernet import CHECKPOINT, META, load_supernet

        d = Path(accuracy_dir) if accuracy_dir is not None else default_accuracy_dir()
        if not (d / META).is_file() or not (d / CHECKPOINT).is_file():
            raise NotTrainedError(
                f"estimator 'supernet' needs a trained supernet in {d} (no {CHECKPOINT}); train one with "
                f"`hwnas supernet train --data builtin:digits --out {d}` (about 10 minutes on a 2-core CPU)")
        self.loaded = load_supernet(d, space, data)
        ds = self.loaded.data
        cfg = self.loaded.config
        self.accuracy_dir = d
        self.meaning = (f"top-1 accuracy (%) on the validation split ({len(self.loaded.val_idx)} images) of "
                        f"{ds.source}, with weights inherited from the supernet in {d} after batch-norm "
                        f"recalibration on {cfg.calib_batches}x{cfg.calib_batch_size} training images")
        if not self.loaded.complete:
            import warnings

            warnings.warn(f"the supernet in {d} is only partly trained ({self.loaded.meta['epochs_done']} of "
                          f"{cfg.epochs} epochs); `hwnas supernet train --resume` continues it")

    def _estimate(self, archs: list[Arch]) -> np.ndarray:
        from .supernet import evaluate_archs

        return evaluate_archs(self.loaded, archs)


class HypernetEstimator(AccuracyEstimator):
    """Top-1 accuracy with the weights the graph hypernetwork in ``accuracy_dir`` generates
    (``hypernet.pt`` from ``hwnas hypernet train``); :meth:`interval` gives each estimate's
    bootstrap 95% interval over the validation images."""

    name = "hypernet"
    unit = "% top-1"
    batch_size = 8

    def __init__(self, space: SearchSpace = DEFAULT_SPACE, accuracy_dir: str | os.PathLike | None = None,
                 data=None) -> None:
        super().__init__(space)
        from .hypernet import CHECKPOINT, META, load_hypernet

        if accuracy_dir is None:
            raise InputError("estimator 'hypernet' needs --hypernet-dir DIR (from `hwnas hypernet train`)")
        d = Path(accuracy_dir)
        if d.exists() and not d.is_dir():
            raise InputError(f"hypernetwork directory {d} is a file")
        if not (d / META).is_file() or not (d / CHECKPOINT).is_file():
            raise NotTrainedError(
                f"estimator 'hypernet' needs a trained hypernetwork in {d} (no {CHECKPOINT} / {META}); train one "
                f"with `hwnas hypernet train --data builtin:shapes --out {d}`")
        self.loaded = load_hypernet(d, space, data)
        self.accuracy_dir = d
        self._intervals: dict[str, tuple[float, float]] = {}
        cfg = self.loaded.config
        self.meaning = (f"top-1 accuracy (%) on the validation split ({len(self.loaded.val_idx)} images) of "
                        f"{self.loaded.data.source}, with weights generated by the hypernetwork in {d} "
                        f"({self.loaded.meta['steps_done']} training steps) after batch-norm recalibration on "
                        f"{cfg.calib_batches}x{cfg.calib_batch_size} training images")
        if not self.loaded.complete:
            import warnings

            warnings.warn(f"the hypernetwork in {d} is only partly trained ({self.loaded.meta['steps_done']} of "
                          f"{cfg.steps} steps); `hwnas hypernet train --resume` continues it")

    def _estimate(self, archs: list[Arch]) -> np.ndarray:
        from .hypernet import evaluate_generated
        from .noise import accuracy_noise

        acc, items = evaluate_generated(self.loaded, archs, return_items=True)
        noise = accuracy_noise(items, n_boot=1000, n_splits=1, seed=0)
        for a, lo, hi in zip(archs, noise.ci95_low_pct, noise.ci95_high_pct):
            self._intervals[str(a)] = (lo, hi)
        return acc

    def interval(self, arch: Arch | str) -> tuple[float, float]:
        """Bootstrap 95% interval (percentile, 1,000 resamples of the validation images) of an
        architecture already estimated."""
        return self._intervals[str(self._arch(arch))]


class PredictorEstimator(AccuracyEstimator):
    """The accuracy predictor in ``accuracy_dir`` (``predictor.json``)."""

    name = "predictor"
    unit = "% top-1 (predicted)"
    batch_size = 100_000

    def __init__(self, space: SearchSpace = DEFAULT_SPACE, accuracy_dir: str | os.PathLike | None = None) -> None:
        super().__init__(space)
        from .predictor import PREDICTOR_FILE, AccuracyPredictor

        d = Path(accuracy_dir) if accuracy_dir is not None else default_accuracy_dir()
        path = d / PREDICTOR_FILE
        if not path.is_file():
            raise NotTrainedError(
                f"estimator 'predictor' needs a fitted accuracy predictor ({path} missing); fit one with "
                f"`hwnas supernet fit-predictor --dir {d}` after `hwnas supernet train --data builtin:digits --out {d}`"
                f", or from your own pairs with `hwnas supernet fit-predictor --dir {d} --csv PAIRS.csv`")
        self.predictor = AccuracyPredictor.load(path)
        from .supernet import space_covers

        if not space_covers(self.predictor.space.to_dict(), space.to_dict()):
            raise InputError(f"accuracy predictor {path} was fitted for another search space "
                             f"({self.predictor.space.to_dict()}, wanted {space.to_dict()}); refit it")
        info = self.predictor.info
        h = info.get("heldout", {})
        src = info.get("source", "pairs")
        self.meaning = (f"predicted {info.get('target', 'accuracy')} ({self.predictor.model} on '{self.predictor.features}' "
                        f"features, fitted on {h.get('n_train', '?')} {src}; held-out RMSE {h.get('rmse', float('nan')):.2f}, "
                        f"Spearman {h.get('spearman', float('nan')):.3f})")

    def _estimate(self, archs: list[Arch]) -> np.ndarray:
        return self.predictor.predict(archs)

    def estimate_genomes(self, G: np.ndarray) -> np.ndarray:
        """Vectorized path for the search: index genomes (``SearchSpace.random_genomes``) straight
        to the predictor's features, no architecture objects built (same values as ``estimate``)."""
        return self.predictor.predict_features(self.predictor.features_from_genomes(G, self.space))


ESTIMATORS: dict[str, type[AccuracyEstimator]] = {
    "predictor": PredictorEstimator,
    "supernet": SupernetEstimator,
    "hypernet": HypernetEstimator,
    "naswot": NaswotEstimator,
    "params": ParamsEstimator,
    "macs": MacsEstimator,
}
DEFAULT_ESTIMATOR = "predictor"


def make_estimator(name: str = DEFAULT_ESTIMATOR, accuracy_dir: str | os.PathLike | None = None,
                   space: SearchSpace = DEFAULT_SPACE) -> AccuracyEstimator:
    """The estimator called ``name`` (see :data:`ESTIMATORS`), reading trained parts from ``accuracy_dir``."""
    if name not in ESTIMATORS:
        raise InputError(f"unknown accuracy estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
    cls = ESTIMATORS[name]
    if cls in (ParamsEstimator, MacsEstimator):
        return cls(space)
    if accuracy_dir is not None and Path(accuracy_dir).exists() and not Path(accuracy_dir).is_dir():
        raise InputError(f"accuracy directory {accuracy_dir} is a file")
    return cls(space, accuracy_dir=accuracy_dir)
