"""The references themselves, against independent checks: explicit loops and a published test vector.

Every backend, torch included, is tested against ops/reference.py; these tests keep the torch
backend's cases from comparing the reference with itself.
"""
import math

import numpy as np
import pytest
import torch
from edgeprune import ops
from edgeprune.ops import reference as ref
from edgeprune.ops.constants import BETA, LEFT, RIGHT


def _loop_mix(gates, delta, base, prefix):
    R, P = gates.shape
    out = []
    for r in range(R):
        row = base[r].clone() if base.dim() == 2 else base.clone()
        for w in range(int(prefix[r])):
            row += gates[r, w] * delta[w]
        out.append(row)
    return torch.stack(out)


@pytest.mark.parametrize("base_rows", [False, True])
def test_torch_mix_matches_loops(base_rows):
    g = torch.Generator().manual_seed(0)
    R, P, W, N = 5, 7, 9, 4
    gates = torch.rand(R, P, generator=g, dtype=torch.float64)
    gates[:, 3] = 0  # a writer nobody reads
    delta = torch.randn(W, N, generator=g, dtype=torch.float64)
    base = torch.randn((R, N) if base_rows else (N,), generator=g, dtype=torch.float64)
    prefix = torch.tensor([0, 7, 3, 5, 6])
    grad_out = torch.randn(R, N, generator=g, dtype=torch.float64)
    gt, dt, bt = (t.clone().requires_grad_() for t in (gates, delta, base))
    out = ops.mix(gt, dt, bt, prefix, backend="torch")
    out.backward(grad_out)
    expected = _loop_mix(gates, delta, base, prefix)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # d out[r] / d gates[r, w] = delta[w] for w < prefix[r]; d out[r] / d delta[w] = gates[r, w] there
    grad_gates = torch.zeros(R, P, dtype=torch.float64)
    grad_delta = torch.zeros(W, N, dtype=torch.float64)
    for r in range(R):
        for w in range(int(prefix[r])):
            if gates[:, w].any():
                grad_gates[r, w] = grad_out[r] @ delta[w]
            grad_delta[w] += gates[r, w] * grad_out[r]
    torch.testing.assert_close(gt.grad.double(), grad_gates, rtol=0, atol=1e-12)
    torch.testing.assert_close(dt.grad, grad_delta, rtol=0, atol=1e-12)


def test_philox_known_answer():
    """Random123's published vector: Philox4x32-10, counter 0 and key 0 -> first word 0x6627e8d5."""
    assert int(ref.philox_uint32(0, np.array([0], dtype=np.uint64))[0]) == 0x6627E8D5


def test_torch_hard_concrete_matches_the_formula_per_gate():
    log_alpha = torch.tensor([-3.0, -0.5, 0.0, 0.7, 2.5, 9.0], dtype=torch.float64)
    z = ops.hard_concrete(log_alpha, 7, 11, 1e-6, backend="torch")
    u = ref.uniform_reference(6, 7, 11, 1e-6).double()
    for i, (la, ui) in enumerate(zip(log_alpha.tolist(), u.tolist())):
        s = 1 / (1 + math.exp(-(math.log(ui) - math.log(1 - ui) + la) / BETA))
        assert z[i].item() == pytest.approx(min(1.0, max(0.0, s * (RIGHT - LEFT) + LEFT)), abs=1e-12)
