"""A Once-for-All style weight-sharing supernet of the space.

One set of weights, sized for the largest choice everywhere, serves every architecture:

* **elastic kernel** by *kernel transformation matrices* (OFA): a depthwise layer keeps one
  7x7 kernel; the 5x5 kernel is its centre 5x5 crop multiplied by a learned 25x25 matrix, the
  3x3 kernel the centre 3x3 crop of that result times a learned 9x9 matrix (one matrix per
  layer and kernel size, shared by all channels).  The matrices start as identities, so at
  initialisation the scheme is plain centre cropping (``kernel_mode="crop"`` keeps it so).
* **elastic depth**: a stage of depth d runs its first d blocks.
* **elastic expand ratio**: a block with expand e uses the first ``mid`` channels of its
  hidden layer; :meth:`Supernet.sort_channels` re-orders hidden channels (and the squeeze-
  excite hidden units) by importance, the L1 norm of the weights that read them, at the start
  of every training epoch, so the first channels are the most important ones.
* **elastic width** (the space's width multipliers 1.0 / 1.2, which OFA covers with separate
  networks): every layer keeps the channels of the widest multiplier and a narrower network
  uses the first channels.  These are not importance-sorted.
* **elastic resolution**: each subnet sees the batch resized to its input size
  (:func:`hwnas.accuracy.data.input_size`: the space's largest resolution maps to the
  dataset's native size).

Training follows the sandwich rule (:mod:`.training`): each step accumulates the gradients of
the largest, the smallest and ``n_random`` uniformly sampled subnets (the smaller ones
distilled from the largest one's soft predictions when ``distill``) before one optimizer step.

:meth:`Supernet.subnet_state_dict` extracts a subnet's weights in the exact ``state_dict``
layout of :func:`hwnas.builders.torch_model.build_torch`; :func:`extract_subnet` returns that
standalone model, and :func:`recalibrate_bn` resets and re-estimates its batch-norm statistics
on a few batches (the supernet's own batch-norm layers normalize with batch statistics in
training; their running statistics are not used for evaluation).

Checkpoints (:mod:`.checkpoint`: ``DIR/supernet.pt``) are plain dicts of tensors, numbers and
strings, saved with ``torch.save`` and loaded with ``weights_only=True``; ``DIR/supernet.json``
holds the metadata (space, widths, classes, dataset fingerprint, training configuration,
history) and is checked when a checkpoint is resumed or loaded.

One file per job: :mod:`.network` (the elastic network), :mod:`.batches` (batching and
augmentation), :mod:`.feed` (a rank's shard of each batch, in memory or streamed by worker
processes), :mod:`.training` (settings, schedule, the one training loop, supernet
training), :mod:`.distributed` (one rank of a torch.distributed run: gradient sync,
agreement, broadcasts), :mod:`.launch` (``--nproc N`` processes or one rank under
``torchrun``), :mod:`.checkpoint`, :mod:`.evaluation` (loading, recalibration, accuracy),
:mod:`.standalone` (one architecture trained alone through the same loop) and :mod:`.extract`
(one subnet as a model: weights-only file, metadata, ONNX).
"""

from .batches import Batches
from .checkpoint import CHECKPOINT, FORMAT, META, SPACE_KEYS, VERSION, checkpoint_paths, read_meta, space_covers
from .evaluation import LoadedSupernet, evaluate_archs, load_supernet, recalibrate_bn
from .network import KERNEL_MODES, DynamicBlock, Supernet, extract_subnet
from .launch import train_distributed
from .standalone import train_standalone
# _epoch_batches, _make_optimizer: private, but benchmarks/accuracy_estimators.py imports them from here
from .training import (LoopEnd, TrainConfig, TrainResult, _epoch_batches, _make_optimizer, run_epochs, sandwich_step,
                       train_supernet)

__all__ = [
    "CHECKPOINT",
    "FORMAT",
    "KERNEL_MODES",
    "META",
    "SPACE_KEYS",
    "VERSION",
    "Batches",
    "DynamicBlock",
    "LoadedSupernet",
    "LoopEnd",
    "Supernet",
    "TrainConfig",
    "TrainResult",
    "checkpoint_paths",
    "evaluate_archs",
    "extract_subnet",
    "load_supernet",
    "read_meta",
    "recalibrate_bn",
    "run_epochs",
    "sandwich_step",
    "space_covers",
    "train_distributed",
    "train_standalone",
    "train_supernet",
]
