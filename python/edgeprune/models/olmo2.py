"""OLMo 2: norms on the branch outputs only, and query/key norms over the whole projection.

A layer computes x + post_attention_layernorm(attn(x)) and then x + post_feedforward_layernorm(mlp(x)):
nothing normalises a reader's input, so each attention reader projects its raw mixture. The heads
share their layer's output-norm scale as in Gemma (head_contexts; docs/design.md, "Norms on the
branch outputs"). q_norm and k_norm are RMSNorms over all heads' projections together (H dh and
K dh wide): here over the concatenation of the per-head projections, each from its own reader's
mixture. With every edge kept, or every edge pruned, all of a layer's readers see the same stream
and this is the model's own norm of the full projection. When every query head reads its own key
(kv_edges="query"), k_norm spans the H per-head keys, each group's gain repeated for its query
heads: the same norm when a group's keys agree.
"""
from __future__ import annotations

import torch

from ..errors import Unsupported
from .base import LayerStructure, gained_projection, rms_scaled_contexts
from .llama import LlamaAdapter


def _identity(x):
    return x


class Olmo2Adapter(LlamaAdapter):
    family = "olmo2"
    model_classes = ("Olmo2ForCausalLM",)
    structure = LayerStructure(norm="rms", reader_norms=False, qk_norm="projection", output_norms=True,
                               mlp_input_norm=False, mlp="gated", rotary=True)

    def __init__(self, model):
        super().__init__(model)
        if model.config.attention_bias:
            raise Unsupported("Olmo2ForCausalLM with attention_bias=True is not supported: a bias inside the normed "
                             "attention output has no per-head share; set it to False (as every published OLMo 2 "
                             "checkpoint does).")

    def reader_norm(self, block):
        return _identity

    def qk_norm(self, attn, q, k):
        return _whole_projection_norm(attn.q_norm, q), _whole_projection_norm(attn.k_norm, k)

    def attention_output_norm(self, layer):
        return self.inner.layers[layer].post_attention_layernorm

    def head_contexts(self, layer, ctx):
        attn = self.inner.layers[layer].self_attn.o_proj(ctx.flatten(2))
        return rms_scaled_contexts(ctx, attn, self.attention_output_norm(layer).variance_epsilon)

    def output_projection(self, layer):
        w_o, _ = super().output_projection(layer)
        return gained_projection(w_o, self.attention_output_norm(layer).weight), None

    def mlp(self, layer, x):
        block = self.inner.layers[layer]
        return block.post_feedforward_layernorm(block.mlp(x))


def _whole_projection_norm(norm, x):
    """norm over the concatenated heads of x (B, heads, S, dh), as the model norms its full projection.

    With more heads than the norm's width covers (a key per query head), the rms spans them all and
    each head takes its group's slice of the gain, computed in fp32 as Olmo2RMSNorm does.
    """
    B, heads, S, dh = x.shape
    flat = x.transpose(1, 2).reshape(B, S, heads * dh)
    if norm.weight.numel() == heads * dh:
        return norm(flat).view(B, S, heads, dh).transpose(1, 2)
    groups = norm.weight.numel() // dh
    gain = norm.weight.view(groups, dh).repeat_interleave(heads // groups, 0).reshape(-1)
    compute = flat.to(torch.float32)
    compute = compute * torch.rsqrt(compute.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return (gain * compute).to(x.dtype).view(B, S, heads, dh).transpose(1, 2)
