"""Plain PyTorch references for edgeprune's two ops: the ground truth for every backend.

Readable first, fast never. They work in any dtype (float64 included) and on any device.

Masked mixing over the delta stack (design.md "The core"):
    out[r] = base + sum_{w < prefix[r]} gates[r, w] * delta[w]
with gates (R, P) float32, delta (W >= P, N), base (N,) or (R, N); accumulation in float32 (or
float64 when the inputs are float64), the result in delta's dtype. A writer whose gate column is
all zero is never read, and its gate gradient is defined as zero: in training such zeros come from
the hard-concrete clamp, whose own gradient is zero, so the composed gradient is exact.

Hard-concrete gates (method.md 3): with u = eps + (1 - 2 eps) * U01,
    s = sigmoid((log u - log(1 - u) + log_alpha) / beta),   z = clamp(s (r - l) + l, 0, 1).
U01 comes from Philox-4x32-10 keyed by the seed, counter = offset + i (the same generator as
Triton's tl.randint), so a draw is a pure function of (seed, offset, i).
"""
from __future__ import annotations

import numpy as np
import torch

from .constants import BETA, EPS, LEFT, LOG_RATIO, RIGHT, SOFT_MASK_FACTOR


# ----------------------------------------------------------------------------------- mixing

def _active_columns(gates: torch.Tensor) -> torch.Tensor:
    return (gates != 0).any(dim=0)


def _prefix_mask(gates: torch.Tensor, prefix: torch.Tensor | None) -> torch.Tensor:
    if prefix is None:
        return torch.ones_like(gates, dtype=torch.bool)
    cols = torch.arange(gates.shape[1], device=gates.device)
    return cols[None, :] < prefix.to(gates.device)[:, None]


def mix_reference(gates, delta, base, prefix=None):
    """out = base + (gates masked to each reader's prefix) @ delta[:P], never reading zero columns."""
    R, P = gates.shape
    acc = torch.float64 if delta.dtype == torch.float64 else torch.float32
    z = torch.where(_prefix_mask(gates, prefix), gates, 0).to(acc)
    active = _active_columns(z)
    rows = delta[:P][active].to(acc)                     # only the rows with a nonzero gate
    out = base.to(acc).expand(R, -1) + z[:, active] @ rows
    return out.to(delta.dtype)


def mix_backward_reference(grad_out, gates, delta, prefix=None, grad_delta=None):
    """Gate gradient (R, P) in gates' dtype; the delta gradient for rows < P.

    With grad_delta given (W >= P rows), the delta gradient is added into grad_delta[:P] in place
    and None is returned for it; otherwise a new (P, N) tensor is returned.
    """
    R, P = gates.shape
    acc = torch.float64 if delta.dtype == torch.float64 else torch.float32
    mask = _prefix_mask(gates, prefix)
    z = torch.where(mask, gates, 0).to(acc)
    active = _active_columns(z)
    g = grad_out.to(acc)
    grad_gates = torch.zeros(R, P, dtype=acc, device=gates.device)
    grad_gates[:, active] = g @ delta[:P][active].to(acc).T
    grad_gates = torch.where(mask, grad_gates, 0).to(gates.dtype)
    contribution = torch.zeros(P, g.shape[1], dtype=acc, device=g.device)
    contribution[active] = z[:, active].T @ g
    if grad_delta is None:
        return grad_gates, contribution.to(delta.dtype)
    grad_delta[:P] += contribution.to(grad_delta.dtype)
    return grad_gates, None


# -------------------------------------------------------------------------------- the RNG

_PHILOX_KEY_A, _PHILOX_KEY_B = 0x9E3779B9, 0xBB67AE85
_PHILOX_ROUND_A, _PHILOX_ROUND_B = 0xD2511F53, 0xCD9E8D57
_M32 = np.uint64(0xFFFFFFFF)


def philox_uint32(seed: int, counters: np.ndarray, rounds: int = 10) -> np.ndarray:
    """First output word of Philox-4x32 for counter (c, c >> 32, 0, 0) and key (seed lo, seed hi)."""
    c = counters.astype(np.uint64)
    c0, c1 = c & _M32, c >> np.uint64(32)
    c2 = np.zeros_like(c0)
    c3 = np.zeros_like(c0)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64((seed >> 32) & 0xFFFFFFFF)
    A, B = np.uint64(_PHILOX_ROUND_A), np.uint64(_PHILOX_ROUND_B)
    for _ in range(rounds):
        pa, pb = A * c0, B * c2                      # exact: both factors < 2**32
        c0, c1, c2, c3 = ((pb >> np.uint64(32)) ^ c1 ^ k0, pb & _M32,
                          (pa >> np.uint64(32)) ^ c3 ^ k1, pa & _M32)
        k0 = (k0 + np.uint64(_PHILOX_KEY_A)) & _M32
        k1 = (k1 + np.uint64(_PHILOX_KEY_B)) & _M32
    return c0.astype(np.uint32)


def _mulhilo32(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The high and low 32-bit words of a * b (a < 2**32 a constant, b an int64 tensor < 2**32),
    without an int64 overflow: b is split in 16-bit halves."""
    b_hi, b_lo = b >> 16, b & 0xFFFF
    lo_part = a * b_lo                                   # < 2**48
    mid = a * b_hi + (lo_part >> 16)                     # < 2**48 + 2**32
    return mid >> 16, ((mid & 0xFFFF) << 16) | (lo_part & 0xFFFF)


def philox_uint32_torch(seed: int, counters: torch.Tensor, rounds: int = 10) -> torch.Tensor:
    """philox_uint32 in int64 tensor arithmetic (counters < 2**63): traceable, so a compiled step
    fuses the noise into its own kernel and the counter offset can be a device tensor."""
    c0, c1 = counters & 0xFFFFFFFF, counters >> 32
    c2 = c3 = torch.zeros_like(c0)
    k0, k1 = seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF
    for _ in range(rounds):
        hi_a, lo_a = _mulhilo32(_PHILOX_ROUND_A, c0)
        hi_b, lo_b = _mulhilo32(_PHILOX_ROUND_B, c2)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + _PHILOX_KEY_A) & 0xFFFFFFFF
        k1 = (k1 + _PHILOX_KEY_B) & 0xFFFFFFFF
    return c0


def uniform_from_bits(bits: torch.Tensor, eps: float) -> torch.Tensor:
    """u in [eps, 1 - eps] from Philox words (int64 holding uint32): their top 24 bits, scaled."""
    u01 = (bits >> 8).to(torch.float32) * (2.0 ** -24)
    return eps + (1 - 2 * eps) * u01


def uniform_at(n: int, seed: int, offset: torch.Tensor, eps: float) -> torch.Tensor:
    """uniform_reference with the counter offset a 0-dim int64 tensor (on the noise's device)."""
    counters = offset + torch.arange(n, device=offset.device, dtype=torch.int64)
    return uniform_from_bits(philox_uint32_torch(seed, counters), eps)


def uniform_reference(n: int, seed: int, offset: int, eps: float, device=None) -> torch.Tensor:
    """u_i in [eps, 1 - eps] for i < n: the top 24 bits of Philox(seed, offset + i), scaled."""
    bits = philox_uint32(seed, np.arange(offset, offset + n, dtype=np.uint64))
    return uniform_from_bits(torch.from_numpy(bits.astype(np.int64)), eps).to(device)


# ------------------------------------------------------------------------- hard concrete

def hard_concrete_reference(log_alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Differentiable in log_alpha; zero gradient where the clamp is active."""
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    return torch.clamp(s * (RIGHT - LEFT) + LEFT, 0.0, 1.0)


def hard_concrete_backward_reference(grad_z, log_alpha, u):
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
    z = s * (RIGHT - LEFT) + LEFT
    inside = (z > 0) & (z < 1)
    return torch.where(inside, grad_z * (RIGHT - LEFT) * s * (1 - s) / BETA, 0)


def expected_l0_reference(log_alpha):
    """P(z != 0) = sigmoid(log_alpha - beta ln(-l/r)): the closed-form expected L0 per gate."""
    return torch.sigmoid(log_alpha - BETA * LOG_RATIO)


def zero_probability_reference(log_alpha, eps: float = EPS):
    """P(z == 0) = cdf(0), clamped to [eps, 1 - eps] as the reference does."""
    return torch.sigmoid(BETA * LOG_RATIO - log_alpha).clamp(eps, 1 - eps)


def soft_mask_reference(log_alpha):
    """The deterministic soft mask sigmoid(0.8 log_alpha / beta) = sigmoid(1.2 log_alpha)."""
    return torch.sigmoid(log_alpha * SOFT_MASK_FACTOR / BETA)
