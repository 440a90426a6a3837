"""The kernel campaign: standalone operators as tiny ONNX graphs, shapes drawn from real networks.

* :mod:`.spec`: :class:`KernelSpec`, one kernel as a validated value with a text key and its cost;
* :mod:`.sampler`: :class:`KernelSampler` (CNN shapes), :class:`TokenKernelSampler` (transformers),
  :class:`LrnKernelSampler` (the ``lrn`` kernels of older CNNs), :class:`PatchKernelSampler`
  (``patch_conv``: patch embeddings and stride-2 downsampling, stride = kernel), :class:`FcKernelSampler`
  (the large ``gemm`` of VGG / AlexNet classifier heads), :class:`AttentionKernelSampler` (fused
  self-attention, ORT's ``Attention`` / ``MultiHeadAttention``), :class:`FusedActKernelSampler`
  (convolutions with a fused ReLU6 / LeakyReLU / Sigmoid);
* :mod:`.graphs`: :func:`build_kernel_onnx`, the spec as a one-input ONNX graph.
"""

from .graphs import build_kernel_onnx
from .sampler import (DEFAULT_OP_WEIGHTS, DEFAULT_TOKEN_OP_WEIGHTS, AttentionKernelSampler, FcKernelSampler,
                      FusedActKernelSampler, KernelSampler, LrnKernelSampler, PatchKernelSampler, TokenKernelSampler)
from .spec import (ACT_OPS, ATTENTION_OPS, BINARY_OPS, CONV_OPS, EXTRA_OPS, FLOAT_BYTES, FUSED_ACT_CONV_OPS, HEAD_OPS,
                   IR_VERSION, OPS, OPSET, POOL_OPS, TOKEN_OPS, KernelSpec)

__all__ = ["ACT_OPS", "ATTENTION_OPS", "AttentionKernelSampler", "BINARY_OPS", "CONV_OPS", "DEFAULT_OP_WEIGHTS",
           "DEFAULT_TOKEN_OP_WEIGHTS", "EXTRA_OPS", "FUSED_ACT_CONV_OPS", "FusedActKernelSampler",
           "FLOAT_BYTES", "HEAD_OPS", "IR_VERSION", "OPS", "OPSET", "POOL_OPS", "TOKEN_OPS", "KernelSampler",
           "FcKernelSampler", "KernelSpec", "LrnKernelSampler", "PatchKernelSampler", "TokenKernelSampler",
           "build_kernel_onnx"]
