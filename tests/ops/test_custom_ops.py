"""torch.library.opcheck on every registered op, for every backend available here."""
import pytest
import torch

import edgeprune.ops  # noqa: F401  (registers torch.ops.edgeprune.*)
from ops_cases import ALL_BACKENDS, mix_inputs, require


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_opcheck_mix(backend):
    device = require(backend, "mix", torch.float32)
    gates, delta, base, pre, _ = mix_inputs(3, 5, 6, 20, torch.float32, device, poison=0.0)
    gates.requires_grad_()
    delta.requires_grad_()
    for prefix in (pre, None):
        torch.library.opcheck(torch.ops.edgeprune.mix.default, (gates, delta, base, prefix, backend))
    grad_out = torch.randn(3, 20, device=device)
    torch.library.opcheck(torch.ops.edgeprune.mix_backward.default,
                          (grad_out, gates.detach(), delta.detach(), pre, True, backend))
    grad_delta = torch.zeros_like(delta.detach())
    torch.library.opcheck(torch.ops.edgeprune.mix_backward_.default,
                          (grad_out, gates.detach(), delta.detach(), grad_delta, pre, backend))


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_opcheck_hard_concrete(backend):
    device = require(backend, "hard_concrete", torch.float32)
    log_alpha = torch.randn(4, 7, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.edgeprune.hard_concrete.default, (log_alpha, 3, 5, 1e-6, backend))
    torch.library.opcheck(torch.ops.edgeprune.hard_concrete_backward.default,
                          (torch.randn(4, 7, device=device), log_alpha.detach(), 3, 5, 1e-6, backend))
