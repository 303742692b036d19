"""What the disentangled forward needs to know about a model family.

An adapter maps a stock model onto the primitives of the edge graph: the embedding writers, the
per-reader attention inputs (norm, projections, rotary), the per-head output projection, the MLP
and the unembedding. It computes with the model's own modules and weights; it never forks a
modeling file. Shapes: B batch, S sequence, D width, H query heads, K key-value heads, dh head size.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from ..ops.constants import EPS


@dataclass(frozen=True)
class LayerStructure:
    """What a decoder layer holds beside its attention and MLP: the parts whose activations autograd
    saves, which the memory planner counts (edgeprune.planning). A family declares it once, here."""
    norm: str | None = "layer"      # "rms" (RMSNorm, which upcasts to fp32 and saves that), "layer" or None
    reader_norms: bool = True       # each attention reader normalises its own mixture
    qk_norm: str | None = None      # query and key norms: per head ("head") or over all heads' projection
    output_norms: bool = False      # norms on the attention's summed output and on the MLP's output
    mlp_input_norm: bool = True     # a norm on the MLP's input
    mlp: str = "gelu_tanh"          # "gated" (gate, up, activation), "gelu_tanh" (composite), "gelu" or "relu"
    rotary: bool = False            # rotary positions (a layer keeps their cos and sin)


class Adapter(ABC):
    family: str = ""                 # the planner's calibration key, and how errors name the family
    model_classes: tuple[str, ...] = ()   # the Hugging Face classes it runs, for messages
    embedding_nodes_allowed: tuple[int, ...] = (0, 1)
    default_embedding_nodes: int = 0
    gate_eps: float = EPS            # the hard-concrete noise's eps (docs/method.md 3.1)
    embedding_outputs: int = 1       # how many tensors embeddings() returns (token and position: 2)
    causal: bool = True
    parallel_residual: bool = False  # the MLP reads the layer's input, not attention's output
    structure: LayerStructure = LayerStructure()

    num_layers: int
    num_heads: int
    num_kv_heads: int
    d_model: int
    head_dim: int
    intermediate_size: int

    def __init__(self, model: torch.nn.Module):
        self.model = model

    @abstractmethod
    def embeddings(self, input_ids: torch.Tensor) -> list[torch.Tensor]:
        """The embedding writers' outputs, each (B, S, D): [token, position] or [embeds]."""

    @abstractmethod
    def attention_inputs(self, layer: int, readers, position_ids):
        """Per-reader inputs (H + 2K', B, S, D), queries then keys then values -> q (B, H, S, dh),
        k and v (B, K', S, dh).

        K' is the model's K key-value heads, or H when every query head reads its own key and value
        input (Graph.kv_edges "query"): each of those is projected with its group's key and value
        weights. Each reader is normalised separately with the layer's shared norm (method.md 2.3).
        One call takes every reader of the layer, so an adapter can norm (and, where the weights
        allow, project) them all in one op.
        """

    def attention_scale(self, layer: int) -> float:
        return self.head_dim ** -0.5

    def attention_softcap(self, layer: int) -> float | None:
        """Attention logits s become tanh(s / cap) * cap (Gemma 2); None: no soft-capping."""
        return None

    def head_contexts(self, layer: int, ctx: torch.Tensor) -> torch.Tensor:
        """The head contexts (B, S, H, dh) as the writers project them with output_projection.

        Here ctx itself. A model with a norm on the attention's summed output (Gemma 2 and 3, OLMo 2)
        scales them per position by that run's 1/rms(sum_h o_h), so that the heads share the layer's
        norm scale and their outputs sum exactly to its normed output (docs/design.md, "Norms on the
        branch outputs"). Both the plain and the gated forward call this on their own run's contexts.
        """
        return ctx

    @abstractmethod
    def output_projection(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W_O as (H, dh, D), output bias (D,) or None): head h writes ctx_h @ W_O[h] + bias / H.

        ctx is head_contexts' output; a norm's gain on the attention's output is folded into W_O.
        """

    def attention_output_norm(self, layer: int) -> torch.nn.Module | None:
        """The norm on the attention's summed output before the residual add, if the model has one."""
        return None

    @abstractmethod
    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """The MLP writer's output for its (already mixed) input, norm included."""

    @abstractmethod
    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and unembedding of the final read."""

    def decoder_layers(self) -> torch.nn.ModuleList | None:
        """The model's decoder blocks (one FSDP unit each); None for models that are not sharded."""
        return None

    def sliding_window(self, layer: int) -> int | None:
        """Layer `layer` attends to at most this many most recent positions (None: no window)."""
        return None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def rms_scaled_contexts(ctx: torch.Tensor, attn: torch.Tensor, eps: float) -> torch.Tensor:
    """ctx (B, S, H, dh) times 1 / rms(attn) per position, attn = sum_h o_h (B, S, D); computed in
    fp32 (fp64 for fp64 models), as the models' RMSNorm computes its scale; returned in ctx's dtype."""
    compute = torch.promote_types(ctx.dtype, torch.float32)
    scale = torch.rsqrt(attn.to(compute).pow(2).mean(-1, keepdim=True) + eps)
    return (ctx.to(compute) * scale[..., None]).to(ctx.dtype)


def gained_projection(w_o: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """W_O (H, dh, D) times a norm's gain (D,): the norm's gain folded into the output projection."""
    compute = torch.promote_types(w_o.dtype, torch.float32)
    return (w_o.to(compute) * gain.to(compute)).to(w_o.dtype)


def per_head(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Project each reader's input with its own head's slice: (R, B, S, D) x (heads, D, dh) -> (B, R, S, dh).

    R is the number of heads, or a multiple of it: key and value readers per query head
    (Graph.kv_edges "query"), where the R / heads consecutive readers of a group share their
    key-value head's slice (the weights are not copied).
    """
    heads, _, dh = weight.shape
    if x.shape[0] == heads:
        out = torch.einsum("rbsd,rde->brse", x, weight)
    else:
        out = torch.einsum("kgbsd,kde->bkgse", x.unflatten(0, (heads, -1)), weight).flatten(1, 2)
    if bias is not None:
        out = out + bias.view(heads, dh).repeat_interleave(x.shape[0] // heads, 0).view(1, x.shape[0], 1, dh)
    return out
