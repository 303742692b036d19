"""Models from wherever a user has them: an instance, a Hugging Face hub id or a local folder."""
from __future__ import annotations

import os

import torch

from .errors import UserError


def load_model(model, tokenizer=None, device=None, dtype=None, weights: bool = True):
    """A model instance, hub id or local folder -> (model, tokenizer).

    weights=False builds a hub id or folder's model on the meta device without reading its weights
    (the ranks other than 0 of a sharded run: apply_fsdp fills their shards from rank 0's copy).
    """
    if isinstance(model, (str, os.PathLike)):
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer
        name = str(model)
        try:
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(name)
            if weights:
                # Hugging Face's default attention: SDPA where the family has it (Gemma 2 has not, for its
                # soft-cap). edgeprune's forward computes attention itself; this is only the model's own.
                model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or torch.float32)
            else:
                with torch.device("meta"):
                    model = AutoModelForCausalLM.from_config(load_config(name), dtype=dtype or torch.float32)
                return model, tokenizer
        except (OSError, SafetensorError) as error:  # not found, unreachable, unreadable or corrupted files
            raise UserError(f"cannot load the model {name!r} ({type(error).__name__}: {error}); give a Hugging Face "
                            "hub id or a folder with the model and its tokenizer") from error
    if tokenizer is None:
        tokenizer = getattr(model, "tokenizer", None)
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    return model, tokenizer


def model_source(model) -> str:
    """Where a model was loaded from (hub id or folder), or "" for one built in Python."""
    return getattr(getattr(model, "config", None), "_name_or_path", "") or ""


def model_name(model) -> str:
    """How circuits and logs name a model: its hub id or folder, else its class."""
    return getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__


def load_config(name: str):
    """The Hugging Face config of a hub id or folder; an unknown or unreadable one is a UserError."""
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(name)
    except OSError as error:
        raise UserError(f"cannot read the config of the model {name!r} ({error}); give a Hugging Face hub id or a "
                        "folder with a config.json") from error
