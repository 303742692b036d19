"""The Mechanistic Interpretability Benchmark's circuit format and budgets (MIB, Mueller et al. 2025).

MIB scores a circuit by cutting its ranking of edges at fixed fractions of MIB's edge count. Its
graph differs from edgeprune's in three ways, all handled here:
- one `input` node where edgeprune may have two embedding writers (token and position: a MIB input
  edge stands for both, scored 1 - (1 - p_tok)(1 - p_pos)) or none (embedding_nodes=0: the clean
  embeddings always reach every reader, so every input edge is in the circuit, but none has a
  score: rankings, curves and scored exports of such a graph are refused, naming the fix);
- grouped-query models are scored per query head. A graph with key and value readers per query
  head (Graph.kv_edges "query") maps one to one. A grouped graph ("group": one K and one V reader
  per KV group) is coarser: its K/V edges are copied to each query head of the group on export
  (the files then say kv_edges "group" in their cfg, and a warning says so), and on import an
  edgeprune K/V edge is kept when any of its copies is, scored by the largest (a warning counts
  the edges whose copies disagreed);
- names: nodes `input`, `a{L}.h{H}`, `m{L}`, `logits`; edges `parent->child`, with `<q>`, `<k>` or
  `<v>` when the child is a head;
- a graph with one writer per layer's attention (attention_writers="layer") has per-head nodes in
  MIB's: each head's edges carry the layer writer's score, and the layer's edge is kept when any is.

Layout (as MIB's evaluator): forward (source) nodes input, then per layer its heads and its MLP;
backward (destination) nodes per layer the H query inputs, the H key inputs, the H value inputs and
the MLP, then logits. Scores and membership are dense (n_forward, n_backward) tensors.

Top-n (`top_edges`): the n highest scores (ties: the earlier edge in MIB's row-major order wins),
then MIB's pruning to a fixed point: a node needs an incoming and an outgoing edge (input always
has incoming; logits always stays), an edge needs both its nodes.
"""
from __future__ import annotations

import json
import os
import warnings

import torch

from .errors import MissingFile, UserError
from .graph import Graph, rank_scores

BUDGETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
NO_INPUT_SCORES = ("this circuit was found on a graph without embedding nodes (embedding_nodes=0), so MIB's input "
                   "edges have no score to rank them by; train or attribute it with one embedding node "
                   "(embedding_nodes=1, --embedding-nodes 1) to score, cut or export it for MIB")


class MIBGraph:
    """MIB's edge graph over an edgeprune Graph, and the map between the two."""

    def __init__(self, graph: Graph, d_model: int = 0):
        self.graph = graph
        L, H = graph.num_layers, graph.num_heads
        self.cfg = {"n_layers": L, "n_heads": H, "parallel_attn_mlp": graph.parallel, "d_model": d_model}
        if graph.grouped_kv:  # the K/V scores are a group's, copied per query head
            self.cfg["kv_edges"] = "group"
        self.forward_names = ["input"]
        for layer in range(L):
            self.forward_names += [f"a{layer}.h{h}" for h in range(H)] + [f"m{layer}"]
        self.backward_names = []
        for layer in range(L):
            self.backward_names += [f"a{layer}.h{h}<{x}>" for x in "qkv" for h in range(H)] + [f"m{layer}"]
        self.backward_names.append("logits")
        nf, nb = len(self.forward_names), len(self.backward_names)
        self.n_forward, self.n_backward = nf, nb

        # which MIB edges exist, and the edgeprune edges each one stands for (-1: none). A reader's
        # edge to writer w has index segment.start + row * segment.cols + w; MIB's forward node
        # f >= 1 is head or MLP j of layer l, edgeprune's writer E + l (A + 1) + j (A = H writers per
        # layer's attention), or, with one writer per layer's attention (A = 1), that writer for
        # every head: each head's MIB edges then stand for the layer's one edge.
        E = graph.embedding_nodes
        A = graph.attn_writers_per_layer
        layer_of, j = torch.arange(nf - 1) // (H + 1), torch.arange(nf - 1) % (H + 1)
        slot = torch.where(j < H, j if A == H else torch.zeros_like(j), torch.full_like(j, A))
        writer_of = E + layer_of * (A + 1) + slot
        segments = {seg.name: seg for seg in graph.segments}
        parents, first_edge, feeds = [], [], []
        group = H // graph.num_kv_readers
        for layer in range(L):
            p = 1 + layer * (H + 1)
            for kind in "qkv":
                seg = segments[f"a{layer}.{kind}"]
                for h in range(H):
                    row = h if kind == "q" else h // group
                    parents.append(p), first_edge.append(seg.start + row * seg.cols), feeds.append(p + h)
            seg = segments[f"m{layer}"]
            parents.append(p + (0 if graph.parallel else H)), first_edge.append(seg.start), feeds.append(p + H)
        seg = graph.final_segment
        parents.append(nf), first_edge.append(seg.start), feeds.append(nf)
        parents, first_edge = torch.tensor(parents), torch.tensor(first_edge)
        self.feeds = torch.tensor(feeds)   # the forward node each backward node feeds (nf: logits)
        f = torch.arange(nf)[:, None]
        self.real = f < parents[None, :]
        self.edge_map = torch.full((nf, nb, max(E, 1)), -1, dtype=torch.long)
        self.edge_map[1:, :, 0] = torch.where(self.real[1:], first_edge[None, :] + writer_of[:, None], -1)
        for j in range(E):
            self.edge_map[0, :, j] = first_edge + j

    @property
    def num_edges(self) -> int:
        return int(self.real.sum())

    def edge_names(self) -> list[str]:
        """Every MIB edge's name, in row-major order of the dense layout."""
        return [f"{self.forward_names[f]}->{self.backward_names[b]}" for f, b in self.real.nonzero().tolist()]

    # ------------------------------------------------------------------ edgeprune -> MIB
    def scores_from(self, edge_scores: torch.Tensor, probabilities: bool = True, combine: str = "") -> torch.Tensor:
        """Dense MIB scores from edgeprune's per-edge scores (graph order).

        With two embedding nodes, MIB's one input edge is kept when either embedding edge is: keep
        probabilities combine as 1 - (1 - p_tok)(1 - p_pos). Attribution scores (probabilities=False)
        add up instead: the input edge's ablation delta is the sum of the two embeddings' deltas.
        combine="max": ranks (a pruning path's), where the input edge ranks as its better embedding edge.
        A graph without embedding nodes has no input scores: refused (NO_INPUT_SCORES), never made up.
        """
        if self.graph.embedding_nodes == 0:
            raise UserError(NO_INPUT_SCORES)
        return self._dense(edge_scores, probabilities, combine)

    def _dense(self, edge_scores: torch.Tensor, probabilities: bool, combine: str = "") -> torch.Tensor:
        p = edge_scores.detach().float().cpu()
        mapped = torch.where(self.edge_map >= 0, p[self.edge_map.clamp(min=0)], torch.zeros(()))
        if self.graph.embedding_nodes == 2 and combine == "max":
            input_row = torch.maximum(mapped[0, :, 0], mapped[0, :, 1])
        elif self.graph.embedding_nodes == 2 and probabilities:
            input_row = 1 - (1 - mapped[0, :, 0]) * (1 - mapped[0, :, 1])
        elif self.graph.embedding_nodes == 2:
            input_row = mapped[0, :, 0] + mapped[0, :, 1]
        elif self.graph.embedding_nodes == 1:
            input_row = mapped[0, :, 0]
        else:                                # clean embeddings, never ablated: always in the circuit
            input_row = torch.ones(self.n_backward)
        scores = mapped[..., 0].clone()
        scores[0] = input_row
        return torch.where(self.real, scores, torch.zeros(()))

    def membership_from(self, edge_mask: torch.Tensor) -> torch.Tensor:
        """Dense MIB in_graph of an edgeprune 0/1 edge mask (input: either embedding edge kept; with
        no embedding node, every input edge, since the clean embeddings reach every reader)."""
        return self._dense(edge_mask.float(), True) > 0

    # ------------------------------------------------------------------ MIB -> edgeprune
    def edge_mask(self, in_graph: torch.Tensor) -> torch.Tensor:
        """edgeprune's 0/1 edge mask of a MIB membership: an edgeprune edge is kept when any MIB edge
        standing for it is (a K/V edge when any query head's copy is; both embedding edges with input)."""
        mask = torch.zeros(self.graph.num_edges)
        chosen = self.edge_map[in_graph & self.real]
        chosen = chosen[chosen >= 0]
        mask[chosen] = 1.0
        return mask

    def scores_to(self, scores: torch.Tensor, split: bool = True) -> torch.Tensor:
        """edgeprune per-edge scores from dense MIB scores: the largest over the MIB edges standing for it.

        MIB's input edge stands for both embedding edges (two embedding nodes): each gets half its
        score, which scores_from(probabilities=False) adds back; split=False gives each the whole
        score (ranks, which scores_from combines by "max").
        """
        out = torch.full((self.graph.num_edges,), -torch.inf)
        rows = self.edge_map[self.real]                     # (n_edges_mib, E)
        ok = rows >= 0
        share = ok.sum(1, keepdim=True).clamp(min=1) if split else 1
        values = (scores[self.real].float()[:, None] / share).expand_as(rows)
        out.scatter_reduce_(0, rows[ok], values[ok], reduce="amax")
        return out

    def disagreeing_copies(self, scores: torch.Tensor, in_graph: torch.Tensor) -> int:
        """How many edgeprune edges stand for several MIB edges whose scores or membership differ: what
        edge_mask and scores_to merge (a grouped graph's K/V edges; a layer's attention as one writer)."""
        rows = self.edge_map[self.real]
        ok = rows >= 0
        index = rows[ok]
        differ = torch.zeros(self.graph.num_edges, dtype=torch.bool)
        for values in (scores[self.real].float(), in_graph[self.real].float()):
            values = values[:, None].expand_as(rows)[ok]
            high = torch.full((self.graph.num_edges,), -torch.inf).scatter_reduce_(0, index, values, "amax")
            low = torch.full((self.graph.num_edges,), torch.inf).scatter_reduce_(0, index, values, "amin")
            differ |= high > low
        return int(differ.sum())

    # ------------------------------------------------------------------ budgets
    def budget_edges(self, fraction: float) -> int:
        """n = floor(fraction x MIB's edge count), as MIB's evaluator counts."""
        if not 0 <= fraction <= 1:
            raise UserError(f"a budget is a fraction of edges kept, in [0, 1]; got {fraction}")
        return int(fraction * self.num_edges)

    def top_edges(self, scores: torch.Tensor, n: int, absolute: bool = False) -> torch.Tensor:
        """MIB membership of the top n edges by score, pruned to a connected circuit."""
        if not 0 <= n <= self.num_edges:
            raise UserError(f"n={n} is outside [0, {self.num_edges}] (MIB's edge count)")
        values = scores.abs() if absolute else scores.clone()
        values = torch.where(self.real, values.float(), torch.full((), -torch.inf))
        order = torch.sort(values.reshape(-1), descending=True, stable=True).indices[:n]
        in_graph = torch.zeros(self.n_forward * self.n_backward, dtype=torch.bool)
        in_graph[order] = True
        return self.prune(in_graph.view(self.n_forward, self.n_backward))

    def connected_scores(self, scores: torch.Tensor, absolute: bool = False) -> torch.Tensor:
        """Scores whose every top-n cut is already connected, as rank values in (0, 1] (0 off the graph).

        MIB cuts the top n edges and then prunes the dangling ones, so a ranking whose prefixes
        dangle spends part of every budget on edges that are dropped. Here an edge's first key is
        the weakest score on its best path from the input through it to the logits (a bottleneck
        path: the largest such minimum), its own score the second. Cut at any threshold, the first
        key keeps exactly the edges that lie on a path of edges at or above it, which is MIB's
        pruned circuit of the original scores at that threshold, with the whole budget in use.
        """
        s = scores.abs() if absolute else scores
        s = torch.where(self.real, s.float(), torch.full((), -torch.inf))
        nf, inf = self.n_forward, torch.full((), torch.inf)
        reach = torch.full((nf,), -torch.inf)   # best bottleneck from the input to each forward node
        reach[0] = inf
        for f in range(1, nf):
            reach[f] = torch.minimum(reach[:, None], s[:, self.feeds == f]).max()
        out = torch.full((nf + 1,), -torch.inf)  # best bottleneck from each forward node to the logits
        out[nf] = inf
        for f in range(nf - 1, -1, -1):
            out[f] = torch.minimum(s[f], out[self.feeds]).max()
        key = torch.minimum(torch.minimum(reach[:, None], s), out[self.feeds][None, :])
        ranked = torch.zeros(s.shape)
        ranked[self.real] = rank_scores(key[self.real], s[self.real])   # bottleneck first, own score on ties
        return ranked

    def prune(self, in_graph: torch.Tensor) -> torch.Tensor:
        """Drop edges left dangling until nothing changes (MIB's prune)."""
        in_graph = in_graph & self.real
        while True:
            outgoing = in_graph.any(dim=1)
            incoming = torch.zeros(self.n_forward + 1).index_add_(0, self.feeds, in_graph.any(dim=0).float()) > 0
            alive = outgoing & incoming[:-1]
            alive[0] = outgoing[0]                                     # input has no incoming edges
            child_alive = torch.cat([alive, torch.ones(1, dtype=torch.bool)])[self.feeds]  # logits stays
            pruned = in_graph & alive[:, None] & child_alive[None, :]
            if torch.equal(pruned, in_graph):
                return pruned
            in_graph = pruned

    # ------------------------------------------------------------------ files
    def write(self, path: str, scores: torch.Tensor, in_graph: torch.Tensor, fmt: str = "json") -> str:
        """A MIB circuit file (json or pt) with these dense scores and membership.

        From a grouped graph (kv_edges "group") the file's cfg says kv_edges "group", and a warning
        says that its key and value edges are their group's, copied to each query head.
        """
        if self.graph.grouped_kv:
            warnings.warn("edgeprune: exporting a graph with one key and one value reader per KV group "
                          f"({self.graph.num_heads} query heads, {self.graph.num_kv_heads} KV heads): each K/V "
                          "edge's score is its group's, copied to every query head of the group, not MIB's "
                          "per-head score. Train or attribute with kv_edges='query' for MIB's own graph",
                          stacklevel=2)
        in_graph = in_graph & self.real
        nodes_in = in_graph.any(dim=1).clone()
        nodes_in[0] = True
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if fmt == "pt":
            torch.save({"cfg": dict(self.cfg), "src_nodes": list(self.forward_names),
                        "dst_nodes": list(self.backward_names), "edges_scores": scores.float().cpu(),
                        "edges_in_graph": in_graph.cpu(), "nodes_in_graph": nodes_in.cpu()}, path)
            return path
        if fmt != "json":
            raise UserError(f"MIB circuit files are json or pt, not {fmt!r}")
        nodes = {name: {"in_graph": bool(nodes_in[i])} for i, name in enumerate(self.forward_names)}
        nodes["logits"] = {"in_graph": True}
        edges = {}
        for f, b in self.real.nonzero().tolist():
            edges[f"{self.forward_names[f]}->{self.backward_names[b]}"] = {
                "score": float(scores[f, b]), "in_graph": bool(in_graph[f, b])}
        with open(path, "w") as fh:
            json.dump({"cfg": self.cfg, "nodes": nodes, "edges": edges}, fh)
        return path

    def read(self, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(dense scores, membership) from a MIB circuit file (json or pt) made for this graph; a graph
        without embedding nodes is refused (MIB's files score and cut input edges it cannot hold)."""
        if self.graph.embedding_nodes == 0:
            raise UserError(f"{path}: MIB's circuit files score and cut input edges, and this graph has no embedding "
                            "node to hold them (embedding_nodes=0: the clean embeddings reach every reader); load it "
                            "onto a graph with one, e.g. prunable(model, embedding_nodes=1).graph")
        if not os.path.isfile(path):
            raise MissingFile(f"no MIB circuit file at {path!r}")
        if path.endswith(".pt"):
            d = torch.load(path, map_location="cpu", weights_only=False)
            missing = {"cfg", "edges_scores", "edges_in_graph"} - set(d)
            if missing:
                raise UserError(f"{path}: not a MIB circuit file (missing {', '.join(sorted(missing))})")
            self._check_cfg(d["cfg"], path)
            scores, in_graph = d["edges_scores"].float(), d["edges_in_graph"].bool()
            if tuple(scores.shape) != (self.n_forward, self.n_backward):
                raise UserError(f"{path}: edge tensors are {tuple(scores.shape)}, this model's MIB graph is "
                                 f"{(self.n_forward, self.n_backward)}")
            return torch.where(self.real, scores, torch.zeros(())), in_graph & self.real
        try:
            with open(path) as fh:
                d = json.load(fh)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(d, dict) or not {"cfg", "edges"} <= set(d):
            raise UserError(f"{path}: not a MIB circuit file (it needs 'cfg' and 'edges')")
        self._check_cfg(d["cfg"], path)
        position = {name: i for i, name in enumerate(self.forward_names)}
        back = {name: i for i, name in enumerate(self.backward_names)}
        scores = torch.zeros(self.n_forward, self.n_backward)
        in_graph = torch.zeros(self.n_forward, self.n_backward, dtype=torch.bool)
        for name, info in d["edges"].items():
            parent, _, child = name.partition("->")
            f, b = position.get(parent), back.get(child)
            if f is None or b is None or not self.real[f, b]:
                raise UserError(f"{path}: edge {name!r} is not in this model's MIB graph")
            scores[f, b] = float(info.get("score", 0.0) or 0.0)
            in_graph[f, b] = bool(info.get("in_graph", False))
        return scores, in_graph

    def _check_cfg(self, cfg: dict, path: str) -> None:
        for key in ("n_layers", "n_heads"):
            if key in cfg and int(cfg[key]) != self.cfg[key]:
                raise UserError(f"{path}: made for {key}={cfg[key]}, but this model has {self.cfg[key]}")
        if bool(cfg.get("parallel_attn_mlp", False)) != self.graph.parallel:
            raise UserError(f"{path}: parallel_attn_mlp={cfg.get('parallel_attn_mlp')}, but this model's graph has "
                             f"parallel={self.graph.parallel}")


def for_budget(circuits: dict, fraction: float):
    """From {budget: circuit} (a sweep), the circuit that scores `fraction`: its own stage, else the
    tightest stage above it, else (a budget looser than every stage) the loosest stage."""
    if not circuits:
        raise UserError("no circuits to choose a budget's circuit from")
    looser = [f for f in circuits if f >= fraction]
    return circuits[min(looser)] if looser else circuits[max(circuits)]


def mib_edge_count(num_layers: int, num_heads: int, parallel: bool = False) -> int:
    """MIB's edge count from a config alone (one input node, every K/V edge per query head)."""
    return MIBGraph(Graph(num_layers, num_heads, num_heads, 1, parallel)).num_edges


def cumulative_area(fractions, values) -> float:
    """Trapezoid area of values over the linear fraction axis (MIB's CPR and CMD)."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(zip(fractions, values), zip(fractions[1:], values[1:])):
        total += (x2 - x1) * (y1 + y2) / 2
    return total
