"""Weight inheritance by function-preserving transforms (network morphisms)."""

from .transforms import (MORPH_KINDS, Morph, MorphError, Morphed, add_noise, apply_morph, children, deepen,
                         grow_kernel, widen_expand, widen_width)

__all__ = ["MORPH_KINDS", "Morph", "MorphError", "Morphed", "add_noise", "apply_morph", "children", "deepen",
           "grow_kernel", "widen_expand", "widen_width"]
