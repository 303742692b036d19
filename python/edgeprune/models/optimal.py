"""Optimal ablation (Li & Janson, NeurIPS 2024): each writer's ablated value is a learned constant.

A pruned edge carries c_w, a constant per writer and position, trained jointly with the gates
(its own learning rate, no weight decay, outside the sparsity penalty; edgeprune.training). The
constants start at mean ablation's values. They are kept where the record keeps them: the
embedding outputs, each head's context before the output projection (so a head's constant lies
in the space its outputs span, c_w = ctx_w W_O[h]) and each MLP's output. The residual streams a
record also holds, the readers' bases, are their prefix sums (docs/method.md 2.2), rebuilt from
the constants at every step so that the gradient reaches them.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Adapter
from .records import WriterRecord


class AblationConstants(nn.Module):
    """The learned constants, float32, per position: embeds (S, D), ctx (S, H, dh) and mlp (S, D) per layer."""

    def __init__(self, embeds: list[torch.Tensor], ctx: list[torch.Tensor], mlp: list[torch.Tensor]):
        super().__init__()
        self.embeds = nn.ParameterList([nn.Parameter(t.detach().float().clone()) for t in embeds])
        self.ctx = nn.ParameterList([nn.Parameter(t.detach().float().clone()) for t in ctx])
        self.mlp = nn.ParameterList([nn.Parameter(t.detach().float().clone()) for t in mlp])

    @classmethod
    def from_record(cls, record: WriterRecord) -> "AblationConstants":
        """Start at a record's first example (mean ablation's record holds one: the means)."""
        return cls([t[0] for t in record.embeds], [t[0] for t in record.ctx], [t[0] for t in record.mlp])

    @property
    def positions(self) -> int:
        return self.mlp[0].shape[0]

    def record(self, adapter: Adapter, seq_len: int | None = None) -> WriterRecord:
        """The WriterRecord of these constants (batch 1, the model's dtype), cut to seq_len positions."""
        S = seq_len or self.positions

        def cut(p):
            return p[:S].to(adapter.dtype)[None]
        embeds, ctxs, mlps = [cut(p) for p in self.embeds], [cut(p) for p in self.ctx], [cut(p) for p in self.mlp]
        resid = sum(embeds)
        pres, mids = [], []
        for layer, (ctx, out) in enumerate(zip(ctxs, mlps)):
            pres.append(resid)
            w_o, b_o = adapter.output_projection(layer)
            attn = torch.einsum("bshe,hed->bsd", ctx, w_o)
            attn = attn if b_o is None else attn + b_o
            mids.append(resid if adapter.parallel_residual else resid + attn)
            resid = resid + attn + out
        return WriterRecord(embeds, ctxs, mlps, pres, mids, resid)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat named tensors for a file: embeds.{i}, ctx.{layer}, mlp.{layer}."""
        out = {}
        for name in ("embeds", "ctx", "mlp"):
            out |= {f"{name}.{i}": p.detach().float().cpu().contiguous() for i, p in enumerate(getattr(self, name))}
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "AblationConstants":
        def group(name):
            return [tensors[f"{name}.{i}"] for i in range(sum(k.startswith(name + ".") for k in tensors))]
        return cls(group("embeds"), group("ctx"), group("mlp"))


__all__ = ["AblationConstants"]
