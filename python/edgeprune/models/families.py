"""The model families edgeprune runs: one registry, from a config's model_type to its adapter.

Every part that needs to know the families (prunable, the planner, FSDP) asks here.
"""
from __future__ import annotations

from ..errors import UserError
from .base import Adapter
from .gemma import GemmaAdapter
from .gpt2 import GPT2Adapter
from .gpt_neox import GPTNeoXAdapter
from .llama import LlamaAdapter
from .olmo2 import Olmo2Adapter
from .tracr import TracrAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "gpt2": GPT2Adapter,
    "llama": LlamaAdapter, "mistral": LlamaAdapter, "qwen2": LlamaAdapter, "qwen3": LlamaAdapter,
    "gpt_neox": GPTNeoXAdapter,
    "gemma2": GemmaAdapter, "gemma3_text": GemmaAdapter,
    "olmo2": Olmo2Adapter,
    "tracr": TracrAdapter,
}


def supported() -> str:
    """The supported model classes, for messages."""
    names = []
    for adapter in dict.fromkeys(ADAPTERS.values()):
        names += adapter.model_classes
    return ", ".join(names)


def adapter_class(config) -> type[Adapter]:
    """The adapter for a model config; a clear error for any other family."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        raise UserError(f"edgeprune cannot prune model_type={model_type!r}. Supported: {supported()}.")
    return ADAPTERS[model_type]


def adapter_for(model) -> Adapter:
    """The adapter over a model instance (a causal LM with its language-modelling head)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ADAPTERS or (model_type != "tracr" and not hasattr(model, "lm_head")):
        raise UserError(f"edgeprune cannot prune {type(model).__name__} (model_type={model_type!r}). Supported: "
                        f"{supported()}; pass the model with its language-modelling head.")
    return ADAPTERS[model_type](model)
