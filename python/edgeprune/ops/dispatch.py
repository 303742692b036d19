"""Which backend runs an op: an explicit argument, else EDGEPRUNE_BACKEND, else the device's default.

Default: triton for CUDA tensors (then the CUDA C++ kernels, then torch); the C++ kernels for
CPU tensors when edgeprune._C is built, else torch. A forced backend that cannot run the inputs
raises Unsupported (a NotImplementedError) listing its reasons; nothing falls back silently.
"""
from __future__ import annotations

import os

import torch

from ..errors import Unsupported, UserError
from .backends import BACKENDS, Backend

ENV_VAR = "EDGEPRUNE_BACKEND"
PRIORITY = {"cuda": ("triton", "cuda", "torch"), "cpu": ("cpp", "torch")}


def choose(op: str, device: torch.device, dtype: torch.dtype, backend: str | None = None) -> Backend:
    """The backend that runs `op` ("mix" or "hard_concrete") on tensors of this device and dtype.

    backend: a name from BACKENDS, or None / "auto" for EDGEPRUNE_BACKEND, else the default.
    """
    source = "backend argument"
    if backend is None:
        backend, source = os.environ.get(ENV_VAR) or None, f"{ENV_VAR}"
    if backend not in (None, "auto"):
        if backend not in BACKENDS:
            raise UserError(f"unknown edgeprune backend {backend!r} (from the {source}); choose from "
                            f"{', '.join(BACKENDS)} or auto")
        reasons = BACKENDS[backend].not_supported_reasons(op, device, dtype)
        if reasons:
            raise Unsupported(f"edgeprune backend {backend!r} (from the {source}) cannot run {op} on "
                              f"{device.type} {str(dtype).removeprefix('torch.')}: " + "; ".join(reasons))
        return BACKENDS[backend]
    for candidate in PRIORITY.get(device.type, ("torch",)):
        if not BACKENDS[candidate].not_supported_reasons(op, device, dtype):
            return BACKENDS[candidate]
    return BACKENDS["torch"]


def report(op: str, device: torch.device, dtype: torch.dtype) -> dict[str, list[str]]:
    """Every backend's reasons against (op, device, dtype); an empty list means it can run."""
    return {name: b.not_supported_reasons(op, device, dtype) for name, b in BACKENDS.items()}
