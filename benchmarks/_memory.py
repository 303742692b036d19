"""Peak memory of a benchmark's steps, and its out-of-memory failures.

On CUDA, torch.cuda.max_memory_allocated() (everything allocated by torch, resident weights
included); on the CPU, a TorchDispatchMode that tracks every storage created while it is active
and frees it through a weakref finaliser on the storage object, so storages kept only by autograd
are counted until they really die (PyObject preservation keeps the storage's Python object alive
until then).
"""
from __future__ import annotations

import gc
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MIB = 2 ** 20
GIB = 2 ** 30


class CpuMemoryTracker(TorchDispatchMode):
    """Live bytes of every storage created while active; `peak` is their maximum.

    Storages that existed before (weights, inputs) are not counted: add them with
    resident_bytes(). Views of an already-tracked storage are not counted twice.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, weakref.finalize] = {}
        self._preexisting: set[int] = set()

    def ignore(self, *tensors) -> None:
        for t in tensors:
            self._preexisting.add(t.untyped_storage().data_ptr())

    def reset_peak(self) -> None:
        self.peak = self.current

    def _free(self, key: int, nbytes: int) -> None:
        self.current -= nbytes
        self._live.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.is_sparse:
                continue
            try:
                st = t.untyped_storage()
            except (RuntimeError, NotImplementedError):
                continue
            key = id(st)
            nbytes = st.nbytes()
            if key in self._live or nbytes == 0 or st.data_ptr() in self._preexisting:
                continue
            self._live[key] = weakref.finalize(st, self._free, key, nbytes)
            self.current += nbytes
            if self.current > self.peak:
                self.peak = self.current
        return out


def resident_bytes(*objs) -> int:
    """Bytes of the distinct storages behind modules' parameters and buffers, or tensors."""
    seen = {}
    for obj in objs:
        tensors = list(obj.parameters()) + list(obj.buffers()) if isinstance(obj, torch.nn.Module) else [obj]
        for t in tensors:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in msg.lower() or "CUBLAS_STATUS_ALLOC_FAILED" in msg)


def free_memory(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
