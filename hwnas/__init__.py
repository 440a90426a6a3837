"""hwnas: hardware-aware neural architecture search on real ONNX Runtime latency."""

from .space import DEFAULT_SPACE, Arch, Block, SearchSpace

__all__ = ["Arch", "Block", "SearchSpace", "DEFAULT_SPACE"]
__version__ = "0.1.0"
