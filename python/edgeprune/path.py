"""A pruning path: one run through every circuit size, and the order in which the edges leave it.

    circuit = edgeprune.train(model, "ioi", edge_sparsity=0.9995, path=True)   # circuit.ranking
    circuits = edgeprune.train_budgets(model, "ioi", budgets="mib", path=True)  # nested, one per budget

A path run's target moves geometrically in the fraction of edges kept, from the sparsity the gates
start at to `edge_sparsity` over `ramp_steps`: kept(t) = k0 (k1 / k0)^(t / ramp_steps). Every decade
of circuit size gets the same number of steps, so MIB's small budgets (0.1% to 5%) are trained as
long as its large ones. The learning rate stays flat after its warm-up, so the gates still move when
the circuit is smallest.

The pressure that makes the circuit follow the target is not the paper's Lagrangian (whose
multipliers grow by one Adam step at a time, and under weight decay never past about 1/decay) but a
penalty lambda * mean P(z > 0) on the expected fraction of edges kept, with lambda steered by the
run itself: after each step it is multiplied by e^rate when more edges are in than the target keeps,
and by e^-rate when fewer. So lambda finds the objective's own scale within tens of steps, whatever
that scale is (KL, or the logit difference's squared gap), and the circuit keeps pace with the target.

After every step each edge is *in* or *out*: in when its gate and its writer's gate each keep it with
probability above 1/2 (log alpha above beta ln(1/11), edgeprune.warmstart.LOG_ALPHA_HALF). An edge's
exit is the last step at which it was in; it left the circuit for good after it. The ranking orders
edges by exit, latest first, ties by log alpha at that step; edges never in come last, by their final
log alpha. Every prefix of the ranking is then a circuit the run trained at about that size:
when k edges are in at step t, the k top-ranked edges are those still in at t or later.
"""
from __future__ import annotations

import math

import torch

from torch import nn

from .graph import Graph, rank_scores
from .ops.constants import BETA, LOG_RATIO

IN = BETA * LOG_RATIO   # log alpha at which P(z > 0) = 1/2
START_LAMBDA = 1.0      # the penalty's weight at step 0; the rate brings it to the objective's scale


def path_target(step, start: float, end: float, ramp_steps: int):
    """The path's sparsity target at a step: edges kept fall geometrically from 1 - start to 1 - end
    over ramp_steps, then stay. A float for an int step, a 0-dim tensor for a tensor step."""
    k0, k1 = max(1.0 - start, 1e-12), max(1.0 - end, 1e-12)
    if ramp_steps <= 0:
        return 1.0 - k1
    if isinstance(step, torch.Tensor):
        frac = (step / ramp_steps).clamp(max=1.0)
        return 1.0 - k0 * torch.exp(frac * math.log(k1 / k0))
    return 1.0 - k0 * (k1 / k0) ** min(1.0, step / ramp_steps)


class SteeredPenalty(nn.Module):
    """The path's sparsity pressure (module docstring), in the place of the Lagrangian: same call,
    same logged multipliers ("edge1" holds lambda; none is trained by the optimiser). A run that is
    not a path (TrainConfig.steer) follows the paper's linear ramp with it instead."""

    def __init__(self, config, gates, device=None, exits: ExitRecorder | None = None):
        super().__init__()
        self.config = config   # TrainConfig.validate refuses a node target with it
        self._gates = [gates]   # not a submodule: the gates are the model's
        self.exits = exits     # a path records each edge's exit as it follows the edges in
        self._writer = gates.graph.edge_writer_indices().to(device)
        self.multipliers = nn.ParameterDict({k: nn.Parameter(torch.zeros((), device=device), requires_grad=False)
                                             for k in ("edge1", "edge2", "node1", "node2")})
        self.multipliers["edge1"].data.fill_(START_LAMBDA)

    def sparsity_targets(self, step):
        c = self.config
        if c.path:
            return path_target(step, c.ramp_from, c.edge_sparsity, c.ramp_steps), None
        frac = 1.0 if c.ramp_steps <= 0 else (step / c.ramp_steps).clamp(max=1.0) if isinstance(
            step, torch.Tensor) else min(1.0, step / c.ramp_steps)
        return c.ramp_from + (min(c.edge_sparsity, 1.0) - c.ramp_from) * frac, None

    def forward(self, s_edge: torch.Tensor, s_node: torch.Tensor, step) -> torch.Tensor:
        kept = torch.sigmoid(self._gates[0].edge_log_alpha - IN).mean()
        return self.multipliers["edge1"] * kept

    @torch.no_grad()
    def after_update(self, step: int) -> None:
        """lambda after the step's update, steered by the edges in now (a device tensor: nothing waits
        for the device); a path records their exits first."""
        g = self._gates[0]
        now = self.exits.update(step, g.edge_log_alpha, g.node_log_alpha) if self.exits is not None else \
            inside(g.edge_log_alpha, g.node_log_alpha, self._writer).sum()
        want = (1 - self.sparsity_targets(step + 1)[0]) * g.graph.num_edges
        sign = (now > want).float() * 2 - 1
        self.multipliers["edge1"].mul_(torch.exp(sign * self.config.path_rate))


def inside(edge_log_alpha: torch.Tensor, node_log_alpha: torch.Tensor, writer: torch.Tensor) -> torch.Tensor:
    """Which edges are in: their gate and their writer's each keep them with probability above 1/2."""
    return (edge_log_alpha.detach().float() > IN) & (node_log_alpha.detach().float()[writer] > IN)


class ExitRecorder:
    """Per edge: the last step at which it was in, and its log alpha then (device tensors, no sync)."""

    def __init__(self, graph: Graph, device=None):
        self.writer = graph.edge_writer_indices().to(device)
        self.last_in = torch.full((graph.num_edges,), -1, dtype=torch.int64, device=device)
        self.at_exit = torch.full((graph.num_edges,), -math.inf, device=device)

    @torch.no_grad()
    def update(self, step: int, edge_log_alpha: torch.Tensor, node_log_alpha: torch.Tensor) -> torch.Tensor:
        """Record the edges in after this step; returns how many (a device tensor)."""
        now = inside(edge_log_alpha, node_log_alpha, self.writer)
        self.last_in.masked_fill_(now, step)
        self.at_exit.copy_(torch.where(now, edge_log_alpha.detach().float(), self.at_exit))
        return now.sum()

    @torch.no_grad()
    def ranking(self, final_edge_log_alpha: torch.Tensor) -> torch.Tensor:
        """Scores in (0, 1], graph order, higher = left later: 1 - rank / N of the exit order."""
        return exit_ranking(self.last_in.cpu(), self.at_exit.cpu(), final_edge_log_alpha.detach().float().cpu())

    def state_dict(self) -> dict:
        return {"last_in": self.last_in.clone(), "at_exit": self.at_exit.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.last_in.copy_(state["last_in"])
        self.at_exit.copy_(state["at_exit"])


def exit_ranking(last_in: torch.Tensor, at_exit: torch.Tensor, final: torch.Tensor) -> torch.Tensor:
    """The ranking of the module docstring as scores 1 - rank / N (the best edge 1, the worst 1/N)."""
    return rank_scores(last_in, torch.where(last_in < 0, final, at_exit))   # exit step first, then log alpha


__all__ = ["ExitRecorder", "IN", "SteeredPenalty", "exit_ranking", "inside", "path_target"]
