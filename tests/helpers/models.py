"""Tiny random-weight models of the real architectures, saved and reloaded like a user's checkpoint."""
import tempfile

import torch
from transformers import (AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig, MistralConfig, Qwen2Config,
                          Qwen3Config)

VOCAB = 61


def _roundtrip(model):
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa").eval()


def tiny(family: str, layers: int = 2, dtype=torch.float32, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    if family == "gpt2":
        cfg = GPT2Config(n_layer=layers, n_head=4, n_embd=32, n_positions=64, **common, **overrides)
    elif family == "gpt_neox":  # Pythia's layout: parallel residual, a quarter of each head rotated
        overrides = {"use_parallel_residual": True, "rotary_pct": 0.25, **overrides}
        cfg = GPTNeoXConfig(num_hidden_layers=layers, num_attention_heads=4, hidden_size=32, intermediate_size=48,
                            max_position_embeddings=64, **common, **overrides)
    else:
        cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}[family]
        if family == "qwen3":
            overrides = {"head_dim": 16, **overrides}  # != hidden / heads, as in Qwen3-0.6B (128 vs 64)
        cfg = cls(num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
                  intermediate_size=48, max_position_embeddings=64, **common, **overrides)
    from transformers import AutoConfig  # noqa: F401  (registers the families)
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():  # break the default init's symmetry so every writer matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return _roundtrip(model).to(dtype)


def gated(pm, ids, cids=None, circuit=None, attention_mask=None, gates=None):
    """pm's logits with a binary circuit (None: every edge; []: none) or given (edges, nodes) gates,
    ablated with the corrupted ids (pm's own ablation mode decides what that means)."""
    edges, nodes = gates if gates is not None else pm.circuit_gates(circuit)
    record = pm.ablation_record(cids, attention_mask, ids.shape[1])
    return pm(ids, attention_mask, edges=edges, nodes=nodes, record=record)


# Every family edgeprune prunes, by a short name: tiny() above, MIB's shrunk configurations
# (helpers/mib.py) for the families with norms on the branch outputs, and the shipped Tracr programs.
EVERY_FAMILY = ["gpt2", "llama", "mistral", "qwen2", "qwen3", "gpt_neox", "gemma2", "gemma3", "olmo2", "reverse",
                "xproportion"]
GROUPED_QUERY = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3"]   # fewer key-value heads than heads
_MIB_NAMES = {"gemma2": "google/gemma-2-2b", "gemma3": "google/gemma-3-1b-pt", "olmo2": "allenai/OLMo-2-0425-1B"}


def any_family(family: str, dtype=torch.float32):
    """A tiny model of any of EVERY_FAMILY (Tracr's are the shipped programs, in `dtype`)."""
    if family in ("reverse", "xproportion"):
        from edgeprune.tracr import load_model
        return load_model(family).to(dtype)
    if family in _MIB_NAMES:
        from helpers import mib
        return mib.tiny(_MIB_NAMES[family], dtype)
    return tiny(family, dtype=dtype)


def family_ids(family: str, b: int = 3, s: int = 7, seed: int = 1):
    """Clean and corrupted ids (b, s) for any_family(family); for Tracr, 2 b distinct full-length
    inputs of its task (s ignored: interchange needs one length)."""
    g = torch.Generator().manual_seed(seed)
    if family in ("reverse", "xproportion"):
        from edgeprune import tracr
        data = tracr.load(family).dataset
        batch = data.batch(range(len(data)))
        rows = batch.clean[batch.attention_mask.all(-1)]
        rows = rows[torch.randperm(len(rows), generator=g)[:2 * b]]
        return rows[:b], rows[b:]
    return torch.randint(3, VOCAB, (b, s), generator=g), torch.randint(3, VOCAB, (b, s), generator=g)
