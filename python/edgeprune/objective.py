"""The pruning objective (docs/method.md 3.5, 3.6, 4.1): KL(full || circuit) at the task's positions,
plus a Lagrangian on the sampled sparsity against a target ramped linearly from 0.

    loss = KL + lambda1 (s - t) + lambda2 (s - t)^2   [+ the same on node sparsity, with a node target]

The multipliers start at 0 and are trained by gradient ascent (the optimiser's `maximize` groups).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig
from .gates import sampled_sparsity
from .tasks.metrics import kl_per_example


class Lagrangian(nn.Module):
    """The four multipliers and the sparsity targets' ramp."""

    def __init__(self, config: TrainConfig, device=None):
        super().__init__()
        self.config = config
        self.multipliers = nn.ParameterDict({k: nn.Parameter(torch.zeros((), device=device))
                                             for k in ("edge1", "edge2", "node1", "node2")})

    def sparsity_targets(self, step: int) -> tuple[float, float | None]:
        """The edge and node targets at a step: linear from ramp_from (edges; nodes from 0) over
        ramp_steps, then flat."""
        c = self.config
        frac = min(1.0, step / c.ramp_steps) if c.ramp_steps > 0 else 1.0
        node = None if c.node_sparsity is None else c.node_sparsity * frac
        return c.ramp_from + (c.edge_sparsity - c.ramp_from) * frac, node

    def forward(self, s_edge: torch.Tensor, s_node: torch.Tensor, step: int) -> torch.Tensor:
        t_edge, t_node = self.sparsity_targets(step)
        lam = self.multipliers
        penalty = lam["edge1"] * (s_edge - t_edge) + lam["edge2"] * (s_edge - t_edge) ** 2
        if t_node is not None:
            penalty = penalty + lam["node1"] * (s_node - t_node) + lam["node2"] * (s_node - t_node) ** 2
        return penalty


def task_kl(task, logits: torch.Tensor, targets: torch.Tensor, position_mask: torch.Tensor) -> torch.Tensor:
    """Per-example KL(full || circuit) at the loss positions, reduced as the task says."""
    return kl_per_example(task.log_probs(logits.float()), targets, position_mask, task.position_reduction)


__all__ = ["Lagrangian", "sampled_sparsity", "task_kl"]
