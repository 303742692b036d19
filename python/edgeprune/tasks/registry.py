"""Task names -> dataset factories. edgeprune registers its built-in tasks; users add their own with `register`.

A factory is called as factory(tokenizer, split="train", n=None, seed=0) and returns a
TaskDataset. It may also be given as a "module:function" string, imported on first use, so that
registering a task does not import its dependencies.
"""
from __future__ import annotations

from importlib import import_module
from typing import Callable
from ..errors import UserError

_FACTORIES: dict[str, Callable | str] = {}


def register(name: str, factory: Callable | str, *, replace: bool = False) -> None:
    """Add a task. Registering the same factory again (also as its "module:function") is a no-op."""
    if name in _FACTORIES and not replace:
        if _same(_FACTORIES[name], factory):
            return
        raise UserError(f"a task named {name!r} is already registered (pass replace=True to replace it)")
    _FACTORIES[name] = factory


def _same(a, b) -> bool:
    def path(f):
        return f if isinstance(f, str) else f"{getattr(f, '__module__', '')}:{getattr(f, '__qualname__', '')}"
    return a is b or path(a) == path(b)


def names() -> list[str]:
    return sorted(_FACTORIES)


def factory(name: str) -> Callable:
    if name not in _FACTORIES:
        raise UserError(f"unknown task {name!r}; known tasks: {', '.join(names())} "
                        "(or give a path to a .jsonl file of {\"clean\", \"corrupted\"} pairs)")
    entry = _FACTORIES[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(import_module(module), attr)
        _FACTORIES[name] = entry
    return entry
