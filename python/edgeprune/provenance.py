"""Where a circuit's model came from, recorded so that it can be found and checked again: its hub
id or absolute folder, its width, and a fingerprint of its weights.

The fingerprint hashes every tensor's name and shape and SAMPLE values spread evenly over it,
rounded to bfloat16 first, so the same weights loaded in float32 or bfloat16 give the same
fingerprint (in float16 they may not: pass check_weights=False / --other-weights). Another
checkpoint or a fine-tune gives another one, unless it changes no sampled entry.
"""
from __future__ import annotations

import hashlib

import torch

from .errors import UserError
from .identity import sampled_values
from .loading import model_source

SAMPLE = 64  # values hashed per tensor


def weights_fingerprint(model: torch.nn.Module) -> str:
    """The hash of the weights' names, shapes and SAMPLE values per tensor, rounded to bfloat16
    ("" when the weights are not all here: a meta-device or sharded model)."""
    h = hashlib.sha256()
    for name, t, sample in sampled_values(model, SAMPLE):
        if sample is None:
            return ""
        h.update(f"{name}|{tuple(t.shape)}|".encode())
        h.update(sample.to(torch.bfloat16).float().numpy().tobytes())
    return h.hexdigest()[:16]


def model_record(pm, sharded: bool = False) -> dict:
    """A Circuit's model fields for a PrunableModel: source, weights and d_model."""
    return {"source": model_source(pm.model), "weights": "" if sharded else weights_fingerprint(pm.model),
            "d_model": pm.adapter.d_model}


def check_weights(circuit, model: torch.nn.Module, given: str) -> None:
    """Refuse a model whose weights are not those `circuit` was found on (when the circuit records them)."""
    if not getattr(circuit, "weights", "") or not isinstance(model, torch.nn.Module):
        return
    mine = weights_fingerprint(model)
    if mine and mine != circuit.weights:
        raise UserError(f"the circuit was found on other weights than those of {given} (weights fingerprint "
                        f"{circuit.weights} recorded for {circuit.source or circuit.model}, {mine} now): evaluate it "
                        "on the model it was found on, or pass check_weights=False (--other-weights) to evaluate "
                        "it on these weights on purpose")


__all__ = ["check_weights", "model_record", "weights_fingerprint"]
