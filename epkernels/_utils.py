"""Small shared helpers for the Triton launchers: interpreter detection and launch sizing."""
from __future__ import annotations

import os

import torch
import triton

# Captured at import, like @triton.jit itself: setting the variable later has no effect.
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"


def check_device(*tensors: torch.Tensor) -> None:
    """CPU tensors only run under the interpreter; never touch the GPU driver on a CPU machine."""
    for t in tensors:
        if t is not None and t.device.type == "cpu" and not INTERPRETED:
            raise RuntimeError("epkernels got CPU tensors but Triton is compiled, not interpreted: set "
                               "TRITON_INTERPRET=1 before importing epkernels to run the kernels on CPU")


def target_programs(device: torch.device) -> int:
    """How many programs fill the device: a few waves of the SMs; tiny under the interpreter."""
    if device.type != "cuda":
        return 4
    return 4 * torch.cuda.get_device_properties(device).multi_processor_count


def pow2_at_least(n: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(max(int(n), 1)))


TL_ACC = {torch.float64: "float64"}


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation type: float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32
