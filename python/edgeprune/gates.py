"""Hard-concrete edge and node gates (docs/method.md 3) over the valid entries of a graph.

Edge gates m and node gates n are stored flat (graph.py gives the order). The effective gate of an
edge is m[w, r] * n[w]: the delta stack holds x_w - c_w, so the node gate folds into the edge
gates of its writer (docs/method.md 2.2) and nothing writer-sized is saved for its gradient.

Two ways to turn log alphas into gate values: `sample` (training: one hard-concrete draw per step,
shared by the batch, keyed by (seed, step)) and `deterministic` (the reference's eval mask: soft
sigmoid(1.2 log_alpha) with the round(sum P(z = 0)) smallest entries of each segment zeroed).
A fixed binary circuit is a plain 0/1 vector (PrunableModel.circuit_gates).
"""
from __future__ import annotations

import torch
from torch import nn

from . import ops
from .graph import Graph, Segment
from .ops.constants import EPS, INIT_MEAN, INIT_STD


def zero_smallest(soft: torch.Tensor, log_alpha: torch.Tensor, segments: list[Segment], eps: float) -> torch.Tensor:
    """Per segment, set the round(sum P(z=0)) smallest soft values to exactly 0 (docs/method.md 3.4).

    Counted over valid entries only; the reference also counted dead rows (docs/method.md 9.7).
    """
    out = soft.clone()
    p_zero = ops.zero_probability(log_alpha, eps)
    for seg in segments:
        k = int(round(float(p_zero[seg.start:seg.stop].sum())))
        if k > 0:
            part = out[seg.start:seg.stop]
            # stable order: ties broken by index, so the result is deterministic
            order = torch.sort(part, stable=True).indices
            part[order[:k]] = 0.0
    return out


def deterministic_masks(edge_log_alpha: torch.Tensor, node_log_alpha: torch.Tensor, graph: Graph,
                        eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic soft edge and node masks of the given log alphas."""
    with torch.no_grad():
        edges = zero_smallest(ops.soft_mask(edge_log_alpha), edge_log_alpha, graph.segments, eps)
        nodes = zero_smallest(ops.soft_mask(node_log_alpha), node_log_alpha, graph.node_segments, eps)
    return edges, nodes


class Gates(nn.Module):
    def __init__(self, graph: Graph, eps: float = EPS):
        super().__init__()
        self.graph = graph
        self.eps = eps
        self.edge_log_alpha = nn.Parameter(torch.empty(graph.num_edges))
        self.node_log_alpha = nn.Parameter(torch.empty(graph.num_writers))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None):
        with torch.no_grad():
            for p in (self.edge_log_alpha, self.node_log_alpha):
                p.copy_(torch.randn(p.shape, generator=generator) * INIT_STD + INIT_MEAN)

    def sample(self, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One draw per gate for this step; step k of a run always gets the same uniforms."""
        n_edges, n_nodes = self.graph.num_edges, self.graph.num_writers
        offset = step * (n_edges + n_nodes)
        edges = ops.hard_concrete(self.edge_log_alpha, seed, offset, self.eps)
        nodes = ops.hard_concrete(self.node_log_alpha, seed, offset + n_edges, self.eps)
        return edges, nodes

    def deterministic(self) -> tuple[torch.Tensor, torch.Tensor]:
        return deterministic_masks(self.edge_log_alpha, self.node_log_alpha, self.graph, self.eps)


def sampled_sparsity(edges: torch.Tensor, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s = 1 - sum(z) / N over valid entries: the estimator the Lagrangian uses (docs/method.md 3.5)."""
    return 1 - edges.sum() / edges.numel(), 1 - nodes.sum() / nodes.numel()


def bisect_threshold(soft: torch.Tensor, target: float, iters: int = 17) -> float:
    """The reference's bisection (docs/method.md 5.1): tau in [0, 1] so that mean(soft > tau) ~ 1 - target.

    If the sparsity at tau exceeds the target, the upper end moves down, else the lower end up,
    until r - l <= 1e-5 (17 halvings). The reference keeps the last tau tried, which lands on either
    side of the final boundary depending on the path; this returns whichever end of the final bracket
    gives the sparsity closer to the target (the lower end on a tie), so a soft mass of 7.99 keeps
    8 edges, not 7.
    """
    def sparsity(tau):
        return 1 - float((soft > tau).float().mean())

    lo, hi = 0.0, 1.0
    for _ in range(iters):
        tau = (lo + hi) / 2
        if sparsity(tau) > target:
            hi = tau
        else:
            lo = tau
        if hi - lo <= 1e-5:
            break
    return lo if abs(sparsity(lo) - target) <= abs(sparsity(hi) - target) else hi


def expected_sparsity(soft: torch.Tensor) -> float:
    """The deterministic model's own sparsity, 1 - mean(soft): the bisection's target."""
    return 1 - float(soft.mean())
