"""Workarounds for bugs of the Triton interpreter (TRITON_INTERPRET=1, the kernels on CPU) in the
Triton versions edgeprune admits, applied around each launch by epkernels._utils.launch.

Integer loop bounds (triton-lang/triton#9171, Triton 3.6.x and older, fixed in 3.7.0): the
interpreter turns a tensor used as a `range` bound into a Python int with `int(handle.data)`, and
every scalar there is a one-element array of shape (1,). numpy 2.4 and newer refuse to convert an
array that is not 0-d ("only 0-dimensional arrays can be converted to Python scalars"), so every
kernel with a loop whose trip count is computed at run time fails (the mix kernels' writer chunks
and N tiles). Around our launches the interpreter's tensor conversion takes the one element
instead; compiled kernels (GPU) are untouched.
"""
from __future__ import annotations

import contextlib
import re

import triton


def release(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a version string such as "3.6.0", "3.7.0+git1a2b" or "2.5.0rc1"."""
    numbers = re.match(r"\d+(?:\.\d+)*", version)
    if numbers is None:
        raise ValueError(f"not a version: {version!r}")
    parts = tuple(int(p) for p in numbers.group(0).split("."))
    return (parts + (0, 0, 0))[:3]


# The first release whose interpreter converts one-element arrays itself.
INDEX_FIXED_IN = (3, 7, 0)


def needs_index_fix(triton_version: str) -> bool:
    """Whether this Triton's interpreter has the loop-bound conversion bug (any numpy: the fix is
    harmless where numpy still converts one-element arrays)."""
    return release(triton_version) < INDEX_FIXED_IN


def _scalar_index(tensor) -> int:
    """tensor.__index__ for the interpreter: the single element of a (1,)-shaped scalar."""
    data = tensor.handle.data
    return int(data.item()) if data.size == 1 else int(data)


@contextlib.contextmanager
def fixed_interpreter():
    """Within the block, interpreted launches convert scalar loop bounds correctly (see above)."""
    if not needs_index_fix(triton.__version__):
        yield
        return
    from triton.runtime import interpreter

    # The interpreter installs tensor.__index__ through _patch_lang_tensor at the start of every
    # launch and removes it at the end; ours is installed right after, through the same scope.
    original = interpreter._patch_lang_tensor

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", _scalar_index)

    interpreter._patch_lang_tensor = patch_lang_tensor
    try:
        yield
    finally:
        interpreter._patch_lang_tensor = original
