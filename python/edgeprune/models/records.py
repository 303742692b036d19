"""What one plain forward of the unpruned model leaves for the ablations: a `WriterRecord`.

Under interchange ablation a pruned edge carries writer w's output on the corrupted input, c_w;
under mean ablation its mean over a set of inputs. A record of one plain forward holds everything
the gated forward needs: the residual streams (a reader's base is a prefix sum of c, which for
the unpruned model is its residual stream) and the head contexts before the output projection,
from which x_w - c_w is formed per head.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class WriterRecord:
    """The unpruned model's writers on one input batch; every field batch-first."""
    embeds: list[torch.Tensor]      # embedding writers' outputs, each (B, S, D), as the adapter gives them
    ctx: list[torch.Tensor]         # per layer, head contexts (B, S, H, dh) before the output projection
    mlp: list[torch.Tensor]         # per layer, the MLP output (B, S, D)
    resid_pre: list[torch.Tensor]   # per layer, the residual stream entering it
    resid_mid: list[torch.Tensor]   # per layer, the MLP's input stream: after attention (or before it, parallel)
    resid_final: torch.Tensor       # the residual stream after the last layer

    def map(self, fn) -> "WriterRecord":
        def apply(v):
            return [fn(t) for t in v] if isinstance(v, list) else fn(v)
        return WriterRecord(**{f.name: apply(getattr(self, f.name)) for f in fields(self)})

    def select(self, index) -> "WriterRecord":
        return self.map(lambda t: t[index])

    def tensors(self) -> list[torch.Tensor]:
        return [t for f in fields(self) for t in (getattr(self, f.name) if f.name != "resid_final"
                                                   else [self.resid_final])]

    @staticmethod
    def cat(records: list["WriterRecord"]) -> "WriterRecord":
        first = records[0]
        out = {}
        for f in fields(first):
            vals = [getattr(r, f.name) for r in records]
            out[f.name] = ([torch.cat(parts) for parts in zip(*vals)] if isinstance(vals[0], list)
                           else torch.cat(vals))
        return WriterRecord(**out)


def record_bytes(tokens: int, embeds: int, layers: int, heads: int, head_dim: int, d_model: int,
                 dtype: torch.dtype) -> int:
    """Bytes of a WriterRecord over `tokens` tokens: the trainer's cache budget and the planner's count.

    Per token: each embedding writer's output (D), per layer the head contexts (H dh), the MLP
    output and the residual streams before and after attention (3 D), and the final stream (D).
    """
    per_token = (embeds + 1) * d_model + layers * (heads * head_dim + 3 * d_model)
    return tokens * per_token * torch.finfo(dtype).bits // 8
