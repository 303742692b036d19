"""edgeprune's ops: masked mixing over the delta stack and hard-concrete gates.

Public functional API (every backend implements the same contract; see ops/reference.py):
    mix(gates, delta, base, prefix=None, backend=None) -> out            differentiable
    mix_blocks(gates, blocks, base, backend=None) -> out                  differentiable; delta = cat(blocks)
    mix_backward_(grad_out, gates, delta, grad_delta, prefix=None, backend=None) -> grad_gates
                                                                         accumulates into grad_delta
    hard_concrete(log_alpha, seed, offset, eps=EPS, backend=None) -> z   differentiable, u regenerated
    expected_l0(log_alpha), zero_probability(log_alpha, eps), soft_mask(log_alpha)

backend: None (EDGEPRUNE_BACKEND, else the default for the device), "auto", "torch", "cpp",
"cuda" or "triton"; `choose` picks it. The ops are registered as torch custom ops
(torch.ops.edgeprune.*), so autograd, torch.compile and FSDP see ordinary ops; see ops/mix.py and
ops/hard_concrete.py. Under torch.compile pass a backend name (the choice reads the environment
and probes the extension, which a trace should not): with a name the traced call is the op alone.
"""
from __future__ import annotations

import torch

from . import reference as _ref
from .backends import BACKENDS
from .constants import EPS
from .dispatch import ENV_VAR, choose, report
from .hard_concrete import hard_concrete_op as _hard_concrete_op
from .mix import mix_backward_accumulate as _mix_backward_accumulate
from .mix import mix_blocks_op as _mix_blocks_op
from .mix import mix_op as _mix_op

__all__ = ["BACKENDS", "ENV_VAR", "choose", "expected_l0", "hard_concrete", "mix", "mix_backward_", "mix_blocks", "report",
           "soft_mask", "zero_probability"]


def _name(op: str, tensor: torch.Tensor, backend: str | None) -> str:
    if backend in BACKENDS and torch.compiler.is_compiling():
        return backend  # checked when it was chosen; tracing the checks would break the graph
    return choose(op, tensor.device, tensor.dtype, backend).name


def _eager(*tensors) -> bool:
    """Call the kernel directly: not being traced, and no autograd graph to record.

    The custom-op machinery costs tens of microseconds a call, a few milliseconds of host time in
    a GPT-2 small step; the delta stack (autograd functions of its own) needs none of it.
    """
    return not torch.compiler.is_compiling() and not (
        torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))


def mix(gates, delta, base, prefix=None, backend=None):
    """out (R, N) = base + sum_{w < prefix[r]} gates[r, w] delta[w], accumulated in float32."""
    name = _name("mix", delta, backend)
    if _eager(gates, delta, base):
        return BACKENDS[name].mix_forward(gates, delta, base, prefix)
    return _mix_op(gates, delta, base, prefix, name)


def mix_blocks(gates, blocks, base, backend=None):
    """mix over delta = cat(blocks), each block (k, N): the functional read of a compiled step."""
    return _mix_blocks_op(gates, list(blocks), base, _name("mix", blocks[0], backend))


def mix_backward_(grad_out, gates, delta, grad_delta, prefix=None, backend=None):
    """Gate gradient (R, P); adds gates_masked^T @ grad_out into grad_delta[:P] in place."""
    name = _name("mix", delta, backend)
    if _eager(grad_out, gates, delta, grad_delta):
        return _mix_backward_accumulate(grad_out, gates, delta, grad_delta, prefix, name)
    return torch.ops.edgeprune.mix_backward_(grad_out, gates, delta, grad_delta, prefix, name)


def hard_concrete(log_alpha, seed: int, offset, eps: float = EPS, backend=None):
    """Sampled gates z with noise Philox(seed, offset + i); the backward regenerates the noise.

    offset an int: the op of the chosen backend. offset a 0-dim int64 tensor (a compiled step, whose
    graph must not change with the step): the same noise and gates in traceable torch arithmetic,
    which the compiler fuses into one kernel with its backward.
    """
    if isinstance(offset, torch.Tensor):
        u = _ref.uniform_at(log_alpha.numel(), int(seed), offset, float(eps))
        return _ref.hard_concrete_reference(log_alpha, u.to(log_alpha.dtype).view_as(log_alpha))
    return _hard_concrete_op(log_alpha, int(seed), int(offset), float(eps), _name("hard_concrete", log_alpha, backend))


# Cheap elementwise closed forms: plain torch (autograd and torch.compile handle them well).
expected_l0 = _ref.expected_l0_reference
zero_probability = _ref.zero_probability_reference
soft_mask = _ref.soft_mask_reference
