"""MIB's models as published (their hub config.json) and tiny random-weight versions of them.

MIB's circuit track uses GPT-2 small, Qwen2.5-0.5B, Gemma-2-2B and Llama-3.1-8B; Gemma 3 and OLMo 2
are the other families with norms on the branch outputs. `PUBLISHED` holds each checkpoint's
architecture fields as in its config.json (token ids, dtypes and bookkeeping left out). `tiny`
shrinks only the layer count, the widths (hidden, head and MLP sizes, keeping the head counts and
their ratios), the vocabulary (with the special token ids inside it) and the sliding window; every
architectural switch stays as published. Weights are random, saved and reloaded through a temporary
folder, with Hugging Face's eager attention (its SDPA path skips Gemma 2's soft-cap).
"""
import tempfile
from functools import cache

import torch
from transformers import AutoConfig, AutoModelForCausalLM

PUBLISHED = {
    "openai-community/gpt2": dict(
        model_type="gpt2", n_layer=12, n_head=12, n_embd=768, n_inner=None, n_positions=1024, n_ctx=1024,
        activation_function="gelu_new", layer_norm_epsilon=1e-5, vocab_size=50257, scale_attn_weights=True,
        tie_word_embeddings=True),
    "Qwen/Qwen2.5-0.5B": dict(
        model_type="qwen2", num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, hidden_size=896,
        intermediate_size=4864, hidden_act="silu", max_position_embeddings=32768, rms_norm_eps=1e-6,
        rope_theta=1000000.0, sliding_window=32768, use_sliding_window=False, max_window_layers=24,
        tie_word_embeddings=True, vocab_size=151936),
    "google/gemma-2-2b": dict(
        model_type="gemma2", num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
        hidden_size=2304, intermediate_size=9216, hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0, attention_bias=False,
        query_pre_attn_scalar=256, sliding_window=4096, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
        tie_word_embeddings=True, vocab_size=256000),
    "meta-llama/Llama-3.1-8B": dict(
        model_type="llama", num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, hidden_size=4096,
        intermediate_size=14336, hidden_act="silu", max_position_embeddings=131072, rms_norm_eps=1e-5,
        rope_theta=500000.0, rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                           "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        attention_bias=False, mlp_bias=False, tie_word_embeddings=False, vocab_size=128256),
    "google/gemma-3-1b-pt": dict(
        model_type="gemma3_text", num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
        hidden_size=1152, intermediate_size=6912, hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=32768, rms_norm_eps=1e-6, rope_theta=1000000, rope_local_base_freq=10000,
        rope_scaling=None, attention_bias=False, query_pre_attn_scalar=256, sliding_window=512,
        sliding_window_pattern=6, attn_logit_softcapping=None, final_logit_softcapping=None,
        tie_word_embeddings=True, vocab_size=262144),
    "allenai/OLMo-2-0425-1B": dict(
        model_type="olmo2", num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16, hidden_size=2048,
        intermediate_size=8192, hidden_act="silu", max_position_embeddings=4096, rms_norm_eps=1e-6,
        rope_theta=500000, rope_scaling=None, attention_bias=False, tie_word_embeddings=False, vocab_size=100352),
}
MIB_FOUR = ["openai-community/gpt2", "Qwen/Qwen2.5-0.5B", "google/gemma-2-2b", "meta-llama/Llama-3.1-8B"]
NAMES = list(PUBLISHED)

VOCAB = 61
WINDOW = 4          # inputs are longer (SEQ)
SEQ = 9
# the shrunk fields: (layers, hidden size, head size or None where the config derives it, MLP size)
SHRUNK = {
    "openai-community/gpt2": (2, 48, None, None),           # 12 heads of 4; MLP 4 D as published (n_inner None)
    "Qwen/Qwen2.5-0.5B": (2, 56, None, 304),                # 14 heads of 4, 2 KV heads; MLP 5.4 D
    "google/gemma-2-2b": (2, 32, 8, 128),                   # local then global; head size 8 != 32 / 8
    "meta-llama/Llama-3.1-8B": (2, 128, None, 448),         # 32 heads of 4, 8 KV heads; MLP 3.5 D
    "google/gemma-3-1b-pt": (6, 32, 8, 192),                # five local layers, then a global one
    "allenai/OLMo-2-0425-1B": (2, 64, None, 256),           # 16 heads of 4
}


def config(name: str, **overrides):
    """The published configuration shrunk as above (overrides: for the tests that flip a switch)."""
    d = dict(PUBLISHED[name])
    layers, hidden, head_dim, mlp = SHRUNK[name]
    if d["model_type"] == "gpt2":
        d.update(n_layer=layers, n_embd=hidden, n_positions=64, n_ctx=64)
    else:
        d.update(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=mlp)
        if head_dim is not None:
            d["head_dim"] = head_dim
    if d.get("sliding_window") is not None:
        d["sliding_window"] = WINDOW
    d.update(vocab_size=VOCAB, bos_token_id=2, eos_token_id=1, pad_token_id=0)
    d.update(overrides)
    return AutoConfig.for_model(d.pop("model_type"), **d)


def tiny(name: str, dtype=torch.float32, seed: int = 0, **overrides):
    """A random-weight model of the shrunk configuration, saved and reloaded with eager attention.

    The weights get noise on top of the default init (so that every writer matters, and Gemma's
    zero-initialised norm gains are not all one) and, where the model caps its logits, queries, keys
    and the final norm's gain large enough that the caps bind.
    """
    torch.manual_seed(seed)
    cfg = config(name, **overrides)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        if getattr(cfg, "attn_logit_softcapping", None) is not None:
            for layer in model.model.layers:
                layer.self_attn.q_proj.weight.mul_(25)
                layer.self_attn.k_proj.weight.mul_(25)
        if getattr(cfg, "final_logit_softcapping", None) is not None:
            model.model.norm.weight.add_(20)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    return model.eval().to(dtype)


@cache
def shared(name: str, dtype=torch.float32):
    """tiny(name, dtype), built once per session: for tests that do not change the model."""
    return tiny(name, dtype)


def ids(b: int = 2, s: int = SEQ, seed: int = 1):
    """Clean and corrupted token ids (B, S), special tokens excluded."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (b, s), generator=g), torch.randint(3, VOCAB, (b, s), generator=g)
