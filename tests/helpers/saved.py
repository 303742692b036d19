"""Count the bytes autograd keeps for backward, by storage (a shared buffer counts once).

Walks the graph from an output: every built-in node's `_saved_*` tensors, every custom Function's
saved tensors and the tensors it keeps on ctx attributes (the delta stack's buffer included).
Model parameters are left out: they are not activations.
"""
import torch

from edgeprune.models.delta_stack import DeltaStack


def saved_storages(output: torch.Tensor, exclude=()) -> dict[int, int]:
    skip = {p.untyped_storage().data_ptr() for p in exclude}
    found: dict[int, int] = {}

    def add(value):
        if isinstance(value, DeltaStack):
            add(value.buffer)
        elif isinstance(value, (tuple, list)):
            for v in value:
                add(v)
        elif isinstance(value, torch.Tensor) and value.numel() > 0:
            storage = value.untyped_storage()
            if storage.data_ptr() not in skip:
                found[storage.data_ptr()] = storage.nbytes()

    todo, seen = [output.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        for name in dir(fn):
            if name.startswith("_saved_"):
                try:
                    add(getattr(fn, name))
                except RuntimeError:  # freed or not a tensor
                    pass
        if hasattr(fn, "saved_tensors"):
            add(fn.saved_tensors)
            add(list(getattr(fn, "__dict__", {}).values()))
        todo.extend(f for f, _ in fn.next_functions)
    return found


def saved_bytes(output, exclude=()) -> int:
    return sum(saved_storages(output, exclude).values())
