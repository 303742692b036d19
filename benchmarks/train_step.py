"""One optimisation step of edgeprune's trainer on fixed token tensors: what the step benchmarks time.

    step = TrainStep.build(hf_model, clean_ids, corrupted_ids, positions, edge_sparsity=0.98)
    loss = step.step()
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("edgeprune") is None:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import torch  # noqa: E402

from edgeprune import prunable  # noqa: E402
from edgeprune.recomputation import checkpointed  # noqa: E402
from edgeprune.tasks.base import Example, Task, TaskDataset  # noqa: E402
from edgeprune.training import TrainConfig, Trainer  # noqa: E402


class TrainStep:
    """A Trainer over fixed tensors; every example is used in every step."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    @classmethod
    def build(cls, model, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor, positions: torch.Tensor,
              edge_sparsity: float = 0.98, ablation: str = "corrupted", **config) -> "TrainStep":
        """positions: (B,) or (B, P) loss positions."""
        positions = positions.reshape(len(clean_ids), -1)
        examples = [Example(c.tolist(), x.tolist(), p.tolist())
                    for c, x, p in zip(clean_ids.cpu(), corrupted_ids.cpu(), positions.cpu())]
        dataset = TaskDataset(Task(), examples)
        config.setdefault("batch_size", len(examples))
        pm = prunable(model, ablation=ablation, backend=config.get("backend"))
        if config.get("checkpointing"):
            pm.set_layer_runner(checkpointed(pm.layer_runner))
        return cls(Trainer(pm, dataset, TrainConfig(edge_sparsity=edge_sparsity, ablation=ablation, **config)))

    def step(self) -> float:
        return float(self.trainer.step()["loss"])
