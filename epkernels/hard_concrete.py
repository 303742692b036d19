"""Hard-concrete gates with in-kernel Philox noise: Triton kernels and launchers.

    u = eps + (1 - 2 eps) * U01,  U01 = top 24 bits of Philox-4x32-10(key=seed, counter=offset+i) / 2^24
    s = sigmoid((ln u - ln(1 - u) + log_alpha) / beta),   z = clamp(s (r - l) + l, 0, 1)

The noise is a pure function of (seed, offset, i), so the backward regenerates it instead of
storing it: nothing gate-sized is kept beyond log_alpha itself. The 64-bit counter is split into
the first two Philox words (low, high), the same layout as ops/reference.uniform_reference.
"""
from __future__ import annotations

import itertools

import torch
import triton
import triton.language as tl

from ._utils import check_device, launch, record_launches, unique

LEFT, RIGHT, BETA = -0.1, 1.1, 2.0 / 3.0
# The kernels read the constants above through these compile-time globals (folded into the code).
_LEFT = tl.constexpr(LEFT)
_STRETCH = tl.constexpr(RIGHT - LEFT)
_INV_BETA = tl.constexpr(1.0 / BETA)

BLOCK = 1024
# 4 elements a thread: at 8, float64 logs and sigmoids spilled with ptxas 13.4 (triton 3.9, sm_90).
NUM_WARPS, NUM_STAGES = 8, 1  # elementwise: no loop to pipeline


@triton.jit
def _stretched(la_ptr, seed, offset, numel, eps, pid, BLOCK: tl.constexpr):
    """Index mask, log_alpha (float32 or float64) and the stretched gate s (r - l) + l."""
    idx = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = idx < numel
    la = tl.load(la_ptr + idx, mask=ok, other=0.0)
    counter = offset.to(tl.int64) + idx
    lo = (counter & 0xFFFFFFFF).to(tl.uint32)
    hi = ((counter >> 32) & 0xFFFFFFFF).to(tl.uint32)
    zero = tl.zeros_like(lo)
    bits, _, _, _ = tl.philox(seed.to(tl.int64), lo, hi, zero, zero)
    u01 = (bits >> 8).to(tl.float32) * (1.0 / 16777216.0)
    u = (eps + (1.0 - 2.0 * eps) * u01).to(la.dtype)
    s = tl.sigmoid((tl.log(u) - tl.log(1.0 - u) + la) * _INV_BETA)
    return idx, ok, s, s * _STRETCH + _LEFT


@triton.jit(do_not_specialize=["seed", "offset", "numel"])
def _hard_concrete_fwd_kernel(la_ptr, z_ptr, seed, offset, numel, eps, BLOCK: tl.constexpr):
    idx, ok, s, stretched = _stretched(la_ptr, seed, offset, numel, eps, tl.program_id(0), BLOCK)
    z = tl.minimum(tl.maximum(stretched, 0.0), 1.0)
    tl.store(z_ptr + idx, z.to(z_ptr.dtype.element_ty), mask=ok)


@triton.jit(do_not_specialize=["seed", "offset", "numel"])
def _hard_concrete_bwd_kernel(la_ptr, gz_ptr, gla_ptr, seed, offset, numel, eps, BLOCK: tl.constexpr):
    idx, ok, s, stretched = _stretched(la_ptr, seed, offset, numel, eps, tl.program_id(0), BLOCK)
    gz = tl.load(gz_ptr + idx, mask=ok, other=0.0).to(s.dtype)
    inside = (stretched > 0.0) & (stretched < 1.0)
    g = tl.where(inside, gz * (_STRETCH * _INV_BETA) * s * (1.0 - s), 0.0)
    tl.store(gla_ptr + idx, g.to(gla_ptr.dtype.element_ty), mask=ok)


def hard_concrete_forward(log_alpha: torch.Tensor, seed: int, offset: int, eps: float = 1e-6,
                          block: int = BLOCK) -> torch.Tensor:
    """z, shaped like log_alpha; element i uses Philox counter offset + i (row-major order)."""
    check_device(log_alpha)
    la = log_alpha.contiguous()
    z = torch.empty_like(la)
    n = la.numel()
    if n:
        launch(_hard_concrete_fwd_kernel, (triton.cdiv(n, block),),
               {"la_ptr": la, "z_ptr": z, "seed": seed, "offset": offset, "numel": n, "eps": eps},
               {"BLOCK": block}, NUM_WARPS, NUM_STAGES)
    return z


def hard_concrete_backward(grad_z: torch.Tensor, log_alpha: torch.Tensor, seed: int, offset: int,
                           eps: float = 1e-6, block: int = BLOCK) -> torch.Tensor:
    """d z / d log_alpha * grad_z, regenerating the noise; zero where the clamp is active."""
    check_device(grad_z, log_alpha)
    la = log_alpha.contiguous()
    gz = grad_z.to(la.dtype).contiguous()
    out = torch.empty_like(la)
    n = la.numel()
    if n:
        launch(_hard_concrete_bwd_kernel, (triton.cdiv(n, block),),
               {"la_ptr": la, "gz_ptr": gz, "gla_ptr": out, "seed": seed, "offset": offset, "numel": n, "eps": eps},
               {"BLOCK": block}, NUM_WARPS, NUM_STAGES)
    return out


def default_launches() -> list:
    """Every LaunchConfig the launchers pick at the default block (see mix.default_launches):
    float32 and float64 gates, seeds and offsets below and above 2**31 (32- or 64-bit arguments)."""
    with record_launches(dry_run=True) as rec:
        for dtype, seed, offset in itertools.product((torch.float32, torch.float64), (0, 2**40), (0, 2**40)):
            la = torch.empty(3, dtype=dtype, device="meta")
            hard_concrete_forward(la, seed, offset)
            hard_concrete_backward(la, la, seed, offset)
        rec[:] = unique(rec)
    return rec
