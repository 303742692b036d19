"""Small shared helpers for the Triton launchers: interpreter detection, launch sizing, and one
launch function that can record what it launches (for the ahead-of-time compile check)."""
from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass

import torch
import triton

from ._interpreter import fixed_interpreter

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


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation type: float64 for float64 inputs, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------ launches and their record

_POINTEE = {torch.float32: "fp32", torch.float64: "fp64", torch.float16: "fp16", torch.bfloat16: "bf16",
            torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8",
            torch.bool: "u1"}


def triton_type(value) -> str:
    """The signature type Triton's launcher gives an argument: pointers by dtype, integers by range."""
    if isinstance(value, torch.Tensor):
        return "*" + _POINTEE[value.dtype]
    if isinstance(value, bool):
        return "u1"
    if isinstance(value, int):
        if -2**31 <= value < 2**31:
            return "i32"
        return "i64" if value < 2**63 else "u64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for {type(value).__name__}")


@dataclass(frozen=True)
class LaunchConfig:
    """What a launch compiles: the kernel, its runtime signature, constexprs, warps and stages.

    Launches with equal configs run the same binary, up to what Triton specialises on argument
    values (16-byte alignment, integers divisible by 16 or equal to 1), which is not recorded.
    """
    kernel: object  # the @triton.jit function
    signature: tuple  # ((argument, Triton type), ...) for the runtime arguments, in order
    constexprs: tuple  # ((name, value), ...) in the kernel's argument order
    num_warps: int
    num_stages: int

    @property
    def name(self) -> str:
        return self.kernel.__name__


@dataclass
class _Recorder:
    launches: list
    dry_run: bool


_RECORDER: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar("epkernels_recorder", default=None)


@contextlib.contextmanager
def record_launches(dry_run: bool = False):
    """Collects a LaunchConfig for every launch in the block (a list, yielded).

    dry_run: record without launching; with meta tensors this enumerates what the launchers pick
    without a device (see default_launches).
    """
    rec = _Recorder([], dry_run)
    token = _RECORDER.set(rec)
    try:
        yield rec.launches
    finally:
        _RECORDER.reset(token)


def launch(kernel, grid, args: dict, constexprs: dict, num_warps: int, num_stages: int) -> None:
    """kernel[grid](**args, **constexprs, ...), recorded when a recorder is active."""
    rec = _RECORDER.get()
    if rec is not None:
        order = {name: i for i, name in enumerate(kernel.arg_names)}
        rec.launches.append(LaunchConfig(
            kernel, tuple((k, triton_type(v)) for k, v in sorted(args.items(), key=lambda kv: order[kv[0]])),
            tuple(sorted(constexprs.items(), key=lambda kv: order[kv[0]])), num_warps, num_stages))
        if rec.dry_run:
            return
    with fixed_interpreter() if INTERPRETED else contextlib.nullcontext():
        kernel[grid](**args, **constexprs, num_warps=num_warps, num_stages=num_stages)


def unique(configs) -> list:
    """Configs without repeats, in first-seen order."""
    return list(dict.fromkeys(configs))
