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

    def sparsity_targets(self, step):
        """The edge and node targets at a step: linear from ramp_from (edges; nodes from 0) over
        ramp_steps, then flat. Floats for an int step; 0-dim tensors for a tensor step (a compiled
        step, whose graph must not change with the step)."""
        c = self.config
        if c.ramp_steps <= 0:
            frac = 1.0
        elif isinstance(step, torch.Tensor):
            frac = (step / c.ramp_steps).clamp(max=1.0)
        else:
            frac = min(1.0, step / c.ramp_steps)
        node = None if c.node_sparsity is None else c.node_sparsity * frac
        return c.ramp_from + (c.edge_sparsity - c.ramp_from) * frac, node

    def forward(self, s_edge: torch.Tensor, s_node: torch.Tensor, step) -> torch.Tensor:
        t_edge, t_node = self.sparsity_targets(step)
        lam = self.multipliers
        penalty = lam["edge1"] * (s_edge - t_edge) + lam["edge2"] * (s_edge - t_edge) ** 2
        if t_node is not None:
            penalty = penalty + lam["node1"] * (s_node - t_node) + lam["node2"] * (s_node - t_node) ** 2
        return penalty

    def after_update(self, step: int) -> None:
        """Nothing: the multipliers are trained by the optimiser (the steered penalty's hook)."""


def task_kl(task, logits: torch.Tensor, targets: torch.Tensor, position_mask: torch.Tensor) -> torch.Tensor:
    """Per-example KL(full || circuit) at the loss positions, reduced as the task says."""
    return kl_per_example(task.log_probs(logits.float()), targets, position_mask, task.position_reduction)


def logit_diff_gap(task, logits: torch.Tensor, targets: torch.Tensor, answers: torch.Tensor,
                   distractors: torch.Tensor) -> torch.Tensor:
    """Per-example (m(circuit) - m(full))^2, m the logit difference at the first loss position.

    The objective matched to faithfulness on the logit difference (TrainConfig.objective
    "logit_diff"), per example so that no example's gap can cancel another's. The full model's m
    is read from its log-probabilities (a difference of log-probabilities is one of logits).
    """
    first = logits[:, 0].float()
    rows = torch.arange(len(first), device=first.device)
    circuit = first[rows, answers] - first[rows, distractors]
    a, d = answers, distractors
    if task.vocab is not None:  # targets cover the task's vocabulary only: a token's index in it
        vocab = torch.tensor(task.vocab, device=first.device)
        a, d = ((ids[:, None] == vocab).int().argmax(-1) for ids in (answers, distractors))
    full = targets[rows, 0, a] - targets[rows, 0, d]
    return (circuit - full.float()) ** 2


__all__ = ["Lagrangian", "logit_diff_gap", "sampled_sparsity", "task_kl"]
