"""The four implementations of edgeprune's ops, described as data (xformers-style).

Each backend states the devices and dtypes it supports and, for given inputs, the reasons it
cannot run them; `dispatch.select` picks the first backend without reasons or explains why a
forced one cannot run. Every backend implements the same four kernels-level functions:

    mix_forward(gates, delta, base, prefix) -> out (R, N), delta's dtype
    mix_backward(grad_out, gates, delta, prefix, grad_delta, accumulate) -> grad_gates (R, P)
        grad_delta None: not computed; accumulate: add into the active rows of grad_delta[:P],
        else overwrite grad_delta[:P] (rows of unread writers become 0). Rows >= P untouched.
    hard_concrete_forward(log_alpha, seed, offset, eps) -> z
    hard_concrete_backward(grad_z, log_alpha, seed, offset, eps) -> grad_log_alpha
"""
from __future__ import annotations

import importlib.util
import os
import sys
from typing import ClassVar

import torch

from .. import _ext
from . import reference as _ref

MIX, HARD_CONCRETE = "mix", "hard_concrete"
_F16, _BF16, _F32, _F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


class Backend:
    name: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = ()
    dtypes: ClassVar[dict[str, frozenset]] = {}

    def unavailable_reason(self) -> str:
        """Why this backend cannot run at all here ('' when it can)."""
        return ""

    def not_supported_reasons(self, op: str, device: torch.device, dtype: torch.dtype) -> list[str]:
        reasons = []
        why = self.unavailable_reason()
        if why:
            reasons.append(why)
        if self.devices and device.type not in self.devices:
            reasons.append(f"runs on {'/'.join(self.devices)} tensors, not {device.type}")
        if dtype not in self.dtypes[op]:
            supported = ", ".join(sorted(str(d).removeprefix("torch.") for d in self.dtypes[op]))
            reasons.append(f"{op} supports {supported}, not {str(dtype).removeprefix('torch.')}")
        return reasons


class TorchBackend(Backend):
    """The readable PyTorch reference (ops/reference.py): any device, any float dtype."""
    name = "torch"
    dtypes: ClassVar[dict[str, frozenset]] = {MIX: frozenset({_F16, _BF16, _F32, _F64}), HARD_CONCRETE: frozenset({_F16, _BF16, _F32, _F64})}

    def mix_forward(self, gates, delta, base, prefix):
        return _ref.mix_reference(gates, delta, base, prefix)

    def mix_backward(self, grad_out, gates, delta, prefix, grad_delta, accumulate):
        if grad_delta is not None and accumulate:
            return _ref.mix_backward_reference(grad_out, gates, delta, prefix, grad_delta)[0]
        grad_gates, rows = _ref.mix_backward_reference(grad_out, gates, delta, prefix)
        if grad_delta is not None:
            grad_delta[:gates.shape[1]] = rows
        return grad_gates

    def _uniform(self, log_alpha, seed, offset, eps):
        u = _ref.uniform_reference(log_alpha.numel(), seed, offset, eps, log_alpha.device)
        return u.to(log_alpha.dtype).view_as(log_alpha)

    def hard_concrete_forward(self, log_alpha, seed, offset, eps):
        return _ref.hard_concrete_reference(log_alpha, self._uniform(log_alpha, seed, offset, eps)).contiguous()

    def hard_concrete_backward(self, grad_z, log_alpha, seed, offset, eps):
        u = self._uniform(log_alpha, seed, offset, eps)
        return _ref.hard_concrete_backward_reference(grad_z, log_alpha, u).contiguous()


class _ExtensionBackend(Backend):
    """Kernels in edgeprune._C: fused C++ loops on CPU, CUDA kernels on GPU (same op names)."""

    def mix_forward(self, gates, delta, base, prefix):
        return _ext.ops().mix_forward(gates, delta, base, prefix)

    def mix_backward(self, grad_out, gates, delta, prefix, grad_delta, accumulate):
        if grad_delta is not None and grad_delta.dtype != delta.dtype:  # e.g. a float32 buffer for bf16 delta
            rows = torch.zeros_like(delta)
            grad_gates = _ext.ops().mix_backward(grad_out, gates, delta, prefix, rows, False)
            P = gates.shape[1]
            if accumulate:
                grad_delta[:P] += rows[:P]
            else:
                grad_delta[:P] = rows[:P]
            return grad_gates
        return _ext.ops().mix_backward(grad_out, gates, delta, prefix, grad_delta, accumulate)

    def hard_concrete_forward(self, log_alpha, seed, offset, eps):
        return _ext.ops().hard_concrete_forward(log_alpha, seed, offset, eps)

    def hard_concrete_backward(self, grad_z, log_alpha, seed, offset, eps):
        return _ext.ops().hard_concrete_backward(grad_z, log_alpha, seed, offset, eps)


class CppBackend(_ExtensionBackend):
    name = "cpp"
    devices = ("cpu",)
    dtypes: ClassVar[dict[str, frozenset]] = {MIX: frozenset({_BF16, _F32, _F64}), HARD_CONCRETE: frozenset({_F32, _F64})}

    def unavailable_reason(self) -> str:
        return _ext.reason()


class CudaBackend(_ExtensionBackend):
    name = "cuda"
    devices = ("cuda",)
    dtypes: ClassVar[dict[str, frozenset]] = {MIX: frozenset({_F16, _BF16, _F32, _F64}), HARD_CONCRETE: frozenset({_F32, _F64})}

    def unavailable_reason(self) -> str:
        if not _ext.available():
            return _ext.reason()
        if not _ext.cuda_built():
            return ("edgeprune._C was built without CUDA kernels (they are compiled only when torch is a CUDA "
                    "build and a CUDA toolkit is found at install time)")
        return ""


class TritonBackend(Backend):
    """epkernels: compiled on CUDA devices; on CPU only under TRITON_INTERPRET=1 (tests)."""
    name = "triton"
    devices = ("cuda", "cpu")
    dtypes: ClassVar[dict[str, frozenset]] = {MIX: frozenset({_F16, _BF16, _F32, _F64}), HARD_CONCRETE: frozenset({_F32, _F64})}

    def unavailable_reason(self) -> str:
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed (pip install triton)"
        return ""

    @staticmethod
    def interpreted() -> bool:
        """Whether epkernels runs (or, once imported, will run) under the Triton interpreter."""
        utils = sys.modules.get("epkernels._utils")
        if utils is not None:
            return utils.INTERPRETED
        return os.environ.get("TRITON_INTERPRET", "0") == "1"

    def not_supported_reasons(self, op, device, dtype):
        reasons = super().not_supported_reasons(op, device, dtype)
        if device.type == "cpu" and not self.interpreted():
            reasons.append("CPU tensors need the Triton interpreter: set TRITON_INTERPRET=1 before epkernels "
                           "is imported")
        return reasons

    @staticmethod
    def _precision() -> str:
        """float32 dot precision: ieee (default), tf32 or tf32x3 via EDGEPRUNE_TRITON_PRECISION."""
        return os.environ.get("EDGEPRUNE_TRITON_PRECISION", "ieee")

    def mix_forward(self, gates, delta, base, prefix):
        from epkernels import mix
        return mix.mix_forward(gates, delta, base, prefix, precision=self._precision())

    def mix_backward(self, grad_out, gates, delta, prefix, grad_delta, accumulate):
        from epkernels import mix
        return mix.mix_backward(grad_out, gates, delta, prefix, grad_delta, accumulate, precision=self._precision())

    def hard_concrete_forward(self, log_alpha, seed, offset, eps):
        from epkernels import hard_concrete
        return hard_concrete.hard_concrete_forward(log_alpha, seed, offset, eps)

    def hard_concrete_backward(self, grad_z, log_alpha, seed, offset, eps):
        from epkernels import hard_concrete
        return hard_concrete.hard_concrete_backward(grad_z, log_alpha, seed, offset, eps)


BACKENDS: dict[str, Backend] = {b.name: b for b in (TritonBackend(), CudaBackend(), CppBackend(), TorchBackend())}
