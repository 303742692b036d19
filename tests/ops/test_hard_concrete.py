"""Hard-concrete gates: every backend against the reference, and the RNG's statistics."""
import math

import pytest
import torch
from edgeprune import ops
from edgeprune.ops import reference as ref
from edgeprune.ops.constants import EPS
from ops_cases import ALL_BACKENDS, require


def _reference(log_alpha, seed, offset, eps=EPS):
    la = log_alpha.detach().cpu()
    u = ref.uniform_reference(la.numel(), seed, offset, eps).to(la.dtype).view_as(la)
    return ref.hard_concrete_reference(la, u), u


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("seed,offset", [(0, 0), (1, 1), (12345, 2**33 + 7), (2**62 + 3, 999)])
def test_matches_reference(backend, dtype, seed, offset):
    device = require(backend, "hard_concrete", dtype)
    log_alpha = (torch.randn(37, 29, dtype=dtype) * 3).to(device).requires_grad_()
    z = ops.hard_concrete(log_alpha, seed, offset, EPS, backend=backend)
    z_ref, u = _reference(log_alpha, seed, offset)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(z.detach().cpu(), z_ref, rtol=0, atol=tol)
    grad_z = torch.randn_like(log_alpha)
    z.backward(grad_z)
    expected = ref.hard_concrete_backward_reference(grad_z.cpu(), log_alpha.detach().cpu(), u)
    torch.testing.assert_close(log_alpha.grad.cpu(), expected, rtol=0, atol=10 * tol)
    assert (log_alpha.grad.cpu()[(z_ref == 0) | (z_ref == 1)] == 0).all(), "no gradient through the clamp"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_same_seed_and_offset_same_gates(backend):
    device = require(backend, "hard_concrete", torch.float32)
    log_alpha = torch.randn(1000, device=device)
    a = ops.hard_concrete(log_alpha, 7, 100, backend=backend)
    b = ops.hard_concrete(log_alpha, 7, 100, backend=backend)
    assert torch.equal(a, b)
    # Element i uses counter offset + i: shifting the offset shifts the stream (to rounding:
    # vectorised math may take another path for another length).
    c = ops.hard_concrete(log_alpha[10:], 7, 110, backend=backend)
    torch.testing.assert_close(a[10:], c, rtol=0, atol=1e-6)
    assert not torch.equal(a, ops.hard_concrete(log_alpha, 8, 100, backend=backend))


def _corr(a, b):
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return (a * b).sum().item() / math.sqrt((a * a).sum().item() * (b * b).sum().item())


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_different_offsets_and_seeds_are_independent(backend):
    device = require(backend, "hard_concrete", torch.float32)
    n = 8192
    log_alpha = torch.zeros(n, device=device)
    base = ops.hard_concrete(log_alpha, 3, 0, backend=backend).cpu()
    for seed, offset in [(3, n), (3, 1), (4, 0), (2**40, 0)]:
        other = ops.hard_concrete(log_alpha, seed, offset, backend=backend).cpu()
        assert abs(_corr(base, other)) < 5 / math.sqrt(n), (seed, offset)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_clamp_probabilities_match_closed_forms(backend):
    """P(z = 0) = sigmoid(beta ln(1/11) - log_alpha); P(z = 1) = sigmoid(log_alpha - beta ln 11).

    z = 0 iff s <= -l / (r - l) = 1/12, and z = 1 iff s >= (1 - l) / (r - l) = 11/12, where
    s = sigmoid((logit u + log_alpha) / beta) and logit u is standard logistic.
    """
    device = require(backend, "hard_concrete", torch.float32)
    n = 1 << 15
    beta = ref.BETA
    for k, a in enumerate((-1.0, 0.0, 2.5)):
        z = ops.hard_concrete(torch.full((n,), a, device=device), 11, k * n, backend=backend).cpu()
        p0 = 1 / (1 + math.exp(-(beta * math.log(1 / 11) - a)))
        p1 = 1 / (1 + math.exp(-(a - beta * math.log(11))))
        for observed, p in (((z == 0).double().mean().item(), p0), ((z == 1).double().mean().item(), p1)):
            assert abs(observed - p) < 5 * math.sqrt(p * (1 - p) / n), (a, observed, p)
    torch.testing.assert_close(ops.expected_l0(torch.tensor([0.0, 2.5])),
                               1 - torch.sigmoid(beta * ref.LOG_RATIO - torch.tensor([0.0, 2.5])))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_backward_saves_nothing_gate_sized(backend):
    """Autograd keeps log_alpha itself and nothing else: the noise is regenerated."""
    device = require(backend, "hard_concrete", torch.float32)
    log_alpha = torch.randn(64, 33, device=device, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        z = ops.hard_concrete(log_alpha, 5, 6, backend=backend)
    assert len(saved) == 1 and saved[0].data_ptr() == log_alpha.data_ptr()
    assert sum(t.numel() * t.element_size() for t in saved) == log_alpha.numel() * 4
    z.sum().backward()
    assert log_alpha.grad is not None


@pytest.mark.parametrize("backend", ["torch", "cpp", "triton", "cuda"])
def test_hard_concrete_gradcheck_float64(backend):
    device = require(backend, "hard_concrete", torch.float64)
    log_alpha = torch.tensor([-2.0, -0.3, 0.0, 0.4, 1.1, 3.0], dtype=torch.float64, device=device)
    log_alpha.requires_grad_()
    torch.autograd.gradcheck(lambda la: ops.hard_concrete(la, 21, 4, backend=backend), (log_alpha,))


def test_every_backend_uses_the_one_set_of_constants():
    """ops/constants.py holds them; the Triton kernels name the same values, and the C++/CUDA kernels
    (csrc/philox.h) are checked numerically by the backend-against-reference tests above, which the
    reference computes from ops/constants.py."""
    pytest.importorskip("triton")
    from epkernels import hard_concrete as triton_hc
    from edgeprune.ops import constants
    assert (triton_hc.LEFT, triton_hc.RIGHT, triton_hc.BETA) == (constants.LEFT, constants.RIGHT, constants.BETA)
