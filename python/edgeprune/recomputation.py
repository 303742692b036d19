"""Activation recomputation per decoder layer (non-reentrant checkpointing), and a count of what
autograd saves. (A run's checkpoint files are edgeprune.checkpoints'.)

With checkpointing, a decoder layer's forward saves nothing for backward but its inputs (an order
handle, its gate slices, all alive anyway); its backward recomputes the layer's forward first. The
delta stack is held once by its autograd functions (models/delta_stack.py) and is not recomputed:
a recomputed write finds its rows already written and leaves them untouched.

It must be non-reentrant: the reference's `gradient_checkpointing` used the reentrant form, which
runs the layer without autograd and hands gradients only to inputs that require grad; its decoder
layers' inputs did not, so no layer gate was ever trained (docs/method.md 9.3). Here gradients flow
through the layer exactly as without checkpointing (tests/distributed/test_recomputation.py
compares them).
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from .models import DIRECT, LayerRunner


class CheckpointedLayers(LayerRunner):
    """Recompute each layer in backward; `inner` runs what it is given (e.g. FSDP's hooks)."""

    def __init__(self, inner: LayerRunner = DIRECT):
        self.inner = inner

    def run_model(self, fn, *args):
        return self.inner.run_model(fn, *args)

    def run_layer(self, index, fn, *args):
        if not torch.is_grad_enabled():
            return self.inner.run_layer(index, fn, *args)

        def checkpointed(*inputs):
            # No RNG inside a layer (dropout is off, gates are sampled outside): nothing to replay.
            return checkpoint(fn, *inputs, use_reentrant=False, preserve_rng_state=False)
        return self.inner.run_layer(index, checkpointed, *args)


def checkpointed(runner: LayerRunner) -> LayerRunner:
    """`runner` with per-layer activation checkpointing added (unchanged if it has it already)."""
    return runner if runner.includes(CheckpointedLayers) else CheckpointedLayers(runner)


def without_checkpointing(runner: LayerRunner) -> LayerRunner:
    """`runner` with its checkpointing removed."""
    if isinstance(runner, CheckpointedLayers):
        return runner.inner
    if runner.inner is not None:
        runner.inner = without_checkpointing(runner.inner)
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


__all__ = ["CheckpointedLayers", "SavedTensors", "checkpointed", "without_checkpointing"]
