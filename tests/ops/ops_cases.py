"""Shared helpers for the ops tests: which device each backend runs on, skips with the backend's
own reasons, random inputs with unread rows poisoned, and the tolerance rule."""
from __future__ import annotations

import pytest
import torch
from edgeprune.ops import reference as ref
from edgeprune.ops.backends import BACKENDS

ALL_BACKENDS = ("torch", "cpp", "triton", "cuda")
HAS_CUDA = torch.cuda.is_available()


def device_for(backend: str) -> torch.device:
    """cpp on CPU; cuda on CUDA; triton compiled on CUDA if there is one, else interpreted on CPU."""
    if backend == "cuda":
        return torch.device("cuda")
    if backend == "triton" and HAS_CUDA and not BACKENDS["triton"].interpreted():
        return torch.device("cuda")
    return torch.device("cpu")


def require(backend: str, op: str, dtype: torch.dtype) -> torch.device:
    """The device to test `backend` on, or skip with the backend's reasons."""
    device = device_for(backend)
    if device.type == "cuda" and not HAS_CUDA:
        pytest.skip("no CUDA device")
    reasons = BACKENDS[backend].not_supported_reasons(op, device, dtype)
    if reasons:
        pytest.skip("; ".join(reasons))
    return device


def mix_inputs(R, P, W, N, dtype, device, *, prefix="random", zero_cols=True, base_rows=False, seed=0,
               poison=float("nan")):
    """gates (R, P) float32 with some all-zero columns; delta (W, N) whose rows that must never be
    read (rows >= P and writers with an all-zero gate column after prefix masking) hold `poison`."""
    gen = torch.Generator().manual_seed(seed)
    gates = torch.rand(R, P, generator=gen) + 0.05
    if zero_cols and P:
        gates[:, 1::3] = 0
    pre = None
    if prefix == "random":
        pre = torch.randint(0, P + 1, (R,), generator=gen)
    elif prefix == "zero":
        pre = torch.zeros(R, dtype=torch.long)
    delta = torch.randn(W, N, generator=gen).to(dtype)
    masked = torch.where(ref._prefix_mask(gates, pre), gates, 0)
    unread = torch.ones(W, dtype=torch.bool)
    unread[:P] = ~(masked != 0).any(0)
    delta[unread] = poison
    base = torch.randn((R, N) if base_rows else (N,), generator=gen).to(dtype)
    to = {"device": device}
    return gates.to(**to), delta.to(**to), base.to(**to), (pre.to(**to) if pre is not None else None), unread.to(**to)


# Tolerance rule: a backend's error against the float64 reference may be at most
# K times the error of the PyTorch reference run in the same dtype, plus a floor for the case
# where that error is zero (exact inputs). float64 is compared with a fixed tight tolerance.
K = 2.0
FLOOR = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-3}


def assert_close_to_reference(out, ref64, ref_same_dtype, dtype, what=""):
    out, ref64 = out.double().cpu(), ref64.double().cpu()
    assert torch.isfinite(out).all(), f"{what}: non-finite values"
    err = (out - ref64).abs().max().item() if out.numel() else 0.0
    base_err = (ref_same_dtype.double().cpu() - ref64).abs().max().item() if out.numel() else 0.0
    scale = max(1.0, ref64.abs().max().item() if out.numel() else 1.0)
    bound = K * base_err + FLOOR[dtype] * scale
    assert err <= bound, f"{what}: error {err:.3g} > {bound:.3g} (reference in {dtype}: {base_err:.3g})"
