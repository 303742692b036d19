"""Warm start: Edge Pruning's initial edge log alphas from an attribution's scores.

    scored = edgeprune.attribute(model, "ioi", method="eap-ig-inputs")
    circuit = edgeprune.train(model, "ioi", edge_sparsity=0.98, init=scored)

The mapping (docs/method.md 11.2). Edges are ranked by |score| (a strongly negative edge matters
to faithfulness as much as a strongly positive one; ties go to the earlier edge). The top
round((1 - sparsity) N) are open. Each edge's distance from the cut is its rank quantile measured
on its own side, d in [-1, 1]: d = 1 for the best edge, 0 at the cut, -1 for the worst. Then

    log alpha = LOG_ALPHA_HALF + d / temperature

where LOG_ALPHA_HALF = beta ln(1/11) ~ -1.60 is the log alpha at which a gate is kept (z > 0) with
probability 1/2. With the defaults (sparsity 0.9, temperature 0.2) the best edge starts at 3.4 and
the worst at -6.6; the closed edges nearest the cut sit at the threshold and still receive
gradient, so training can reopen them. Ranks rather than raw scores make the mapping the same for
every method, whatever the scale of its scores. Node gates keep their usual initialisation.
"""
from __future__ import annotations

import hashlib

import torch

from .circuit import Circuit
from .errors import UserError
from .graph import Graph
from .ops.constants import BETA, LEFT, LOG_RATIO, RIGHT

LOG_ALPHA_HALF = BETA * LOG_RATIO   # P(z > 0) = sigmoid(log_alpha - beta ln(1/11)) = 1/2
SPARSITY, TEMPERATURE = 0.9, 0.2


def init_scores(init, graph: Graph, ranking: str = "score") -> torch.Tensor:
    """The per-edge scores of a warm start (a Circuit with scores, or a tensor in graph order), checked.

    ranking "connected": the scores re-ranked for connected cuts (Circuit.connected), so that the
    edges starting open form a circuit of whole paths from the input to the logits, none dangling.
    """
    if isinstance(init, Circuit):
        if init.graph != graph:
            raise UserError(f"the warm-start scores were computed on the graph {init.graph} but the model's graph is "
                            f"{graph}: attribute the same model with the same embedding_nodes and kv_edges "
                            "(attribute's default is kv_edges='query', train's 'group')")
        scores = init.keep_scores()
    elif isinstance(init, torch.Tensor):
        scores = init
    else:
        raise UserError(f"init must be a Circuit with scores (edgeprune.attribute, Circuit.load) or a tensor of "
                        f"per-edge scores, not {type(init).__name__}")
    scores = scores.detach().double().cpu().reshape(-1)
    if scores.numel() != graph.num_edges:
        raise UserError(f"init has {scores.numel()} scores but the model's graph has {graph.num_edges} edges "
                        "(scores are per edge, in graph order)")
    if not bool(torch.isfinite(scores).all()):
        raise UserError("init scores must be finite")
    if ranking == "connected":   # the checked scores, re-ranked as their circuit cuts them
        circuit = init if isinstance(init, Circuit) else \
            Circuit(graph, [], list(graph.writers), edge_scores=scores, score_kind="score")
        scores = circuit.connected().keep_scores().detach().double().cpu()
    return scores


def init_log_alpha(scores: torch.Tensor, sparsity: float = SPARSITY, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Initial edge log alphas, float32, from per-edge scores (the mapping in the module docstring)."""
    if not 0 < sparsity < 1:
        raise UserError(f"the warm start's sparsity is a fraction of edges starting closed, in (0, 1); got {sparsity}")
    if not temperature > 0:
        raise UserError(f"the warm start's temperature must be positive, got {temperature}")
    n = scores.numel()
    order = torch.sort(scores.abs(), descending=True, stable=True).indices
    rank = torch.empty(n, dtype=torch.float64)
    rank[order] = torch.arange(n, dtype=torch.float64)        # 0 = the best edge
    k = round((1 - sparsity) * n)                             # edges starting open
    d = torch.where(rank < k, (k - rank) / max(k, 1), -(rank - k + 1) / max(n - k, 1))
    return (LOG_ALPHA_HALF + d / temperature).float()


def expected_sparsity(log_alpha: torch.Tensor, points: int = 256) -> float:
    """1 - mean E[z] of hard-concrete gates: the sampled sparsity a run starts from, in expectation."""
    u = (torch.arange(points, dtype=torch.float64) + 0.5) / points
    noise = torch.log(u) - torch.log1p(-u)
    kept = 0.0
    for chunk in log_alpha.detach().double().cpu().split(1 << 14):
        s = torch.sigmoid((noise[None, :] + chunk[:, None]) / BETA)
        kept += float((s * (RIGHT - LEFT) + LEFT).clamp(0, 1).mean(1).sum())
    return 1 - kept / log_alpha.numel()


def summary(init, sparsity: float, temperature: float, log_alpha: torch.Tensor, ranking: str = "score") -> dict:
    """What a circuit's config (and a checkpoint's run identity) records about its warm start; the
    fingerprint is a hash of the initial log alphas."""
    source = init if isinstance(init, str) else \
        init.config.get("method", init.score_kind) if isinstance(init, Circuit) else "scores"
    values = log_alpha.detach().float().cpu().contiguous().numpy().tobytes()
    return {"source": source, "sparsity": sparsity, "temperature": temperature,
            "ranking": "connected |score|" if ranking == "connected" else "|score|",
            "expected_sparsity": expected_sparsity(log_alpha), "fingerprint": hashlib.sha256(values).hexdigest()[:16]}


__all__ = ["LOG_ALPHA_HALF", "expected_sparsity", "init_log_alpha", "init_scores", "summary"]
