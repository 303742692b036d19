"""The models edgeprune prunes: `prunable(model)` wraps a stock model as a `PrunableModel`
(models/prunable.py), a frozen model with edge and node gates over its computation graph."""
from __future__ import annotations

from .ablations import ABLATIONS, Ablation, ablation_kind
from .forward import DIRECT, LayerRunner
from .optimal_ablation import AblationConstants
from .prunable import RECOMPUTE_READERS, PrunableModel, prunable
from .records import WriterRecord, record_bytes

__all__ = ["ABLATIONS", "Ablation", "AblationConstants", "DIRECT", "LayerRunner", "PrunableModel", "RECOMPUTE_READERS",
           "WriterRecord", "ablation_kind", "prunable", "record_bytes"]
