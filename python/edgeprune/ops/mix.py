"""Masked mixing as torch custom ops: edgeprune::mix, edgeprune::mix_backward, edgeprune::mix_backward_.

Schemas (backend is a resolved name: torch | cpp | cuda | triton):
    mix(Tensor gates, Tensor delta, Tensor base, Tensor? prefix, str backend) -> Tensor out
        gates (R, P) float32 (float64 allowed with float64 delta), delta (W >= P, N), base (N,) or
        (R, N) in delta's dtype, prefix (R,) integer or None; out (R, N) in delta's dtype.
        Differentiable in gates, delta and base (delta's gradient has its full shape, zero rows >= P).
    mix_backward(Tensor grad_out, Tensor gates, Tensor delta, Tensor? prefix, bool delta_grad,
                 str backend) -> (Tensor grad_gates, Tensor grad_delta)
        The functional backward used by mix's autograd; grad_delta is empty unless delta_grad.
    mix_backward_(Tensor grad_out, Tensor gates, Tensor delta, Tensor(a!) grad_delta, Tensor? prefix,
                  str backend) -> Tensor grad_gates
        Mutates grad_delta: grad_delta[:P] += gates_masked^T @ grad_out, touching only the rows of
        writers with a nonzero gate. For callers that own one shared gradient buffer.
    mix_blocks(Tensor gates, Tensor[] blocks, Tensor base, str backend) -> Tensor out
        mix over delta = cat(blocks)[:P]: the functional form a compiled step traces. Autograd saves
        the blocks themselves (each is saved once however many readers read it) and its backward
        hands each block its share of the delta gradient.
Unread writers (all-zero gate column after prefix masking) get a zero gate gradient by definition.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .backends import BACKENDS


@torch.library.custom_op("edgeprune::mix", mutates_args=())
def mix_op(gates: Tensor, delta: Tensor, base: Tensor, prefix: Tensor | None, backend: str) -> Tensor:
    return BACKENDS[backend].mix_forward(gates, delta, base, prefix)


@mix_op.register_fake
def _(gates, delta, base, prefix, backend):
    return delta.new_empty(gates.shape[0], delta.shape[1])


@torch.library.custom_op("edgeprune::mix_backward", mutates_args=())
def mix_backward_op(grad_out: Tensor, gates: Tensor, delta: Tensor, prefix: Tensor | None, delta_grad: bool,
                    backend: str) -> tuple[Tensor, Tensor]:
    grad_delta = None
    if delta_grad:
        grad_delta = torch.empty_like(delta, memory_format=torch.contiguous_format)
        grad_delta[gates.shape[1]:].zero_()  # rows past P are never read: zero gradient
    grad_gates = BACKENDS[backend].mix_backward(grad_out, gates, delta, prefix, grad_delta, False)
    return grad_gates.to(gates.dtype), grad_delta if delta_grad else delta.new_empty(0)


@mix_backward_op.register_fake
def _(grad_out, gates, delta, prefix, delta_grad, backend):
    grad_delta = torch.empty_like(delta, memory_format=torch.contiguous_format) if delta_grad else delta.new_empty(0)
    return gates.new_empty(gates.shape), grad_delta


def mix_backward_accumulate(grad_out: Tensor, gates: Tensor, delta: Tensor, grad_delta: Tensor,
                            prefix: Tensor | None, backend: str) -> Tensor:
    """edgeprune::mix_backward_'s body; ops.mix_backward_ calls it directly when nothing is traced."""
    return BACKENDS[backend].mix_backward(grad_out, gates, delta, prefix, grad_delta, True).to(gates.dtype)


mix_backward_inplace_op = torch.library.custom_op("edgeprune::mix_backward_", mutates_args=("grad_delta",))(
    mix_backward_accumulate)


@mix_backward_inplace_op.register_fake
def _(grad_out, gates, delta, grad_delta, prefix, backend):
    return gates.new_empty(gates.shape)


@torch.library.custom_op("edgeprune::mix_blocks", mutates_args=())
def mix_blocks_op(gates: Tensor, blocks: list[Tensor], base: Tensor, backend: str) -> Tensor:
    return BACKENDS[backend].mix_forward(gates, _concat(blocks), base, None)


def _concat(blocks: list[Tensor]) -> Tensor:
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


@mix_blocks_op.register_fake
def _(gates, blocks, base, backend):
    return blocks[0].new_empty(gates.shape[0], blocks[0].shape[1])


def _setup_blocks(ctx, inputs, output):
    gates, blocks, base, backend = inputs
    ctx.save_for_backward(gates, *blocks)
    ctx.backend = backend


def _blocks_backward(ctx, grad_out):
    gates, *blocks = ctx.saved_tensors
    grad_gates, grad_delta = torch.ops.edgeprune.mix_backward(grad_out, gates, _concat(blocks), None, True,
                                                              ctx.backend)
    grad_blocks = list(grad_delta.split([b.shape[0] for b in blocks]))
    grad_base = grad_out.sum(0, dtype=torch.promote_types(grad_out.dtype, torch.float32)).to(grad_out.dtype)
    return grad_gates, grad_blocks, grad_base, None


mix_blocks_op.register_autograd(_blocks_backward, setup_context=_setup_blocks)


def _setup_context(ctx, inputs, output):
    gates, delta, base, prefix, backend = inputs
    ctx.save_for_backward(gates, delta, prefix)
    ctx.base_rows = base.dim() == 2
    ctx.backend = backend


def _backward(ctx, grad_out):
    gates, delta, prefix = ctx.saved_tensors
    need_gates, need_delta, need_base = ctx.needs_input_grad[:3]
    grad_gates = grad_delta = grad_base = None
    if need_gates or need_delta:
        grad_gates, grad_delta = torch.ops.edgeprune.mix_backward(grad_out, gates, delta, prefix, need_delta,
                                                                  ctx.backend)
    if need_base:
        grad_base = grad_out if ctx.base_rows else grad_out.sum(0, dtype=torch.promote_types(grad_out.dtype,
                                                                                              torch.float32))
        grad_base = grad_base.to(grad_out.dtype)
    return (grad_gates if need_gates else None, grad_delta if need_delta else None, grad_base, None, None)


mix_op.register_autograd(_backward, setup_context=_setup_context)
