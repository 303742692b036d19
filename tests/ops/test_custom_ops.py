"""torch.library.opcheck on every registered op, for every backend available here."""
import edgeprune.ops  # noqa: F401  (registers torch.ops.edgeprune.*)
import pytest
import torch
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
def test_mix_blocks_equals_mix_over_the_concatenation(backend):
    """edgeprune::mix_blocks (the compiled step's read) passes opcheck, and its output and gradients
    equal a float64 reference over cat(blocks), each block getting its rows' gradient."""
    device = require(backend, "mix", torch.float32)
    gates, delta, base, _, _ = mix_inputs(4, 7, 7, 24, torch.float32, device, prefix=None, poison=0.0)
    blocks = [b.clone().requires_grad_() for b in delta.split([3, 1, 3])]
    gates.requires_grad_()
    base.requires_grad_()
    torch.library.opcheck(torch.ops.edgeprune.mix_blocks.default, (gates, blocks, base, backend))
    grad_out = torch.randn(4, 24, device=device)
    torch.ops.edgeprune.mix_blocks(gates, blocks, base, backend).backward(grad_out)
    leaves = [t.detach().double().requires_grad_() for t in (gates, delta, base)]
    (leaves[2] + leaves[0] @ leaves[1]).backward(grad_out.double())
    torch.testing.assert_close(gates.grad.double(), leaves[0].grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([b.grad for b in blocks]).double(), leaves[1].grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(base.grad.double(), leaves[2].grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_opcheck_hard_concrete(backend):
    device = require(backend, "hard_concrete", torch.float32)
    log_alpha = torch.randn(4, 7, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.edgeprune.hard_concrete.default, (log_alpha, 3, 5, 1e-6, backend))
    torch.library.opcheck(torch.ops.edgeprune.hard_concrete_backward.default,
                          (torch.randn(4, 7, device=device), log_alpha.detach(), 3, 5, 1e-6, backend))


def test_ops_trace_under_torch_compile():
    """Dynamo traces the public functions in one graph (the backend choice becomes a constant)."""
    from edgeprune import ops

    def step(g, d, b, la):
        return (ops.mix(g * ops.hard_concrete(la, 3, 4), d, b) ** 2).sum()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    g, d, la = torch.rand(3, 5), torch.randn(6, 8), torch.randn(3, 5)
    b = torch.randn(8)
    leaves = [[t.clone().requires_grad_() for t in (g, d, la)] for _ in range(2)]
    for fn, (g_, d_, la_) in zip((compiled, step), leaves):
        fn(g_, d_, b, la_).backward()
    for a, e in zip(*leaves):
        torch.testing.assert_close(a.grad, e.grad)
