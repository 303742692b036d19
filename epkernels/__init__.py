"""Triton kernels for edgeprune: plain functions over tensors, no autograd, no model knowledge.

Importing this package is cheap; `epkernels.mix` and `epkernels.hard_concrete` import Triton.
TRITON_INTERPRET=1 must be set before those modules are imported for the kernels to run on CPU
tensors (the flag is read when the @triton.jit decorator runs).
"""


def default_launches() -> list:
    """Every kernel configuration the launchers pick at default block sizes (epkernels._utils.LaunchConfig)."""
    from . import hard_concrete, mix
    return mix.default_launches() + hard_concrete.default_launches()
