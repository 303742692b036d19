"""The result of a pruning run: a set of edges, with everything needed to reproduce and compare it.

Files written by Circuit.save(folder):
  circuit.json            edges, nodes, sparsities, metrics, model, task, config, seed, graph layout
  edges.json              the reference's bare [[writer, reader], ...] list, for other tools
  log_alphas.safetensors  learned gate log-alphas, valid entries only, one tensor per gate group:
                          "edge.a{l}.q|k|v" (readers, prefix), "edge.m{l}" (1, prefix), "edge.resid_post"
                          (1, W); "node.tok_embeds" | "node.pos_embeds" | "node.embeds" (1, 1),
                          "node.a{l}" (1, H), "node.m{l}" (1, 1)
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace

import torch

from .draw import circuit_to_dot
from .gates import bisect_threshold, deterministic_masks, expected_sparsity
from .graph import Graph
from .ops.constants import EPS
from .errors import MissingFile, UserError


@dataclass
class Circuit:
    graph: Graph
    edges: list[tuple[str, str]]
    nodes: list[str]
    edge_scores: torch.Tensor | None = None   # learned edge log-alphas, graph order
    node_scores: torch.Tensor | None = None   # learned node log-alphas, writer order
    metrics: dict = field(default_factory=dict)
    model: str = ""
    task: str = ""
    config: dict = field(default_factory=dict)
    seed: int | None = None
    raw_edges: int | None = None              # edges above the threshold before the node filter

    @classmethod
    def from_log_alphas(cls, graph: Graph, edge_log_alpha: torch.Tensor, node_log_alpha: torch.Tensor,
                        eps: float = EPS, **fields) -> "Circuit":
        """The final circuit of a run (docs/method.md 5.1): deterministic masks, thresholds bisected to
        the model's own soft sparsity, edges and nodes apart; only edges of kept writers are listed.
        """
        edges_soft, nodes_soft = deterministic_masks(edge_log_alpha, node_log_alpha, graph, eps)
        tau_e = bisect_threshold(edges_soft, expected_sparsity(edges_soft))
        tau_n = bisect_threshold(nodes_soft, expected_sparsity(nodes_soft))
        keep_nodes = (nodes_soft > tau_n).cpu()
        raw = (edges_soft > tau_e).cpu()
        keep = raw & keep_nodes[graph.edge_writer_indices()]
        config = dict(fields.pop("config", {})) | {"thresholds": [tau_e, tau_n]}
        return cls(graph=graph, edges=[graph.edges[i] for i in keep.nonzero().flatten().tolist()],
                   nodes=[w for w, k in zip(graph.writers, keep_nodes.tolist()) if k],
                   edge_scores=edge_log_alpha.detach().float().cpu().clone(),
                   node_scores=node_log_alpha.detach().float().cpu().clone(),
                   raw_edges=int(raw.sum()), config=config, **fields)

    # ------------------------------------------------------------------ sparsity
    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def edge_sparsity(self) -> float:
        """1 - edges above the threshold / all edges: the sparsity the bisection matched (edge gates alone)."""
        kept = self.raw_edges if self.raw_edges is not None else len(self.edges)
        return 1 - kept / self.graph.num_edges

    @property
    def effective_edge_sparsity(self) -> float:
        """Counts an edge only if its writer node is kept too (the reference's 'overall' sparsity)."""
        kept = set(self.nodes)
        return 1 - sum(w in kept for w, _ in self.edges) / self.graph.num_edges

    @property
    def node_sparsity(self) -> float:
        return 1 - len(self.nodes) / self.graph.num_writers

    # ------------------------------------------------------------------ cuts of the learned ranking
    def at_edges(self, k: int) -> "Circuit":
        """The k edges with the largest learned log-alpha (ties broken by edge index)."""
        if self.edge_scores is None:
            raise UserError("this circuit has no learned scores to rank edges by (it was built from a fixed list)")
        if not 0 <= k <= self.graph.num_edges:
            raise UserError(f"k={k} is outside [0, {self.graph.num_edges}] (the graph's edge count)")
        order = torch.sort(self.edge_scores, descending=True, stable=True).indices[:k].sort().values
        all_edges = self.graph.edges
        return replace(self, edges=[all_edges[i] for i in order.tolist()], metrics={}, raw_edges=None)

    def at_sparsity(self, sparsity: float) -> "Circuit":
        """Keep round((1 - sparsity) N) edges of the learned ranking."""
        if not 0 <= sparsity <= 1:
            raise UserError(f"sparsity must lie in [0, 1], got {sparsity}")
        return self.at_edges(round((1 - sparsity) * self.graph.num_edges))

    # ------------------------------------------------------------------ files
    def summary(self) -> dict:
        return {
            "model": self.model, "task": self.task, "seed": self.seed,
            "graph": asdict(self.graph),
            "num_edges": len(self.edges), "raw_edges": self.raw_edges, "total_edges": self.graph.num_edges,
            "edge_sparsity": self.edge_sparsity, "effective_edge_sparsity": self.effective_edge_sparsity,
            "num_nodes": len(self.nodes), "total_nodes": self.graph.num_writers, "node_sparsity": self.node_sparsity,
            "metrics": self.metrics, "config": self.config,
        }

    def save(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        data = self.summary() | {"nodes": self.nodes, "edges": [list(e) for e in self.edges]}
        with open(os.path.join(folder, "circuit.json"), "w") as f:
            json.dump(data, f, indent=1, default=_jsonable)
        with open(os.path.join(folder, "edges.json"), "w") as f:
            json.dump([list(e) for e in self.edges], f)
        if self.edge_scores is not None:
            from safetensors.torch import save_file
            save_file(_score_tensors(self.graph, self.edge_scores, self.node_scores),
                      os.path.join(folder, "log_alphas.safetensors"))

    @classmethod
    def load(cls, folder: str) -> "Circuit":
        path = os.path.join(folder, "circuit.json")
        if not os.path.exists(path):
            raise MissingFile(f"no circuit.json in {folder!r}: pass a folder written by Circuit.save")
        with open(path) as f:
            data = json.load(f)
        graph = Graph(**data["graph"])
        edge_scores = node_scores = None
        scores = os.path.join(folder, "log_alphas.safetensors")
        if os.path.exists(scores):
            from safetensors.torch import load_file
            edge_scores, node_scores = _flat_scores(graph, load_file(scores))
        return cls(graph, [tuple(e) for e in data["edges"]], data["nodes"], edge_scores, node_scores,
                   data.get("metrics", {}), data.get("model", ""), data.get("task", ""), data.get("config", {}),
                   data.get("seed"), data.get("raw_edges"))

    def to_dot(self, title: str | None = None) -> str:
        return circuit_to_dot(self, title)

    def __repr__(self):
        raw = "" if self.raw_edges in (None, len(self.edges)) else \
            f" ({self.raw_edges} above the threshold, sparsity {self.edge_sparsity:.4f}; the rest have pruned writers)"
        return (f"Circuit({len(self.edges)} of {self.graph.num_edges} edges, effective sparsity "
                f"{self.effective_edge_sparsity:.4f}{raw}, {len(self.nodes)} of {self.graph.num_writers} nodes, "
                f"task={self.task!r})")


def _jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def _score_tensors(graph: Graph, edges: torch.Tensor, nodes: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {f"edge.{s.name}": edges[s.start:s.stop].reshape(s.rows, s.cols) for s in graph.segments}
    out |= {f"node.{s.name}": nodes[s.start:s.stop].reshape(s.rows, s.cols) for s in graph.node_segments}
    return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}


def _flat_scores(graph: Graph, tensors: dict[str, torch.Tensor]):
    edges = torch.cat([tensors[f"edge.{s.name}"].reshape(-1) for s in graph.segments])
    nodes = torch.cat([tensors[f"node.{s.name}"].reshape(-1) for s in graph.node_segments])
    return edges, nodes
