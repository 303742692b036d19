"""Tracr-compiled transformers in plain torch, and their adapter (method.md section 7).

Tracr (DeepMind's RASP compiler) emits a Haiku transformer with no layer norm, ReLU MLPs,
non-causal attention (unless compiled causal) scaled by 1/sqrt(key_size), masked with -1e30, and
one-hot token and position embeddings. `TracrTransformer` holds such weights as frozen tensors;
`edgeprune.tracr.load` builds one from the package data written by scripts/compile_tracr.py, so
nothing here needs JAX.

Output (method.md 7): a categorical program (reverse) returns logits = final residual @
unembedding; a numerical program (xproportion) returns the final residual itself, whose dimension
`config.output_dim` (0) holds the program's value.

Layouts follow Haiku: the query/key/value weights are (D, H * key_size) with heads as the outer
factor, the output projection (H * key_size, D). Value size equals key size, as in tracr.
Tracr fills every projection bias with zeros; they are kept so the port is exact in general.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UserError
from .base import Adapter, LayerStructure, per_head

MASK_VALUE = -1e30  # tracr's (Haiku's) masked attention logit


@dataclass
class TracrConfig:
    """Shapes, vocabulary and output of a compiled program (from its package-data JSON)."""

    model_type = "tracr"  # what edgeprune.prunable dispatches on (not a dataclass field)

    name: str
    num_layers: int
    num_heads: int
    d_model: int
    key_size: int
    mlp_hidden_size: int
    vocab_size: int
    max_seq_len: int  # program length, without BOS; the model takes max_seq_len + 1 positions
    bos_id: int
    pad_id: int
    causal: bool = False
    output_kind: str = "categorical"  # or "numerical"
    output_dim: int | None = None  # residual dimension of a numerical output
    output_size: int | None = None  # number of classes of a categorical output
    vocab: list = field(default_factory=list)  # program tokens, in the order of their ids below
    input_encoding: dict = field(default_factory=dict)  # token -> id, BOS and pad included
    output_encoding: dict = field(default_factory=dict)  # token -> class index (categorical)
    residual_labels: list = field(default_factory=list)

    @classmethod
    def from_json(cls, cfg: dict) -> "TracrConfig":
        out = cfg["output"]
        return cls(
            name=cfg["name"], num_layers=cfg["num_layers"], num_heads=cfg["num_heads"],
            d_model=cfg["d_model"], key_size=cfg["key_size"], mlp_hidden_size=cfg["mlp_hidden_size"],
            vocab_size=len(cfg["input_encoding"]), max_seq_len=cfg["max_seq_len"], bos_id=cfg["bos_id"],
            pad_id=cfg["pad_id"], causal=cfg["causal"], output_kind=out["kind"],
            output_dim=out.get("output_dim"),
            output_size=len(out["encoding"]) if out["kind"] == "categorical" else None,
            vocab=list(cfg["vocab"]), input_encoding={tok: i for tok, i in cfg["input_encoding"]},
            output_encoding={tok: i for tok, i in out.get("encoding", [])},
            residual_labels=list(cfg["residual_labels"]))

    @property
    def n_positions(self) -> int:
        return self.max_seq_len + 1

    @property
    def _name_or_path(self) -> str:  # how edgeprune names models in circuits and logs
        return f"tracr-{self.name}"


class TracrTransformer(nn.Module):
    """A compiled Tracr model. Weights are frozen Parameters (requires_grad=False)."""

    def __init__(self, config: TracrConfig, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.config = config
        c = config
        HK = c.num_heads * c.key_size

        def frozen(name, shape):
            t = torch.as_tensor(weights[name], dtype=torch.float32)
            if tuple(t.shape) != tuple(shape):
                raise UserError(f"{name}: shape {tuple(t.shape)}, expected {tuple(shape)}")
            return nn.Parameter(t.clone(), requires_grad=False)

        self.token_embed = frozen("token_embed", (c.vocab_size, c.d_model))
        self.pos_embed = frozen("pos_embed", (c.n_positions, c.d_model))
        self.layers = nn.ModuleList()
        for layer in range(c.num_layers):
            m = nn.Module()
            p = f"layers.{layer}."
            for part in ("query", "key", "value"):
                setattr(m, f"{part}_w", frozen(p + f"attn.{part}.w", (c.d_model, HK)))
                setattr(m, f"{part}_b", frozen(p + f"attn.{part}.b", (HK,)))
            m.out_w = frozen(p + "attn.linear.w", (HK, c.d_model))
            m.out_b = frozen(p + "attn.linear.b", (c.d_model,))
            m.mlp_w1 = frozen(p + "mlp.linear_1.w", (c.d_model, c.mlp_hidden_size))
            m.mlp_b1 = frozen(p + "mlp.linear_1.b", (c.mlp_hidden_size,))
            m.mlp_w2 = frozen(p + "mlp.linear_2.w", (c.mlp_hidden_size, c.d_model))
            m.mlp_b2 = frozen(p + "mlp.linear_2.b", (c.d_model,))
            self.layers.append(m)
        if c.output_kind == "categorical":
            self.unembedding = frozen("unembedding", (c.d_model, c.output_size))
        elif c.output_kind == "numerical":
            self.unembedding = None
        else:
            raise UserError(f"unknown output kind {c.output_kind!r}")

    # ------------------------------------------------------------------ pieces shared with the adapter
    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.token_embed[input_ids]

    def embed_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        B, S = input_ids.shape
        if S > self.config.n_positions:
            raise UserError(f"sequence length {S} exceeds the compiled {self.config.n_positions} "
                            f"(BOS + max_seq_len {self.config.max_seq_len})")
        return self.pos_embed[:S][None].expand(B, S, -1)

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        m = self.layers[layer]
        return torch.relu(x @ m.mlp_w1 + m.mlp_b1) @ m.mlp_w2 + m.mlp_b2

    def output(self, residual: torch.Tensor) -> torch.Tensor:
        """Logits (categorical) or the residual itself (numerical; value in dim output_dim)."""
        return residual if self.unembedding is None else residual @ self.unembedding

    def attention_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """Boolean (B, 1, S, S) of allowed (query, key) pairs, or None when every pair is allowed.

        Keys are masked where attention_mask is 0; without one, where the input is the compiler's pad
        token (tracr's own padding semantics). Causal models add the lower triangle.
        """
        B, S = input_ids.shape
        keys = (input_ids != self.config.pad_id) if attention_mask is None else attention_mask.bool()
        allowed = keys[:, None, None, :].expand(B, 1, S, S)
        if self.config.causal:
            allowed = allowed & torch.ones(S, S, dtype=torch.bool, device=input_ids.device).tril()
        return None if bool(allowed.all()) else allowed

    # ------------------------------------------------------------------ ordinary forward
    def attention(self, layer: int, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        m, c = self.layers[layer], self.config
        B, S, _ = x.shape
        H, dk = c.num_heads, c.key_size
        q = (x @ m.query_w + m.query_b).view(B, S, H, dk)
        k = (x @ m.key_w + m.key_b).view(B, S, H, dk)
        v = (x @ m.value_w + m.value_b).view(B, S, H, dk)
        logits = torch.einsum("bthd,bThd->bhtT", q, k) / dk ** 0.5
        if mask is not None:
            logits = logits.masked_fill(~mask, MASK_VALUE)
        ctx = torch.einsum("bhtT,bThd->bthd", logits.softmax(-1), v).reshape(B, S, H * dk)
        return ctx @ m.out_w + m.out_b

    def residual(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final residual stream (B, S, D)."""
        mask = self.attention_mask(input_ids, attention_mask)
        x = self.embed_tokens(input_ids) + self.embed_positions(input_ids)
        for layer in range(self.config.num_layers):
            x = x + self.attention(layer, x, mask)
            x = x + self.mlp(layer, x)
        return x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, S, n_classes) for a categorical program, the residual (B, S, D) for a numerical one.

        Right-padded batches: pass attention_mask (1 on real tokens), or pad with config.pad_id;
        outputs at padded positions are meaningless.
        """
        return self.output(self.residual(input_ids, attention_mask))

    # ------------------------------------------------------------------ convenience
    def encode(self, tokens, add_bos: bool = True) -> list[int]:
        """Program tokens -> input ids (BOS prepended unless add_bos=False); unknown tokens -> pad."""
        enc = self.config.input_encoding
        ids = [enc.get(t, self.config.pad_id) for t in tokens]
        return [self.config.bos_id] + ids if add_bos else ids

    def decode(self, output: torch.Tensor) -> list:
        """One sequence's output (S, ...) -> program values at every position after BOS."""
        if self.unembedding is None:
            return output[1:, self.config.output_dim].tolist()
        inv = {i: tok for tok, i in self.config.output_encoding.items()}
        return [inv[int(j)] for j in output[1:].argmax(-1)]


class TracrAdapter(Adapter):
    """Edge-graph primitives of a TracrTransformer: E=2 (token and position writers), no norms."""

    family = "tracr"
    model_classes = ("Tracr models (edgeprune.tracr.load)",)
    embedding_nodes_allowed = (2,)
    embedding_outputs = 2
    default_embedding_nodes = 2
    structure = LayerStructure(norm=None, reader_norms=False, mlp_input_norm=False, mlp="relu")

    def __init__(self, model: TracrTransformer):
        super().__init__(model)
        c = model.config
        self.config = c
        self.num_layers, self.num_heads = c.num_layers, c.num_heads
        self.num_kv_heads = c.num_heads
        self.d_model = c.d_model
        self.head_dim = c.key_size
        self.intermediate_size = c.mlp_hidden_size
        self.causal = bool(c.causal)  # instance attribute shadows the class default (True)

    def embeddings(self, input_ids):
        return [self.model.embed_tokens(input_ids), self.model.embed_positions(input_ids)]

    def _per_head(self, layer: int, part: str):
        m, c = self.model.layers[layer], self.config
        w = getattr(m, f"{part}_w").view(c.d_model, c.num_heads, c.key_size).transpose(0, 1)  # (H, D, dk)
        b = getattr(m, f"{part}_b").view(c.num_heads, c.key_size)
        return w, b

    def attention_inputs(self, layer, readers, position_ids):
        # No norm: each reader's mixture goes straight into its own head's projection.
        H = self.num_heads
        return (per_head(readers[:H], *self._per_head(layer, "query")),
                per_head(readers[H:2 * H], *self._per_head(layer, "key")),
                per_head(readers[2 * H:], *self._per_head(layer, "value")))

    def attention_scale(self, layer):
        return self.config.key_size ** -0.5

    def output_projection(self, layer):
        m, c = self.model.layers[layer], self.config
        return m.out_w.view(c.num_heads, c.key_size, c.d_model), m.out_b

    def mlp(self, layer, x):
        return self.model.mlp(layer, x)

    def unembed(self, x):
        return self.model.output(x)

    @property
    def dtype(self):
        return self.model.token_embed.dtype

    @property
    def device(self):
        return self.model.token_embed.device
