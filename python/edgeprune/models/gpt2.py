"""GPT-2 (transformers' GPT2LMHeadModel): LayerNorm, fused Conv1D q/k/v, learned positions."""
from __future__ import annotations

import torch

from ..errors import UserError
from .base import Adapter, LayerStructure, per_head


class GPT2Adapter(Adapter):
    family = "gpt2"
    model_classes = ("GPT2LMHeadModel",)
    embedding_nodes_allowed = (0, 1, 2)
    embedding_outputs = 2
    default_embedding_nodes = 2
    structure = LayerStructure(norm="layer", mlp="gelu_tanh")

    def __init__(self, model):
        super().__init__(model)
        cfg = model.config
        self.transformer = model.transformer
        self.num_layers, self.num_heads = cfg.n_layer, cfg.n_head
        self.num_kv_heads = cfg.n_head
        self.d_model = cfg.n_embd
        self.head_dim = cfg.n_embd // cfg.n_head
        self.intermediate_size = cfg.n_inner or 4 * cfg.n_embd
        if getattr(cfg, "reorder_and_upcast_attn", False):
            raise UserError("GPT-2 with reorder_and_upcast_attn=True is not supported; set it to False.")

    def decoder_layers(self):
        return self.transformer.h

    def embeddings(self, input_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return [self.transformer.wte(input_ids), self.transformer.wpe(positions)[None].expand(input_ids.shape[0], -1, -1)]

    def attention_inputs(self, layer, readers, position_ids):
        block = self.transformer.h[layer]
        D, H, dh = self.d_model, self.num_heads, self.head_dim
        # c_attn's columns are [q heads | k heads | v heads], the readers' order: one projection
        w = block.attn.c_attn.weight.view(D, 3 * H, dh).transpose(0, 1)  # (3H, D, dh), a view
        out = per_head(block.ln_1(readers), w, block.attn.c_attn.bias.view(3 * H, dh))  # (B, 3H, S, dh)
        return out[:, :H], out[:, H:2 * H], out[:, 2 * H:]

    def attention_scale(self, layer):
        attn = self.transformer.h[layer].attn
        scale = self.head_dim ** -0.5 if attn.scale_attn_weights else 1.0
        if attn.scale_attn_by_inverse_layer_idx:
            scale /= float(layer + 1)
        return scale

    def output_projection(self, layer):
        proj = self.transformer.h[layer].attn.c_proj
        return proj.weight.view(self.num_heads, self.head_dim, self.d_model), proj.bias

    def mlp(self, layer, x):
        block = self.transformer.h[layer]
        return block.mlp(block.ln_2(x))

    def unembed(self, x):
        return self.model.lm_head(self.transformer.ln_f(x))
