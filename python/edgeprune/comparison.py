"""How stable circuits are across seeds: pairwise IoU of their edge sets at each budget, and the
consensus circuit (edges kept by at least k of N runs)."""
from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from itertools import combinations

import torch

from .circuit import Circuit, load_run
from .errors import UserError
from .mib import BUDGETS, MIBGraph, for_budget


@dataclass
class Comparison:
    fractions: list[float]
    iou: list[list[float]]        # per budget, the IoU of every pair of circuits
    labels: list[str]

    def mean(self) -> list[float]:
        """Per budget, the mean IoU over the pairs where at least one circuit has an edge (nan if none)."""
        return [statistics.fmean(d) if (d := [x for x in v if not math.isnan(x)]) else math.nan for v in self.iou]

    def table(self) -> str:
        lines = [f"IoU of edge sets over {len(self.labels)} circuits ({len(self.iou[0])} pairs), at MIB's budgets "
                 "(-: every circuit empty after pruning)",
                 f"  {'fraction':>9} {'mean':>7} {'min':>7} {'max':>7}"]
        for frac, values, mean in zip(self.fractions, self.iou, self.mean()):
            defined = [x for x in values if not math.isnan(x)]
            if not defined:
                lines.append(f"  {frac:>9g} {'-':>7} {'-':>7} {'-':>7}")
                continue
            lines.append(f"  {frac:>9g} {mean:>7.3f} {min(defined):>7.3f} {max(defined):>7.3f}")
        return "\n".join(lines)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a & b| / |a | b| of two boolean masks (nan when both are empty: nothing to agree on)."""
    union = int((a | b).sum())
    return math.nan if union == 0 else int((a & b).sum()) / union


def compare(*runs: Circuit | dict | str, budgets="mib") -> Comparison:
    """Pairwise IoU of the runs' edges at each budget, each cut from its own ranking on MIB's graph.

    A run is a Circuit, {budget: Circuit} from a budget sweep (each budget from its own stage), or
    the folder of either (circuit.load_run).
    """
    runs = tuple(load_run(r) if isinstance(r, (str, os.PathLike)) else r for r in runs)
    if len(runs) < 2:
        raise UserError(f"compare needs at least two circuits, got {len(runs)}")
    first = [r if isinstance(r, Circuit) else r[max(r)] for r in runs]
    if len({c.graph for c in first}) != 1:
        raise UserError("the circuits were found on different graphs; compare circuits of one model")
    mib = MIBGraph(first[0].graph)
    fractions = list(BUDGETS if budgets == "mib" else budgets)
    table = []
    for frac in fractions:
        ranked = [r if isinstance(r, Circuit) else for_budget(r, frac) for r in runs]
        kept = [mib.top_edges(c.mib_scores(mib), mib.budget_edges(frac)) for c in ranked]
        table.append([iou(kept[i], kept[j]) for i, j in combinations(range(len(kept)), 2)])
    labels = [c.config.get("label") or f"seed {c.seed}" for c in first]
    return Comparison(fractions, table, labels)


def consensus(circuits: list[Circuit], k: int) -> Circuit:
    """The edges kept by at least k of the circuits; its scores are the share of circuits keeping each."""
    if not 1 <= k <= len(circuits):
        raise UserError(f"k={k} must lie in [1, {len(circuits)}] (the number of circuits)")
    graph = circuits[0].graph
    if any(c.graph != graph for c in circuits):
        raise UserError("the circuits were found on different graphs; a consensus needs one model's circuits")
    votes = torch.stack([graph.edge_mask(c.edges) for c in circuits]).sum(0)
    kept = (votes >= k).nonzero().flatten().tolist()
    return Circuit(graph, [graph.edges[i] for i in kept], list(graph.writers), edge_scores=votes / len(circuits),
                   score_kind="score", task=circuits[0].task, model=circuits[0].model,
                   config={"label": f"consensus {k}/{len(circuits)}", "seeds": [c.seed for c in circuits]})


__all__ = ["Comparison", "compare", "consensus", "iou"]
