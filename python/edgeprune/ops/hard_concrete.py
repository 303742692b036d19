"""Hard-concrete gates as torch custom ops: edgeprune::hard_concrete and its backward.

Schemas (backend is a resolved name):
    hard_concrete(Tensor log_alpha, int seed, int offset, float eps, str backend) -> Tensor z
    hard_concrete_backward(Tensor grad_z, Tensor log_alpha, int seed, int offset, float eps,
                           str backend) -> Tensor grad_log_alpha
The noise of element i is Philox(seed, offset + i) (ops/reference.uniform_reference), generated
inside the kernel in forward and again in backward: autograd saves log_alpha and three numbers.
seed and offset must lie in [0, 2**63).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .backends import BACKENDS


@torch.library.custom_op("edgeprune::hard_concrete", mutates_args=())
def hard_concrete_op(log_alpha: Tensor, seed: int, offset: int, eps: float, backend: str) -> Tensor:
    return BACKENDS[backend].hard_concrete_forward(log_alpha, seed, offset, eps)


@hard_concrete_op.register_fake
def _(log_alpha, seed, offset, eps, backend):
    return torch.empty_like(log_alpha, memory_format=torch.contiguous_format)


@torch.library.custom_op("edgeprune::hard_concrete_backward", mutates_args=())
def hard_concrete_backward_op(grad_z: Tensor, log_alpha: Tensor, seed: int, offset: int, eps: float,
                              backend: str) -> Tensor:
    return BACKENDS[backend].hard_concrete_backward(grad_z, log_alpha, seed, offset, eps)


@hard_concrete_backward_op.register_fake
def _(grad_z, log_alpha, seed, offset, eps, backend):
    return torch.empty_like(log_alpha, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    log_alpha, seed, offset, eps, backend = inputs
    ctx.save_for_backward(log_alpha)
    ctx.rng = (seed, offset, eps, backend)


def _backward(ctx, grad_z):
    (log_alpha,) = ctx.saved_tensors
    seed, offset, eps, backend = ctx.rng
    return torch.ops.edgeprune.hard_concrete_backward(grad_z, log_alpha, seed, offset, eps, backend), None, None, \
        None, None


hard_concrete_op.register_autograd(_backward, setup_context=_setup_context)
