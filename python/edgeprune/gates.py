"""Hard-concrete edge and node gates (method.md section 3) over the valid entries of a graph.

Edge gates m and node gates n are stored flat (graph.py gives the order). The effective gate of an
edge is m[w, r] * n[w]: the delta stack holds x_w - c_w, so the node gate folds into the edge
gates of its writer (method.md 2.2) and nothing writer-sized is saved for its gradient.

Modes: "sample" (training: one hard-concrete draw per step, shared by the batch, keyed by
(seed, step)), "deterministic" (the reference's eval mask: soft sigmoid(1.2 log_alpha) with the
round(sum cdf(0)) smallest entries of each segment zeroed), "binary" (a fixed 0/1 circuit).
"""
from __future__ import annotations

import torch
from torch import nn

from . import ops
from .graph import Graph, Segment

INIT_MEAN, INIT_STD = 10.0, 0.01


def _zero_smallest(soft: torch.Tensor, log_alpha: torch.Tensor, segments: list[Segment], eps: float) -> torch.Tensor:
    """Per segment, set the round(sum P(z=0)) smallest soft values to exactly 0 (method.md 3.4).

    Counted over valid entries only; the reference also counted dead rows (method.md 9.7).
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


class Gates(nn.Module):
    def __init__(self, graph: Graph, eps: float = 1e-6):
        super().__init__()
        self.graph = graph
        self.eps = eps
        self.edge_log_alpha = nn.Parameter(torch.empty(graph.num_edges))
        self.node_log_alpha = nn.Parameter(torch.empty(graph.num_writers))
        self.register_buffer("fixed_edges", None, persistent=False)
        self.register_buffer("fixed_nodes", None, persistent=False)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None):
        with torch.no_grad():
            for p in (self.edge_log_alpha, self.node_log_alpha):
                p.copy_(torch.randn(p.shape, generator=generator) * INIT_STD + INIT_MEAN)

    # ---------------------------------------------------------------- the three modes
    def sample(self, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One draw per gate for this step; step k of a run always gets the same uniforms."""
        n_edges, n_nodes = self.graph.num_edges, self.graph.num_writers
        offset = step * (n_edges + n_nodes)
        edges = ops.hard_concrete(self.edge_log_alpha, seed, offset, self.eps)
        nodes = ops.hard_concrete(self.node_log_alpha, seed, offset + n_edges, self.eps)
        return edges, nodes

    @torch.no_grad()
    def deterministic(self) -> tuple[torch.Tensor, torch.Tensor]:
        edges = _zero_smallest(ops.soft_mask(self.edge_log_alpha), self.edge_log_alpha, self.graph.segments, self.eps)
        nodes = _zero_smallest(ops.soft_mask(self.node_log_alpha), self.node_log_alpha,
                               self.graph.node_segments, self.eps)
        return edges, nodes

    def current(self, seed: int | None = None, step: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The gates a forward uses: fixed circuit if set, else sampled (training) or deterministic."""
        if self.fixed_edges is not None:
            return self.fixed_edges, self.fixed_nodes
        if self.training:
            return self.sample(0 if seed is None else seed, step)
        return self.deterministic()

    def set_fixed(self, edges: torch.Tensor | None, nodes: torch.Tensor | None = None):
        """Fix the gates to given values (a binary circuit); None returns to learned gates."""
        if edges is None:
            self.fixed_edges = self.fixed_nodes = None
            return
        dev = self.edge_log_alpha.device
        self.fixed_edges = edges.to(dev, torch.float32)
        self.fixed_nodes = (torch.ones(self.graph.num_writers) if nodes is None else nodes).to(dev, torch.float32)

    # ---------------------------------------------------------------- sparsity
    def sampled_sparsity(self, edges: torch.Tensor, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s = 1 - sum(z) / N over valid entries: the estimator the Lagrangian uses (method.md 3.5)."""
        return 1 - edges.sum() / edges.numel(), 1 - nodes.sum() / nodes.numel()


def bisect_threshold(soft: torch.Tensor, target: float, iters: int = 17) -> float:
    """The reference's bisection (method.md 5.1): tau in [0, 1] so that mean(soft > tau) ~ 1 - target.

    If the sparsity at tau exceeds the target, the upper end moves down, else the lower end up,
    until r - l <= 1e-5 (17 halvings). The reference keeps the last tau tried, which lands on either
    side of the final boundary depending on the path; we return whichever end of the final bracket
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


