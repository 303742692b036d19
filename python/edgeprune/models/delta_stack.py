"""The write-once delta stack (docs/design.md "The core: one write-once delta stack").

One preallocated (W, N) buffer holds delta_w = x_w - c_w for every writer, with N = B * S * D.
Each writer fills its rows once; readers mix the valid prefix. Autograd keeps the buffer once
(not the 2L + 1 stack copies of the reference), and the backward of every read accumulates its
delta gradient into one shared (W, N) gradient buffer, in place.

Why in-place writes are safe: a read only ever touches rows that are final (writers run in index
order and are written once), so the buffer can be held by the autograd functions without a
version check. The order of the gradient accumulation is made visible to autograd by an *order
handle*, an empty tensor threaded through every call: a write takes the current handle and
returns the next one, a read takes the current one. A write's backward, which hands grad[rows] to
the writer, therefore runs only after every read that could have accumulated into those rows has
run its backward. Callers pass the handle explicitly; the stack keeps no hidden ordering state.

A write of rows the forward has already written is a recomputation (activation checkpointing
re-runs a decoder layer in backward): it must repeat rows that exist, and leaves them as they are,
so readers recomputed in backward see exactly what the forward's readers saw, and rows whose
gradient later readers already accumulated never change.

A compiled step cannot trace that buffer: its writes mutate state outside the traced functions.
`BlockStack` is the functional form the compiler sees instead: each write keeps its rows as one
tensor (a block) and a read mixes the blocks before it through edgeprune::mix_blocks, whose
backward hands each block its gradient; autograd sums a block's gradients over its readers. The
blocks are saved once, as the buffer is; the price is a concatenation per read (a copy of the
prefix) and gradients summed per block rather than in place.
"""
from __future__ import annotations

import torch

from .. import ops
from ..errors import UserError


class DeltaStack:
    def __init__(self, num_writers: int, shape: tuple[int, ...], dtype: torch.dtype, device, backend=None):
        self.shape = tuple(shape)                      # (B, S, D) of one writer's output
        numel = 1
        for n in shape:
            numel *= n
        self.buffer = torch.empty(num_writers, numel, dtype=dtype, device=device)
        self.grad = None                               # (W, N), allocated by the first backward
        self.written = 0
        self.backend = backend

    def start(self) -> torch.Tensor:
        """The first order handle."""
        return torch.empty(0, device=self.buffer.device)

    def write(self, order: torch.Tensor, start: int, rows: torch.Tensor) -> torch.Tensor:
        """Fill rows [start, start + k) with `rows` (k, *shape); returns the next order handle.

        Writers come in index order. Rows below `written` are a recomputation: they are not rewritten.
        """
        k = rows.shape[0]
        if start < self.written:
            if start + k > self.written:
                raise RuntimeError(f"a recomputed layer wrote rows [{start}, {start + k}) but only rows < "
                                   f"{self.written} were written by the forward")
            return _Write.apply(self, start, rows, order, False)
        if start != self.written:
            raise RuntimeError(f"delta rows must be written in order: expected row {self.written}, got {start}")
        self.written = start + k
        return _Write.apply(self, start, rows, order, True)

    def read(self, order: torch.Tensor, gates: torch.Tensor, base: torch.Tensor,
             positions: torch.Tensor | None = None) -> torch.Tensor:
        """base + gates @ delta[:P] for P = gates.shape[-1]; (R, *shape) or, with positions, (R, M, D).

        base is shared by the R readers: shaped like one writer's output, or (M, D) with positions.
        positions: flat indices into the B * S tokens; only those tokens are read (the final read
        at the loss positions), so the unembedding and the mixing skip every other position.
        gates (G, R, P), without gradients: G gate sets, set g mixing the g-th of G equal blocks of
        the batch.
        """
        if gates.shape[-1] > self.written:
            raise RuntimeError(f"a reader of {gates.shape[-1]} writers ran before writer {self.written} was written")
        if gates.dim() == 3:
            out = read_sets(self.buffer[:gates.shape[-1]], self.shape, gates, base, positions)
        else:
            out = _Read.apply(self, gates, base, positions, order)
        return _reader_view(out, gates, self.shape, positions)

    def new_zeros(self, shape) -> torch.Tensor:
        return self.buffer.new_zeros(shape)

    def grad_buffer(self) -> torch.Tensor:
        if self.grad is None:
            self.grad = torch.zeros_like(self.buffer)
        return self.grad


class BlockStack:
    """The delta stack as a list of written blocks, for a traced (compiled) forward; same calls as
    DeltaStack. The order handle passes through unchanged: autograd orders functional reads itself."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, device, backend: str):
        self.shape, self.dtype, self.device, self.backend = tuple(shape), dtype, device, backend
        self.blocks: list[torch.Tensor] = []    # (k, N) each, in writer order
        self.written = 0

    def start(self) -> torch.Tensor:
        return torch.empty(0, device=self.device)

    def write(self, order: torch.Tensor, start: int, rows: torch.Tensor) -> torch.Tensor:
        if start + rows.shape[0] <= self.written:
            # A recomputation (a checkpointed layer rerun in backward): the forward's block stays, as
            # its readers hold it; the rerun only restores what the layer's own backward needs.
            return order
        if start != self.written:
            raise RuntimeError(f"delta rows must be written in order: expected row {self.written}, got {start}")
        self.blocks.append(rows.reshape(rows.shape[0], -1))
        self.written += rows.shape[0]
        return order

    def _prefix(self, count: int) -> list[torch.Tensor]:
        """The blocks holding writers [0, count): a reader's prefix ends at a block's end."""
        out, rows = [], 0
        for block in self.blocks:
            if rows == count:
                break
            out.append(block)
            rows += block.shape[0]
        if rows != count:
            raise RuntimeError(f"a reader of {count} writers does not end at a written block ({self.written} written)")
        return out

    def read(self, order: torch.Tensor, gates: torch.Tensor, base: torch.Tensor,
             positions: torch.Tensor | None = None) -> torch.Tensor:
        blocks = self._prefix(gates.shape[-1])
        if positions is not None:
            D = self.shape[-1]
            blocks = [b.view(b.shape[0], -1, D)[:, positions].reshape(b.shape[0], -1) for b in blocks]
        if not blocks:  # the first layer's readers when the embeddings are not writers
            out = base.reshape(1, -1).expand(gates.shape[-2], -1)
        elif gates.dim() == 3:
            out = read_sets(torch.cat(blocks), self.shape, gates, base, None)
        else:
            out = ops.mix_blocks(gates, blocks, base.reshape(-1), backend=self.backend)
        return _reader_view(out, gates, self.shape, positions)

    def new_zeros(self, shape) -> torch.Tensor:
        return torch.zeros(shape, dtype=self.dtype, device=self.device)


def _reader_view(out: torch.Tensor, gates: torch.Tensor, shape, positions) -> torch.Tensor:
    return out.view(gates.shape[-2], *(shape if positions is None else (positions.numel(), shape[-1])))


def read_sets(delta: torch.Tensor, shape, gates: torch.Tensor, base: torch.Tensor,
              positions: torch.Tensor | None) -> torch.Tensor:
    """The read of delta (P, N) under G gate sets, (R, N): one batched product over the batch's
    G blocks, no autograd."""
    if torch.is_grad_enabled() and (gates.requires_grad or base.requires_grad):
        raise UserError("gate sets (edges of shape (G, num_edges)) are for forwards without gradients: run them "
                        "under torch.no_grad(), with gates that do not require a gradient")
    G, R, P = gates.shape
    if P == 0:  # the first layer's readers when the embeddings are not writers: the base alone
        return base.reshape(1, -1).expand(R, -1)
    if positions is not None:
        D = shape[-1]
        delta = delta.view(P, -1, D)[:, positions].reshape(P, -1)
    acc = torch.float64 if delta.dtype == torch.float64 else torch.float32
    blocks = delta.view(P, G, -1).transpose(0, 1).to(acc)                    # (G, P, N / G)
    out = torch.bmm(gates.to(acc), blocks) + base.reshape(G, 1, -1).to(acc)  # (G, R, N / G)
    return out.transpose(0, 1).reshape(R, -1).to(delta.dtype)


class _Write(torch.autograd.Function):
    @staticmethod
    def forward(ctx, stack, start, rows, order, copy):
        k = rows.shape[0]
        if copy:
            stack.buffer[start:start + k].copy_(rows.reshape(k, -1))
        ctx.stack, ctx.start, ctx.k, ctx.rows_shape = stack, start, k, rows.shape
        return order.new_empty(0)

    @staticmethod
    def backward(ctx, _):
        stack = ctx.stack
        grad = None
        if ctx.needs_input_grad[2]:
            g = stack.grad[ctx.start:ctx.start + ctx.k] if stack.grad is not None else None
            grad = torch.zeros(ctx.rows_shape, dtype=stack.buffer.dtype, device=stack.buffer.device) if g is None \
                else g.view(ctx.rows_shape)
        return None, None, grad, stack.buffer.new_empty(0, dtype=torch.float32), None


class _Read(torch.autograd.Function):
    @staticmethod
    def forward(ctx, stack, gates, base, positions, order):
        if positions is None:
            delta = stack.buffer
        else:
            # Gather only the tokens this reader needs, (P, M * D): small, the loss positions.
            P, D = gates.shape[1], stack.shape[-1]
            delta = stack.buffer[:P].view(P, -1, D)[:, positions].reshape(P, -1)
        with torch.no_grad():
            out = ops.mix(gates, delta, base.reshape(-1), backend=stack.backend)
        ctx.stack, ctx.positions, ctx.base_shape = stack, positions, base.shape
        ctx.delta = delta if positions is not None else None
        ctx.save_for_backward(gates)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (gates,) = ctx.saved_tensors
        stack = ctx.stack
        grad_out = grad_out.reshape(gates.shape[0], -1).contiguous()
        if ctx.positions is None:
            grad_gates = ops.mix_backward_(grad_out, gates, stack.buffer, stack.grad_buffer(), backend=stack.backend)
        else:
            P, D = gates.shape[1], stack.shape[-1]
            rows = torch.zeros_like(ctx.delta)
            grad_gates = ops.mix_backward_(grad_out, gates, ctx.delta, rows, backend=stack.backend)
            stack.grad_buffer()[:P].view(P, -1, D).index_add_(1, ctx.positions, rows.view(P, -1, D))
        grad_base = grad_out.sum(0).reshape(ctx.base_shape) if ctx.needs_input_grad[2] else None
        return None, grad_gates, grad_base, None, stack.buffer.new_empty(0, dtype=torch.float32)
