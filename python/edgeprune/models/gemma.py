"""Gemma 2 and Gemma 3 (text): sandwich norms, soft-capping, scaled embeddings, local and global layers.

A layer writes post_attention_layernorm(sum_h o_h) and
post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x))). The MLP is one writer with its norms
inside it. The heads share their layer's output-norm scale: head h writes o_h * g / rms(sum_h o_h),
the rms taken over the run's own head outputs (head_contexts; docs/design.md, "Norms on the branch
outputs"). Queries are scaled by query_pre_attn_scalar ** -0.5 (the model's own `scaling`); the
model's embedding module multiplies by sqrt(d_model). Gemma 2 soft-caps the attention logits and the
final logits (tanh(s / cap) * cap) and alternates local (sliding-window) and global layers. Gemma 3
norms each head's query and key, has five local layers to each global one, and gives the two kinds
their own rotary base.
"""
from __future__ import annotations

import torch

from ..errors import Unsupported
from .base import LayerStructure, gained_projection, rms_scaled_contexts
from .llama import LlamaAdapter


class GemmaAdapter(LlamaAdapter):
    family = "gemma"
    model_classes = ("Gemma2ForCausalLM", "Gemma3ForCausalLM (text)")
    # qk_norm: Gemma 3's, per head (Gemma 2 has none: dropped in LlamaAdapter.__init__)
    structure = LayerStructure(norm="rms", qk_norm="head", output_norms=True, mlp="gated", rotary=True)

    def __init__(self, model):
        super().__init__(model)
        cfg = model.config
        name = type(model).__name__
        if getattr(cfg, "use_bidirectional_attention", None):
            raise Unsupported(f"{name} with use_bidirectional_attention=True is not supported: edgeprune prunes "
                             "causal language models; set it to False (as every published Gemma checkpoint does).")
        if cfg.attention_bias:
            raise Unsupported(f"{name} with attention_bias=True is not supported: a bias inside the normed attention "
                             "output has no per-head share; set it to False (as every published Gemma checkpoint does).")
        self._layer_types = list(cfg.layer_types)
        self._softcap = None
        if cfg.model_type == "gemma2":
            self._softcap = cfg.attn_logit_softcapping
        elif cfg.attn_logit_softcapping is not None:
            raise Unsupported("Gemma 3 with attn_logit_softcapping set is not supported: transformers' Gemma 3 "
                             "attention does not apply it, so its meaning is ambiguous; set it to None (as "
                             "google/gemma-3-* do).")
        self._final_softcap = cfg.final_logit_softcapping

    def attention_softcap(self, layer):
        return self._softcap

    def rotary(self, layer, x, position_ids):
        if self.model.config.model_type == "gemma2":
            return self.inner.rotary_emb(x, position_ids)
        return self.inner.rotary_emb(x, position_ids, self._layer_types[layer])  # local and global bases differ

    def attention_output_norm(self, layer):
        return self.inner.layers[layer].post_attention_layernorm

    def head_contexts(self, layer, ctx):
        attn = self.inner.layers[layer].self_attn.o_proj(ctx.flatten(2))
        return rms_scaled_contexts(ctx, attn, self.attention_output_norm(layer).eps)

    def output_projection(self, layer):
        w_o, _ = super().output_projection(layer)
        # Gemma's RMSNorm scales by (1 + weight)
        return gained_projection(w_o, 1.0 + self.attention_output_norm(layer).weight), None

    def mlp(self, layer, x):
        block = self.inner.layers[layer]
        return block.post_feedforward_layernorm(block.mlp(block.pre_feedforward_layernorm(x)))

    def unembed(self, x):
        logits = self.model.lm_head(self.inner.norm(x))
        if self._final_softcap is None:
            return logits
        return torch.tanh(logits / self._final_softcap) * self._final_softcap
