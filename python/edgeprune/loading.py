"""Models from wherever a user has them: an instance, a Hugging Face hub id or a local folder."""
from __future__ import annotations

import os

import torch


def load_model(model, tokenizer=None, device=None, dtype=None, weights: bool = True):
    """A model instance, hub id or local folder -> (model, tokenizer).

    weights=False builds a hub id or folder's model on the meta device without reading its weights
    (the ranks other than 0 of a sharded run: apply_fsdp fills their shards from rank 0's copy).
    """
    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        name = str(model)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(name)
        if weights:
            # Hugging Face's default attention: SDPA where the family has it (Gemma 2 has not, for its
            # soft-cap). edgeprune's forward computes attention itself; this is only the model's own.
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or torch.float32)
        else:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(name), dtype=dtype or torch.float32)
            return model, tokenizer
    if tokenizer is None:
        tokenizer = getattr(model, "tokenizer", None)
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    return model, tokenizer


def model_name(model) -> str:
    """How circuits and logs name a model: its hub id or folder, else its class."""
    return getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
