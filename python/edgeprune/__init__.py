"""edgeprune: Edge Pruning (Bhaskar et al., NeurIPS 2024) with fused kernels.

    circuit = edgeprune.train(model, "ioi", edge_sparsity=0.98)
    edgeprune.evaluate(model, circuit, "ioi")

Heavy modules load on first use, so `import edgeprune` stays cheap and never needs a GPU.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "prunable": "edgeprune.models",
    "PrunableModel": "edgeprune.models",
    "Graph": "edgeprune.graph",
    "num_edges": "edgeprune.graph",
    "train": "edgeprune.train",
    "evaluate": "edgeprune.evaluate",
    "Circuit": "edgeprune.circuit",
    "plan": "edgeprune.plan",
    "tasks": "edgeprune.tasks",
    "tracr": "edgeprune.tracr",
    "ops": "edgeprune.ops",
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edgeprune' has no attribute {name!r}")
    module = import_module(_EXPORTS[name])
    return module if module.__name__.endswith("." + name) else getattr(module, name)


__all__ = sorted(_EXPORTS)
