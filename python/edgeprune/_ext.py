"""Loads edgeprune._C (the C++/CUDA extension) once, and says why when it cannot.

A missing or broken extension never breaks `import edgeprune`: `available()` is False,
`reason()` says what went wrong, and using an op raises that reason (xformers-style stub).
Set EDGEPRUNE_MORE_DETAILS=1 to get the full traceback of a failed load.
"""
from __future__ import annotations

import importlib
import os
import traceback

from .errors import RunError

_state: dict = {}


def _load() -> dict:
    if not _state:
        try:
            importlib.import_module("edgeprune._C")
            _state["ok"] = True
            _state["reason"] = ""
        except Exception as e:  # noqa: BLE001  (ImportError, or an undefined symbol from a torch mismatch)
            _state["ok"] = False
            _state["reason"] = (f"edgeprune._C failed to load ({type(e).__name__}: {e}); build it with "
                                "`pip install --no-build-isolation .` against the installed torch")
            if os.environ.get("EDGEPRUNE_MORE_DETAILS") == "1":
                _state["reason"] += "\n" + traceback.format_exc()
    return _state


def available() -> bool:
    """True when the C++ extension loaded (its CPU kernels are always compiled in)."""
    return _load()["ok"]


def reason() -> str:
    """Why the extension is unavailable ('' when it loaded)."""
    return _load()["reason"]


def cuda_built() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    return available() and bool(ops().built_with_cuda())


def build_info() -> str:
    """setup.py's record of the build: CUDA kernels built for which architectures, or skipped and why."""
    try:
        from ._build_info import CUDA_KERNELS
    except ImportError:
        return "no record (setup.py writes edgeprune/_build_info.py when it builds edgeprune._C)"
    return CUDA_KERNELS


def ops():
    """torch.ops.edgeprune_C, the extension's low-level ops; raises the load failure otherwise."""
    if not available():
        raise RunError(reason())
    import torch
    return torch.ops.edgeprune_C
