"""Measure what a forward keeps alive for its backward, by storage (a shared buffer counts once).

Every storage created while the forward runs is tracked with a finaliser; what is still alive when
it returns is exactly what backward will use (saved tensors, tensors on ctx attributes such as the
delta stack's buffer, checkpoint inputs), plus the output. Storages that existed before (weights,
inputs, cached records) are not counted.
"""
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class _Live(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self._finalizers = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = id(storage)
                if key not in self.live and storage.nbytes() > 0:
                    self.live[key] = storage.nbytes()
                    self._finalizers.append(weakref.finalize(storage, self.live.pop, key, None))
        return out


def held_by_forward(fn):
    """(output, {storage id: bytes}) of the storages fn's forward created and still holds."""
    mode = _Live()
    with mode:
        out = fn()
    return out, dict(mode.live)
