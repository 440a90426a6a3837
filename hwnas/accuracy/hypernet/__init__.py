"""A graph hypernetwork (GHN style) for the space: one network that *generates* the weights of
any architecture, trained on architectures sampled from the space.

* :mod:`.network`: :class:`HyperNet`. Each block of the chain (the fixed first block, then
  every active block) is described by its kernel, expand ratio, stage, position in the stage,
  the stage's depth, input resolution, width multiplier, in / out / hidden channels, stride,
  squeeze-excite and residual (:func:`node_features`); a two-layer MLP embeds it, a
  bidirectional GRU runs over the chain, and the decoder of the block's position emits the
  block's weights (expand conv, depthwise conv at the largest kernel, squeeze-excite, project)
  at the position's largest shape: a learned template scaled by generated factors per output
  channel, per input channel and per depthwise tap.  They are sliced per architecture by the
  supernet's own code (first channels, first blocks, centre crops; ``kernel_mode="crop"``).
  Stem, first block, head, batch-norm affines and squeeze-excite biases are shared ordinary
  parameters.  Batch-norm uses batch statistics in training; evaluation recalibrates running
  statistics on a few training batches (the supernet's :func:`recalibrate_bn`).
* :mod:`.training`: :func:`train_hypernet`: each step draws a meta-batch of
  ``archs_per_step`` architectures and a batch of images from ``default_rng([seed, 2, step])``,
  generates each architecture's weights, runs it and back-propagates into the hypernetwork
  (AdamW, warm-up then cosine); checkpoints every minute and at the end; ``resume``.
* :mod:`.checkpoint`: ``DIR/hypernet.pt`` (a plain dict of tensors, numbers and strings, loaded
  with ``weights_only=True``; no pickle of objects) and ``DIR/hypernet.json`` (metadata).
* :mod:`.evaluation`: :func:`load_hypernet`, :func:`evaluate_generated` (top-1 % on the
  validation split with generated weights; per-image correctness for bootstrap intervals).
"""

from .checkpoint import CHECKPOINT, FORMAT, META, VERSION, checkpoint_paths, read_meta
from .evaluation import LoadedHypernet, evaluate_generated, load_hypernet
from .network import GENERATED, HyperNet, extract_generated, node_features
from .training import HyperTrainConfig, HyperTrainResult, hyper_step, train_hypernet

__all__ = [
    "CHECKPOINT",
    "FORMAT",
    "GENERATED",
    "META",
    "VERSION",
    "HyperNet",
    "HyperTrainConfig",
    "HyperTrainResult",
    "LoadedHypernet",
    "checkpoint_paths",
    "evaluate_generated",
    "extract_generated",
    "hyper_step",
    "load_hypernet",
    "node_features",
    "read_meta",
    "train_hypernet",
]
