"""Optimal ablation (Li & Janson, NeurIPS 2024): each writer's ablated value is a learned constant.

As Li and Janson define it by default (alestolfo/optimalablation, `ablation_type="oa"`):
- one constant per component, shared by every position (per_position=True: one per component and
  position, their "oa_specific" variant);
- a constant learns only through the edges that currently ablate it: a reader's input is
  sum_w z x_w + (1 - z) c_w, and c_w takes the gradient of the (1 - z) c_w term only where the
  sampled gate z < CLOSED; elsewhere the term is there with c_w held fixed (edgeprune: reader_term);
- the first position (the BOS token) is never ablated: every reader sees the clean run there
  (edgeprune: PrunableModel.forward puts the clean run's first position into the record);
- AdamW at lr 2e-3 without weight decay (TrainConfig.ablation_lr), the constants starting at
  their component's mean.

The constants are kept where a record keeps them: the embedding outputs, each head's context
before the output projection (so a head's constant lies in the space its outputs span,
c_w = ctx_w W_O[h]) and each MLP's output. The residual streams a record also holds, the readers'
bases, are their prefix sums (docs/method.md 2.2), rebuilt from the constants at every step.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Adapter
from .records import WriterRecord

CLOSED = 1e-3   # a gate below this ablates its edge for the gradient rule (Li and Janson's threshold)


class AblationConstants(nn.Module):
    """The learned constants, float32: embeds (D,), ctx (H, dh) and mlp (D,) per layer, each with a
    leading position dimension (S, ...) when per_position."""

    def __init__(self, embeds: list[torch.Tensor], ctx: list[torch.Tensor], mlp: list[torch.Tensor]):
        super().__init__()
        self.embeds = nn.ParameterList([nn.Parameter(t.detach().float().clone()) for t in embeds])
        self.ctx = nn.ParameterList([nn.Parameter(t.detach().float().clone()) for t in ctx])
        self.mlp = nn.ParameterList([nn.Parameter(t.detach().float().clone()) for t in mlp])

    @classmethod
    def from_record(cls, record: WriterRecord) -> "AblationConstants":
        """One constant per component and position, starting at a record's first example (mean
        ablation's record holds one: the means per position)."""
        return cls([t[0] for t in record.embeds], [t[0] for t in record.ctx], [t[0] for t in record.mlp])

    @classmethod
    def component_means(cls, parts) -> "AblationConstants":
        """One constant per component, starting at its mean over every example and real position after
        the first (which is never ablated). parts: (record, attention mask or None) per batch."""
        sums, count = None, 0.0
        for record, mask in parts:
            B, S = record.resid_final.shape[:2]
            w = torch.ones(B, S, dtype=torch.float64) if mask is None else mask.detach().double().cpu().clone()
            w[:, 0] = 0
            w = w.to(record.resid_final.device)

            def weighted(t):
                return (t.double() * w.view(B, S, *[1] * (t.dim() - 2))).sum((0, 1))
            part = {name: [weighted(t) for t in getattr(record, name)] for name in ("embeds", "ctx", "mlp")}
            sums = part if sums is None else {k: [a + b for a, b in zip(sums[k], v)] for k, v in part.items()}
            count += float(w.sum())
        count = max(count, 1.0)   # one-token inputs: nothing after the first position, start at zero
        return cls(*[[t / count for t in sums[name]] for name in ("embeds", "ctx", "mlp")])

    @property
    def per_position(self) -> bool:
        return self.mlp[0].dim() == 2

    @property
    def positions(self) -> float:
        """The longest input the constants cover (any length when there is one constant per component)."""
        return self.mlp[0].shape[0] if self.per_position else float("inf")

    def _values(self, name: str, adapter: Adapter, S: int, detach: bool) -> list[torch.Tensor]:
        """(1, S, ...) tensors in the model's dtype."""
        out = []
        for p in getattr(self, name):
            p = p.detach() if detach else p
            p = p[:S] if self.per_position else p.expand(S, *p.shape)
            out.append(p.to(adapter.dtype)[None])
        return out

    def record(self, adapter: Adapter, seq_len: int) -> WriterRecord:
        """The WriterRecord of these constants (batch 1, the model's dtype) over seq_len positions.

        Held fixed: the gradient reaches the constants only through reader_term, Li and Janson's rule.
        """
        S = seq_len
        embeds, ctxs, mlps = (self._values(name, adapter, S, detach=True) for name in ("embeds", "ctx", "mlp"))
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

    def reader_term(self, adapter: Adapter, graph, seq_len: int):
        """Li and Janson's gradient rule as a term added to the readers' inputs: reader r gets
        sum_w [z_wr < CLOSED] (1 - z_wr) (c_w - c_w.detach()), zero in value, its gradient reaching
        c_w through the closed edges only, at every position but the first.

        Returns f(gates (R, P)) -> (R, 1, S, D), for the gated forward (models/forward.py).
        """
        # (W, S or 1, D): c_w - c_w.detach() per writer, one row for every position when per component
        rows = self._writer_rows(adapter, graph, seq_len if self.per_position else 1)
        keep = torch.ones(seq_len, 1, dtype=rows.dtype, device=rows.device)
        keep[0] = 0                                          # the first position is never ablated

        def term(gates: torch.Tensor) -> torch.Tensor:
            g = gates.detach()
            weight = torch.where(g < CLOSED, 1 - g, torch.zeros_like(g)).to(rows.dtype)
            return torch.einsum("rp,psd->rsd", weight, rows[:g.shape[-1]]).mul(keep)[:, None]
        return term

    def _writer_rows(self, adapter: Adapter, graph, S: int) -> torch.Tensor:
        """Each graph writer's constant in the residual stream over S positions, minus itself held
        fixed: (W, S, D)."""
        def zero(name):
            return [v - v.detach() for v in self._values(name, adapter, S, detach=False)]
        embeds, ctxs, mlps = zero("embeds"), zero("ctx"), zero("mlp")
        rows = [] if graph.embedding_nodes == 0 else (
            embeds if graph.embedding_nodes == len(embeds) else [sum(embeds)])
        for layer, (ctx, out) in enumerate(zip(ctxs, mlps)):
            w_o, _ = adapter.output_projection(layer)
            heads = torch.einsum("bshe,hed->hsd", ctx, w_o)
            rows += list(heads if graph.attention_writers == "heads" else heads.sum(0, keepdim=True))
            rows.append(out[0])
        return torch.stack([r[0] if r.dim() == 3 else r for r in rows])

    def with_first(self, record: WriterRecord, first: WriterRecord) -> WriterRecord:
        """`record` with its first position replaced by `first` (B, 1, ...): the clean run's there."""
        B = first.resid_final.shape[0]

        def join(c, f):
            rest = c[:, 1:]
            return torch.cat([f.to(c.dtype), rest.expand(B, *rest.shape[1:])], dim=1)
        fields = {name: [join(c, f) for c, f in zip(getattr(record, name), getattr(first, name))]
                  for name in ("embeds", "ctx", "mlp", "resid_pre", "resid_mid")}
        return WriterRecord(resid_final=join(record.resid_final, first.resid_final), **fields)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat named tensors for a file: embeds.{i}, ctx.{layer}, mlp.{layer}."""
        out = {}
        for name in ("embeds", "ctx", "mlp"):
            out |= {f"{name}.{i}": p.detach().float().cpu().contiguous() for i, p in enumerate(getattr(self, name))}
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "AblationConstants":
        """From tensors(); per position or per component as their shapes say."""
        def group(name):
            return [tensors[f"{name}.{i}"] for i in range(sum(k.startswith(name + ".") for k in tensors))]
        return cls(group("embeds"), group("ctx"), group("mlp"))


__all__ = ["AblationConstants", "CLOSED"]
