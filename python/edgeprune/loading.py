"""Models from wherever a user has them: an instance, a Hugging Face hub id or a local folder."""
from __future__ import annotations

import os

import torch

from .errors import MissingFile, UserError
from .models import PrunableModel, ablation_kind, prunable
from .models.families import adapter_for


def load_model(model, tokenizer=None, device=None, dtype=None, weights: bool = True):
    """A model instance, hub id or local folder -> (model, tokenizer).

    weights=False builds a hub id or folder's model on the meta device without reading its weights
    (the ranks other than 0 of a sharded run: apply_fsdp fills their shards from rank 0's copy).
    """
    if isinstance(model, (str, os.PathLike)):
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer
        name = str(model)
        _check_folder(name)
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
        except (OSError, ValueError, SafetensorError) as error:  # not found, unreachable, unreadable, corrupted, or
            # a folder that holds no model (transformers: "Unrecognized model", no tokenizer files)
            raise UserError(f"cannot load the model {name!r}{_not_here(name)} ({type(error).__name__}: "
                            f"{_first_line(error)}); give a Hugging Face hub id or a folder with the model and its "
                            "tokenizer") from error
    if tokenizer is None:
        tokenizer = getattr(model, "tokenizer", None)
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    return model, tokenizer


def prunable_for(model, use: str, ablation: str = "corrupted", tokenizer=None, device=None, *,
                 embedding_nodes: int | None = None, input_node: bool = False, kv_edges: str = "query"):
    """(PrunableModel, tokenizer) for an API that takes a model in any form (`use`: "attribution",
    "faithfulness"), ablating with `ablation`, which is refused where its kind cannot serve the use.

    A PrunableModel must already ablate that way. Anything else is loaded (load_model) and wrapped
    with embedding_nodes (None: the family's default; with input_node at least one, as MIB scores
    and patches the input edges too) and kv_edges ("query": MIB's own graph).
    """
    ablation_kind(ablation).check(use)
    if isinstance(model, PrunableModel):
        if model.ablation != ablation:
            raise UserError(f"the model was built with ablation={model.ablation!r} but {use} asked for {ablation!r}; "
                            "build it with the ablation you mean, or ask for that one")
        return model, tokenizer or getattr(model.model, "tokenizer", None)
    model, tokenizer = load_model(model, tokenizer, device)
    if embedding_nodes is None and input_node:
        embedding_nodes = max(1, adapter_for(model).default_embedding_nodes)
    return prunable(model, embedding_nodes=embedding_nodes, ablation=ablation, kv_edges=kv_edges), tokenizer


def model_source(model) -> str:
    """Where a model was loaded from: its hub id or absolute folder, or "" for one built in Python."""
    source = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    return os.path.abspath(source) if source and os.path.isdir(source) else source


def model_name(model) -> str:
    """How circuits and logs name a model: its hub id or folder, else its class."""
    return getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__


def load_config(name: str):
    """The Hugging Face config of a hub id or folder; an unknown or unreadable one is a UserError."""
    from transformers import AutoConfig
    _check_folder(name)
    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as error:  # ValueError: a folder whose config names no model type
        raise UserError(f"cannot read the config of the model {name!r}{_not_here(name)} ({_first_line(error)}); give a "
                        "Hugging Face hub id or a folder with a config.json") from error


def _check_folder(name: str) -> None:
    """A name that can only be a folder (absolute, ./ or ../, or more than one /) must exist: it is
    reported missing here rather than tried as a hub id."""
    if os.path.isdir(name):
        return
    if os.path.isabs(name) or name.startswith(("./", "../", "~")) or name.count("/") > 1 or \
            (os.sep != "/" and os.sep in name):
        raise MissingFile(f"the model folder {name!r} does not exist ({os.path.abspath(name)}): give the folder the "
                          "model was saved in, or a Hugging Face hub id")


def _not_here(name: str) -> str:
    """For a name tried as a hub id: that it is no folder here either."""
    return "" if os.path.exists(name) else f": there is no folder {os.path.abspath(name)}, and as a hub id it failed"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
