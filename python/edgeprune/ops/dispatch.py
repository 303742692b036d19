"""Which backend runs an op: an explicit argument, else EDGEPRUNE_BACKEND, else the default.

Default: triton for CUDA tensors (then the CUDA C++ kernels, then torch); the C++ kernels for
CPU tensors when edgeprune._C is built, else torch. A forced backend that cannot run the inputs
raises NotImplementedError listing its reasons; nothing falls back silently.
"""
from __future__ import annotations

import os

import torch

from .backends import BACKENDS, Backend

ENV_VAR = "EDGEPRUNE_BACKEND"
PRIORITY = {"cuda": ("triton", "cuda", "torch"), "cpu": ("cpp", "torch")}


def requested(backend: str | None) -> str | None:
    """The forced backend name, or None for the default choice ('auto' also means default)."""
    name = backend if backend is not None else os.environ.get(ENV_VAR) or None
    if name in (None, "auto"):
        return None
    if name not in BACKENDS:
        source = "backend=" if backend is not None else f"{ENV_VAR}="
        raise ValueError(f"unknown edgeprune backend {source}{name!r}; choose from {', '.join(BACKENDS)} or auto")
    return name


def select(op: str, device: torch.device, dtype: torch.dtype, backend: str | None = None) -> Backend:
    name = requested(backend)
    if name is not None:
        reasons = BACKENDS[name].not_supported_reasons(op, device, dtype)
        if reasons:
            source = "backend argument" if backend is not None else f"{ENV_VAR}={name}"
            raise NotImplementedError(f"edgeprune backend {name!r} (from the {source}) cannot run {op} on "
                                      f"{device.type} {str(dtype).removeprefix('torch.')}: " + "; ".join(reasons))
        return BACKENDS[name]
    for candidate in PRIORITY.get(device.type, ("torch",)):
        if not BACKENDS[candidate].not_supported_reasons(op, device, dtype):
            return BACKENDS[candidate]
    return BACKENDS["torch"]


def report(op: str, device: torch.device, dtype: torch.dtype) -> dict[str, list[str]]:
    """Every backend's reasons against (op, device, dtype); an empty list means it can run."""
    return {name: b.not_supported_reasons(op, device, dtype) for name, b in BACKENDS.items()}
