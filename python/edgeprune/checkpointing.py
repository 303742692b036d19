"""Activation checkpointing per decoder layer (non-reentrant), and a count of what autograd saves.

With checkpointing, a decoder layer's forward saves nothing for backward but its inputs (a token,
its gate slices, all alive anyway); its backward recomputes the layer's forward first. The delta
stack is held once by its autograd functions (models/delta_stack.py) and is not recomputed: the
recomputed writes check that their rows were written by the forward and leave them untouched.

It must be non-reentrant: the reference's `gradient_checkpointing` used the reentrant form, which
runs the layer without autograd and hands gradients only to inputs that require grad; its decoder
layers' inputs did not, so no layer gate was ever trained (method.md 9.3). Here gradients flow
through the layer exactly as without checkpointing (tests/distributed/test_checkpointing.py
compares them).
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils.checkpoint import checkpoint

from .models.delta_stack import recomputing
from .models.disentangled import _DIRECT, LayerRunner, runner_of


def _contexts():
    return contextlib.nullcontext(), recomputing()


class CheckpointedLayers(LayerRunner):
    """Recompute each layer in backward; `inner` runs what it is given (e.g. FSDP's hooks)."""

    def __init__(self, inner: LayerRunner = _DIRECT):
        self.inner = inner

    def model(self, fn, *args):
        return self.inner.model(fn, *args)

    def layer(self, index, fn, *args):
        if not torch.is_grad_enabled():
            return self.inner.layer(index, fn, *args)

        def checkpointed(*inputs):
            # No RNG inside a layer (dropout is off, gates are sampled outside): nothing to replay.
            return checkpoint(fn, *inputs, use_reentrant=False, preserve_rng_state=False, context_fn=_contexts)
        return self.inner.layer(index, checkpointed, *args)


def apply_checkpointing(pm, enabled: bool = True):
    """Turn per-layer activation checkpointing on (or off) for a prunable model; returns it."""
    adapter = pm.adapter
    current = runner_of(adapter)
    if enabled and not _has_checkpointing(current):
        adapter.runner = CheckpointedLayers(current)
    elif not enabled and _has_checkpointing(current):
        adapter.runner = _without_checkpointing(current)
    return pm


def _has_checkpointing(runner) -> bool:
    while runner is not None:
        if isinstance(runner, CheckpointedLayers):
            return True
        runner = getattr(runner, "inner", None)
    return False


def _without_checkpointing(runner):
    if isinstance(runner, CheckpointedLayers):
        return runner.inner
    runner.inner = _without_checkpointing(runner.inner)
    return runner


class SavedTensors:
    """Bytes autograd saves for backward while active: distinct storages, views counted once.

        with SavedTensors(exclude=model.parameters()) as saved:
            loss = forward()
        saved.bytes

    Tensors saved inside a checkpointed region are not saved (the checkpoint's own hooks take them),
    so they are not counted. Storages of `exclude` (weights, cached records) are not counted. The
    delta stack's buffer is held by its autograd functions, not saved: add it separately.
    """

    def __init__(self, exclude=()):
        self._exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self._seen: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t):
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key and key not in self._exclude:
            self._seen[key] = storage.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self._hooks.__exit__(*exc)


__all__ = ["CheckpointedLayers", "SavedTensors", "apply_checkpointing"]
