"""edgeprune: Edge Pruning (Bhaskar et al., NeurIPS 2024) with fused kernels.

    circuit = edgeprune.train(model, "ioi", edge_sparsity=0.98)
    edgeprune.evaluate(model, circuit, "ioi")

`import edgeprune` never needs a GPU, Triton or the compiled extension; those load on first use.
"""
from importlib import import_module

__version__ = "0.1.0"

# `train`, `evaluate` and `plan` are both functions and the modules that define them. Importing
# them here, once, binds the package attributes to the functions for good (a submodule sets its
# parent's attribute only when first loaded); use `from edgeprune.train import Trainer` for the rest.
from .evaluate import evaluate  # noqa: E402
from .plan import plan  # noqa: E402
from .train import train  # noqa: E402

# name -> (module, attribute) for what loads on first use; attribute None exports the module itself
_EXPORTS = {
    "prunable": ("edgeprune.models", "prunable"),
    "PrunableModel": ("edgeprune.models", "PrunableModel"),
    "Graph": ("edgeprune.graph", "Graph"),
    "num_edges": ("edgeprune.graph", "num_edges"),
    "Circuit": ("edgeprune.circuit", "Circuit"),
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


__all__ = sorted([*_EXPORTS, "train", "evaluate", "plan"])
