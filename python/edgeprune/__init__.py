"""edgeprune: Edge Pruning (Bhaskar et al., NeurIPS 2024) with fused kernels.

    circuit = edgeprune.train(model, "ioi", edge_sparsity=0.98)
    edgeprune.evaluate(model, circuit, "ioi")

`import edgeprune` never needs a GPU, Triton or the compiled extension; those load on first use.
The layers, each importing only those below it: cli -> training, evaluation, planning, demo ->
distributed, recomputation -> tracr -> models, tasks -> circuit, gates, graph, draw -> ops ->
kernels (epkernels, edgeprune._C), errors. tests/test_imports.py enforces it.
"""
from importlib import import_module

from ._version import __version__
from .tasks import register as _register_task

# The Tracr tasks live above the task registry (they need the compiled models): registered by
# name here, so nothing is imported until one is used.
_register_task("tracr-reverse", "edgeprune.tracr.tasks:reverse_dataset")
_register_task("tracr-xproportion", "edgeprune.tracr.tasks:xproportion_dataset")

# name -> (module, attribute) for what loads on first use; attribute None exports the module itself
_EXPORTS = {
    "train": ("edgeprune.training", "train"),
    "TrainConfig": ("edgeprune.config", "TrainConfig"),
    "train_budgets": ("edgeprune.budgets", "train_budgets"),
    "evaluate": ("edgeprune.evaluation", "evaluate"),
    "faithfulness": ("edgeprune.curves", "faithfulness"),
    "attribute": ("edgeprune.attribution", "attribute"),
    "plan": ("edgeprune.planning", "plan"),
    "prunable": ("edgeprune.models", "prunable"),
    "PrunableModel": ("edgeprune.models", "PrunableModel"),
    "Graph": ("edgeprune.graph", "Graph"),
    "num_edges": ("edgeprune.graph", "num_edges"),
    "Circuit": ("edgeprune.circuit", "Circuit"),
    "compare": ("edgeprune.comparison", "compare"),
    "consensus": ("edgeprune.comparison", "consensus"),
    "tasks": ("edgeprune.tasks", None),
    "tracr": ("edgeprune.tracr", None),
    "ops": ("edgeprune.ops", None),
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgeprune' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


__all__ = sorted(_EXPORTS)
