"""Masked mixing: every backend against the float64 reference, forward and backward.

Tolerances: see ops_cases.assert_close_to_reference (at most 2x the same-dtype PyTorch error).
Rows that must never be read hold NaN in every case, so a stray read shows up as a NaN.
"""
import pytest
import torch
from edgeprune import ops
from edgeprune.ops import reference as ref
from ops_cases import ALL_BACKENDS, assert_close_to_reference, mix_inputs, require

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
# (R readers, P writers read, W rows in delta, N columns, prefix, base rows): awkward sizes,
# one reader, no writers, a zero prefix everywhere, thousands of writers.
SHAPES = {
    "odd": (5, 20, 23, 37, "random", False),
    "many_readers": (37, 70, 70, 300, None, True),
    "one_reader": (1, 3, 5, 10, None, False),
    "no_writers": (3, 0, 2, 17, None, False),
    "zero_prefix": (4, 9, 9, 21, "zero", False),
    "thousands_of_writers": (3, 2100, 2101, 16, "random", False),
}


def _reference(gates, delta, base, prefix, grad_out):
    """(out, grad_gates, grad_rows) in float64 and in the inputs' dtype, on CPU."""
    cpu = [t.cpu() if t is not None else None for t in (gates, delta, base, prefix, grad_out)]
    g, d, b, p, go = cpu
    f64 = [t.double() if t is not None and t.is_floating_point() else t for t in cpu]
    out64 = ref.mix_reference(*f64[:4])
    out = ref.mix_reference(g, d, b, p)
    gg64, rows64 = ref.mix_backward_reference(f64[4], f64[0], f64[1], p)
    gg, rows = ref.mix_backward_reference(go, g, d, p)
    return (out64, gg64, rows64), (out, gg, rows)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_mix_forward_backward(backend, dtype, shape):
    device = require(backend, "mix", dtype)
    R, P, W, N, prefix, base_rows = SHAPES[shape]
    gates, delta, base, pre, unread = mix_inputs(R, P, W, N, dtype, device, prefix=prefix, base_rows=base_rows)
    grad_out = torch.randn(R, N).to(dtype).to(device)
    (out64, gg64, rows64), (out_l, gg_l, rows_l) = _reference(gates, delta, base, pre, grad_out)

    g, d, b = (t.clone().requires_grad_() for t in (gates, delta, base))
    out = ops.mix(g, d, b, pre, backend=backend)
    assert out.dtype == dtype and out.shape == (R, N)
    assert_close_to_reference(out, out64, out_l, dtype, "out")
    out.backward(grad_out)
    assert g.grad.dtype == torch.float32
    assert_close_to_reference(g.grad, gg64, gg_l, dtype, "grad gates")
    assert_close_to_reference(d.grad[:P], rows64, rows_l, dtype, "grad delta")
    assert (d.grad[P:] == 0).all() and (d.grad[unread] == 0).all()
    expected_base = grad_out if base_rows else grad_out.double().sum(0)
    assert_close_to_reference(b.grad, expected_base, grad_out if base_rows else grad_out.float().sum(0).to(dtype),
                              dtype, "grad base")

    # The in-place accumulating backward touches the rows of read writers only.
    grad_delta = torch.randn(W, N).to(dtype).to(device)
    grad_delta[unread] = float("nan")
    before = grad_delta.clone()
    grad_gates = ops.mix_backward_(grad_out, gates, delta, grad_delta, pre, backend=backend)
    assert_close_to_reference(grad_gates, gg64, gg_l, dtype, "mix_backward_ grad gates")
    read = ~unread
    assert_close_to_reference(grad_delta[:P][read[:P]], before[:P][read[:P]].double().cpu() + rows64[read[:P].cpu()],
                              before[:P][read[:P]].cpu() + rows_l[read[:P].cpu()], dtype, "accumulated grad delta")
    assert torch.isnan(grad_delta[unread]).all()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_unread_rows_are_never_read(backend):
    """NaN in rows >= P and in writers whose gate column is all zero changes nothing."""
    device = require(backend, "mix", torch.float32)
    gates, delta, base, pre, unread = mix_inputs(6, 40, 48, 50, torch.float32, device, prefix="random")
    assert unread[:40].any() and unread[40:].all()
    clean = torch.where(unread[:, None], torch.zeros_like(delta), delta)
    g1, d1 = gates.clone().requires_grad_(), delta.clone().requires_grad_()
    g2, d2 = gates.clone().requires_grad_(), clean.clone().requires_grad_()
    grad_out = torch.randn(6, 50, device=device)
    ops.mix(g1, d1, base, pre, backend=backend).backward(grad_out)
    ops.mix(g2, d2, base, pre, backend=backend).backward(grad_out)
    for a, b in ((g1.grad, g2.grad), (d1.grad, d2.grad)):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    masked = torch.where(ref._prefix_mask(gates, pre), gates, 0)
    zero_cols = (masked == 0).all(0)
    assert (g1.grad[:, zero_cols] == 0).all(), "an unread writer's gate gradient is defined as 0"


@pytest.mark.parametrize("backend", ["torch", "cpp", "triton", "cuda"])
def test_mix_gradcheck_float64(backend):
    device = require(backend, "mix", torch.float64)
    gen = torch.Generator().manual_seed(1)
    gates = (torch.rand(3, 4, generator=gen, dtype=torch.float64) + 0.1).to(device).requires_grad_()
    delta = torch.randn(5, 6, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    base = torch.randn(6, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    prefix = torch.tensor([4, 2, 3], device=device)
    torch.autograd.gradcheck(lambda g, d, b: ops.mix(g, d, b, prefix, backend=backend), (gates, delta, base))
    base_rows = torch.randn(3, 6, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    torch.autograd.gradcheck(lambda g, d, b: ops.mix(g, d, b, backend=backend), (gates, delta, base_rows))


@pytest.mark.parametrize("isa", ["avx512", "avx2", "generic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_cpp_instruction_sets(isa, dtype, monkeypatch):
    """Each compiled instruction-set variant of the C++ kernels agrees with the reference."""
    require("cpp", "mix", dtype)
    from edgeprune import _ext
    monkeypatch.setenv("EDGEPRUNE_CPU_ISA", isa)
    try:
        _ext.ops().cpu_isa()
    except RuntimeError as e:
        pytest.skip(str(e))
    # N spans full strips, a partial one and a scalar tail; K crosses the 256-row block.
    gates, delta, base, pre, unread = mix_inputs(11, 300, 301, 3 * 64 + 37, dtype, torch.device("cpu"))
    grad_out = torch.randn(11, 3 * 64 + 37).to(dtype)
    (out64, gg64, rows64), (out_l, gg_l, rows_l) = _reference(gates, delta, base, pre, grad_out)
    assert_close_to_reference(ops.mix(gates, delta, base, pre, backend="cpp"), out64, out_l, dtype, "out")
    gd = torch.zeros_like(delta)
    gg = ops.mix_backward_(grad_out, gates, delta, gd, pre, backend="cpp")
    assert_close_to_reference(gg, gg64, gg_l, dtype, "grad gates")
    assert_close_to_reference(gd[:300][~unread[:300]], rows64[~unread[:300]], rows_l[~unread[:300]], dtype, "gd")


def test_triton_reader_groups_and_splits():
    """More readers than one block holds (several launches) and a split N reduction."""
    device = require("triton", "mix", torch.float32)
    from epkernels import mix as k
    gates, delta, base, pre, unread = mix_inputs(37, 50, 52, 70, torch.float32, device, base_rows=True)
    blocks = {"block_r": 16, "block_w": 16, "block_n": 16}
    for skip_empty in (False, True):
        out = k.mix_forward(gates, delta, base, pre, skip_empty=skip_empty, **blocks)
        torch.testing.assert_close(out.cpu(), ref.mix_reference(gates.cpu(), delta.cpu(), base.cpu(), pre.cpu()),
                                   rtol=1e-5, atol=1e-5)
    grad_out = torch.randn(37, 70, device=device)
    for accumulate in (True, False):
        gd = torch.zeros_like(delta)
        gg = k.mix_backward(grad_out, gates, delta, pre, gd, accumulate, splits=3, **blocks)
        rg, rows = ref.mix_backward_reference(grad_out.cpu(), gates.cpu(), delta.cpu(), pre.cpu())
        torch.testing.assert_close(gg.cpu(), rg, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gd[:50].cpu()[~unread[:50].cpu()], rows[~unread[:50].cpu()], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_float32_gradient_buffer_for_bf16_delta(backend):
    """mix_backward_ accumulates into a buffer of another dtype (e.g. float32 for bf16 delta)."""
    device = require(backend, "mix", torch.bfloat16)
    gates, delta, _, pre, unread = mix_inputs(4, 12, 14, 40, torch.bfloat16, device)
    grad_out = torch.randn(4, 40).to(torch.bfloat16).to(device)
    grad_delta = torch.ones(14, 40, device=device)
    ops.mix_backward_(grad_out, gates, delta, grad_delta, pre, backend=backend)
    _, rows = ref.mix_backward_reference(grad_out.cpu().double(), gates.cpu().double(), delta.cpu().double(), pre.cpu())
    read = ~unread[:12].cpu()
    torch.testing.assert_close(grad_delta[:12].cpu()[read].double(), 1 + rows[read], rtol=2e-2, atol=2e-2)
    assert (grad_delta[unread] == 1).all()


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_autograd_keeps_only_the_inputs(backend):
    """mix saves its inputs for backward (delta by reference, never a copy) and nothing else."""
    device = require(backend, "mix", torch.float32)
    gates, delta, base, pre, _ = mix_inputs(3, 6, 8, 20, torch.float32, device, poison=0.0)
    gates.requires_grad_()
    delta.requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        ops.mix(gates, delta, base, pre, backend=backend)
    assert {t.data_ptr() for t in saved} <= {gates.data_ptr(), delta.data_ptr(), pre.data_ptr()}
