"""What the disentangled forward needs to know about a model family.

An adapter maps a stock model onto the primitives of the edge graph: the embedding writers, the
per-reader attention inputs (norm, projections, rotary), the per-head output projection, the MLP
and the unembedding. It computes with the model's own modules and weights; it never forks a
modeling file. Shapes: B batch, S sequence, D width, H query heads, K key-value heads, dh head size.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Adapter(ABC):
    family: str = ""                 # the planner's calibration key, and how errors name the family
    model_classes: tuple[str, ...] = ()   # the Hugging Face classes it runs, for messages
    embedding_nodes_allowed: tuple[int, ...] = (0, 1)
    default_embedding_nodes: int = 0
    gate_eps: float = 1e-6           # the hard-concrete noise's eps (docs/method.md 3.1)
    embedding_outputs: int = 1       # how many tensors embeddings() returns (token and position: 2)
    causal: bool = True
    parallel_residual: bool = False  # the MLP reads the layer's input, not attention's output

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
        """Per-reader inputs (H + 2K, B, S, D), queries then keys then values -> q (B, H, S, dh),
        k and v (B, K, S, dh).

        Each reader is normalised separately with the layer's shared norm (method.md 2.3). One call
        takes every reader of the layer, so an adapter can norm (and, where the weights allow,
        project) them all in one op.
        """

    def attention_scale(self, layer: int) -> float:
        return self.head_dim ** -0.5

    @abstractmethod
    def output_projection(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W_O as (H, dh, D), output bias (D,) or None): head h writes ctx_h @ W_O[h] + bias / H."""

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


def per_head(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Project each reader's input with its own head's slice: (R, B, S, D) x (R, D, dh) -> (B, R, S, dh)."""
    out = torch.einsum("rbsd,rde->brse", x, weight)
    if bias is not None:
        out = out + bias.view(1, weight.shape[0], 1, weight.shape[2])
    return out
