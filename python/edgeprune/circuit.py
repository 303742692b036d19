"""The result of a pruning run: a set of edges, with everything needed to reproduce and compare it.

Files written by Circuit.save(folder), all at once (edgeprune.folders: plain files, replaced as a
whole, so a killed save leaves the old circuit or the new one and a load never mixes two):
  circuit.json            edges, nodes, sparsities, metrics, model, source, task, config, seed, graph
  edges.json              the reference's bare [[writer, reader], ...] list, for other tools
  log_alphas.safetensors  learned gate log-alphas, valid entries only, one tensor per gate group:
                          "edge.a{l}.q|k|v" (readers, prefix), "edge.m{l}" (1, prefix), "edge.resid_post"
                          (1, W); "node.tok_embeds" | "node.pos_embeds" | "node.embeds" (1, 1),
                          "node.a{l}" (1, H), "node.m{l}" (1, 1) (an attribution's scores: edges only)
  path.safetensors        a pruning path's ranking (edgeprune.path), when trained with path=True:
                          "ranking" (N,) in (0, 1], graph order, higher = left the circuit later
  ablation.safetensors    optimal ablation's learned constants, when trained with them:
                          "embeds.{i}" (S, D), "ctx.{l}" (S, H, dh), "mlp.{l}" (S, D)
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field, replace

import torch

from . import folders
from .draw import circuit_to_dot
from .errors import MissingFile, UserError
from .gates import bisect_threshold, deterministic_masks, expected_sparsity
from .graph import Graph
from .mib import MIBGraph
from .ops import expected_l0
from .ops.constants import EPS


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
    score_kind: str = "log_alpha"             # edge_scores: learned "log_alpha", or a "score" (higher: more important)
    source: str = ""                          # the hub id or absolute folder of its model ("": built in Python)
    weights: str = ""                         # its model's weights fingerprint (edgeprune.provenance; "": unknown)
    d_model: int | None = None                # its model's width (MIB's files record it)
    ablation_values: dict | None = None       # optimal ablation's constants (models.AblationConstants.tensors())
    ranking: torch.Tensor | None = None       # a pruning path's exit ranking (edgeprune.path): ranks the edges

    FILES = ("circuit.json", "edges.json", "log_alphas.safetensors", "path.safetensors", "ablation.safetensors")

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
    def target_edge_sparsity(self) -> float | None:
        """The edge sparsity this circuit was cut at, or trained for (a budget's: 1 - the budget);
        None for scores and fixed lists."""
        if "target" in self.config:
            return self.config["target"]
        if "budget" in self.config:
            return 1 - self.config["budget"]
        return self.config.get("edge_sparsity")

    @property
    def node_sparsity(self) -> float:
        return 1 - len(self.nodes) / self.graph.num_writers

    # ------------------------------------------------------------------ cuts of the learned ranking
    def at_edges(self, k: int) -> "Circuit":
        """The k top edges of the ranking: a pruning path's exit order, else the largest learned
        log-alpha (ties broken by edge index)."""
        self.check(self.graph)
        if self.edge_scores is None and self.ranking is None:
            raise UserError("this circuit has no learned scores to rank edges by (it was built from a fixed list)")
        if not 0 <= k <= self.graph.num_edges:
            raise UserError(f"k={k} is outside [0, {self.graph.num_edges}] (the graph's edge count)")
        ranks = self.ranking if self.ranking is not None else self.edge_scores
        order = torch.sort(ranks, descending=True, stable=True).indices[:k].sort().values
        all_edges = self.graph.edges
        return replace(self, edges=[all_edges[i] for i in order.tolist()], metrics={}, raw_edges=None)

    def connected(self) -> "Circuit":
        """This circuit ranked for connected cuts (MIBGraph.connected_scores, from |score|): every top-n
        cut on MIB's graph is a connected circuit, so MIB's pruning drops none of its edges. A pruning
        path's ranking is cut this way already; this gives any scored circuit (attribution's) the same."""
        graph = MIBGraph(self.graph)
        ranks = graph.connected_scores(self.mib_scores(graph), absolute=True)
        return replace(self, ranking=graph.scores_to(ranks, split=False),
                       config=dict(self.config) | {"connected": True})

    def at_budget(self, fraction: float) -> "Circuit":
        """The circuit MIB evaluates at a budget: the top floor(fraction x MIB's edge count) edges of the
        ranking on MIB's graph, pruned of dangling edges (edgeprune.mib), on this circuit's graph."""
        self.check(self.graph)
        mib = MIBGraph(self.graph)
        in_graph = mib.top_edges(self.mib_scores(mib), mib.budget_edges(fraction))
        mask = mib.edge_mask(in_graph)
        return replace(self, edges=[self.graph.edges[i] for i in mask.nonzero().flatten().tolist()], metrics={},
                       raw_edges=None, config=dict(self.config) | {"budget": fraction})

    def at_sparsity(self, sparsity: float) -> "Circuit":
        """Keep round((1 - sparsity) N) edges of the learned ranking."""
        if not 0 <= sparsity <= 1:
            raise UserError(f"sparsity must lie in [0, 1], got {sparsity}")
        cut = self.at_edges(round((1 - sparsity) * self.graph.num_edges))
        cut.config = dict(self.config) | {"target": sparsity}
        return cut

    # ------------------------------------------------------------------ scores
    def keep_scores(self) -> torch.Tensor:
        """Per edge (graph order), higher = more important, for rankings and MIB's files.

        Learned gates give the probability that a sampled gate keeps the edge and its writer,
        P(z_edge != 0) P(z_writer != 0): comparable across edges, never raw log alpha. A pruning
        path gives its exit ranking (edgeprune.path) instead.
        """
        if self.ranking is not None:
            return self.ranking.float()
        if self.edge_scores is None:
            raise UserError("this circuit has no scores to rank edges by (it was built from a fixed list)")
        if self.score_kind != "log_alpha":
            return self.edge_scores.float()
        keep = expected_l0(self.edge_scores.float())
        if self.node_scores is not None:
            keep = keep * expected_l0(self.node_scores.float())[self.graph.edge_writer_indices()]
        return keep

    # ------------------------------------------------------------------ MIB
    def mib_scores(self, graph: MIBGraph) -> torch.Tensor:
        """keep_scores on MIB's graph (dense), combined as their kind must be (MIBGraph.scores_from)."""
        if self.ranking is not None:  # ranks: MIB's input edge is as good as the better embedding edge;
            # every cut connected, so that no budget is spent on edges MIB prunes (edgeprune.path)
            return graph.connected_scores(graph.scores_from(self.ranking, probabilities=False, combine="max"))
        return graph.scores_from(self.keep_scores(), probabilities=self.score_kind == "log_alpha")

    def to_mib(self, path: str, format: str = "json", budgets=None, d_model: int | None = None) -> list[str]:
        """Write the circuit in MIB's format; returns the files written.

        budgets None: one scored file at `path` (keep_scores, this circuit's edges in the graph).
        budgets (fractions of MIB's edges, e.g. mib.BUDGETS): `path` is a folder (one per task and
        model, e.g. ioi_gpt2) holding one binary circuit per budget below 1, `{percent}.{format}`.
        """
        graph = MIBGraph(self.graph, d_model or self.d_model or 0)
        if budgets is None:
            scores = self.mib_scores(graph) if self.edge_scores is not None else \
                graph.membership_from(self.graph.edge_mask(self.edges)).float()
            return [graph.write(path, scores, graph.membership_from(self.graph.edge_mask(self.edges)), format)]
        scores = self.mib_scores(graph)
        written = []
        for fraction in budgets:
            if fraction >= 1:
                continue
            in_graph = graph.top_edges(scores, graph.budget_edges(fraction))
            written.append(graph.write(os.path.join(path, f"{fraction * 100:g}.{format}"), in_graph.float(),
                                       in_graph, format))
        return written

    @classmethod
    def from_mib(cls, path: str, graph: Graph) -> "Circuit":
        """A MIB circuit file (e.g. EAP-IG's output) on a model's graph, so edgeprune can evaluate it.

        Its edges are those in the file's circuit (a K/V edge of a group when any query head's copy
        is, both embedding edges when the input's is); its scores, per edgeprune edge, the largest of
        the MIB edges standing for it. Onto a grouped graph (kv_edges "group") a warning counts the
        edges whose per-query-head copies differed.
        """
        mib = MIBGraph(graph)
        scores, in_graph = mib.read(path)
        merged = mib.disagreeing_copies(scores, in_graph)
        if merged:
            warnings.warn(f"edgeprune: {path}: {merged} edge(s) of the graph {graph} stand for several MIB edges "
                          "whose scores or membership differ (per-query-head K/V edges onto one reader per KV "
                          "group, or per-head edges onto a layer's one attention writer): each is kept when any "
                          "of its MIB edges is, scored by the largest. Use kv_edges='query' to keep them apart",
                          stacklevel=2)
        mask = mib.edge_mask(in_graph)
        return cls(graph, [graph.edges[i] for i in mask.nonzero().flatten().tolist()], list(graph.writers),
                   edge_scores=mib.scores_to(scores), score_kind="score", config={"source": os.path.abspath(path)})

    def check(self, graph: Graph) -> "Circuit":
        """Refuse a circuit that does not fit `graph` (a model's), naming the first few offenders."""
        problems = []
        if graph != self.graph:
            problems.append(f"it was found on the graph {self.graph}")
        unknown = graph.unknown_edges(self.edges)
        if unknown:
            problems.append(f"{len(unknown)} of its edges are not in the graph, e.g. "
                            + ", ".join(f"{w} -> {r}" for w, r in unknown[:3]))
        writers = set(graph.writers)
        strange = [n for n in self.nodes if n not in writers]
        if strange:
            problems.append(f"{len(strange)} of its nodes are not in the graph, e.g. {', '.join(strange[:3])}")
        for name, scores, want in (("edge", self.edge_scores, graph.num_edges),
                                   ("node", self.node_scores, graph.num_writers)):
            if scores is not None and scores.numel() != want:
                problems.append(f"it has {scores.numel()} {name} scores for the graph's {want} {name}s")
        if problems:
            raise UserError(f"the circuit does not fit the model's graph {graph}: {'; '.join(problems)}. Use it "
                            "with the model (and embedding_nodes) it was found on")
        return self

    # ------------------------------------------------------------------ files
    def summary(self) -> dict:
        return {
            "model": self.model, "source": self.source, "weights": self.weights, "d_model": self.d_model,
            "task": self.task, "seed": self.seed,
            "graph": asdict(self.graph),
            "num_edges": len(self.edges), "raw_edges": self.raw_edges, "total_edges": self.graph.num_edges,
            "edge_sparsity": self.edge_sparsity, "target_edge_sparsity": self.target_edge_sparsity,
            "effective_edge_sparsity": self.effective_edge_sparsity,
            "num_nodes": len(self.nodes), "total_nodes": self.graph.num_writers, "node_sparsity": self.node_sparsity,
            "metrics": self.metrics, "config": self.config, "score_kind": self.score_kind,
        }

    def save(self, folder: str) -> None:
        """Replace the circuit in `folder` as a whole (a reader sees the old one or this one)."""
        folders.publish(folder, self._write, self.FILES)

    def _write(self, folder: str) -> None:
        data = self.summary() | {"nodes": self.nodes, "edges": [list(e) for e in self.edges]}
        with open(os.path.join(folder, "circuit.json"), "w") as f:
            json.dump(data, f, indent=1, default=_jsonable)
        with open(os.path.join(folder, "edges.json"), "w") as f:
            json.dump([list(e) for e in self.edges], f)
        if self.edge_scores is not None:
            from safetensors.torch import save_file
            save_file(_score_tensors(self.graph, self.edge_scores, self.node_scores),
                      os.path.join(folder, "log_alphas.safetensors"))
        if self.ranking is not None:
            from safetensors.torch import save_file
            save_file({"ranking": self.ranking.detach().float().cpu().contiguous()},
                      os.path.join(folder, "path.safetensors"))
        if self.ablation_values is not None:
            from safetensors.torch import save_file
            save_file(self.ablation_values, os.path.join(folder, "ablation.safetensors"))

    @classmethod
    def load(cls, folder: str) -> "Circuit":
        """The circuit saved in `folder`, every file parsed and checked; an error names its file."""
        return folders.read(folder, "circuit.json", lambda path_of: cls._read(folder, path_of))

    @classmethod
    def _read(cls, folder: str, path_of) -> "Circuit":
        path = path_of("circuit.json") or os.path.join(folder, "circuit.json")
        data = _read_json(path)
        try:
            graph = Graph(**data["graph"])
            circuit = cls(graph, [tuple(e) for e in data["edges"]], list(data["nodes"]), metrics=data["metrics"],
                          model=data["model"], source=data.get("source", ""), weights=data.get("weights", ""),
                          d_model=data.get("d_model"), task=data["task"],
                          config=data["config"], seed=data["seed"], raw_edges=data["raw_edges"],
                          score_kind=data.get("score_kind", "log_alpha"))
        except (KeyError, TypeError) as error:
            raise UserError(f"{path} is not a circuit file ({type(error).__name__}: {error})") from None
        edges_path = path_of("edges.json") or os.path.join(folder, "edges.json")
        if [tuple(e) for e in _read_json(edges_path)] != circuit.edges:
            raise UserError(f"{edges_path} lists other edges than {path}: the folder holds two circuits' files")
        scores = path_of("log_alphas.safetensors")
        if scores:
            circuit.edge_scores, circuit.node_scores = _read_scores(scores, graph)
        ranking = path_of("path.safetensors")
        if ranking:
            circuit.ranking = _read_tensors(ranking).get("ranking")
            if circuit.ranking is None or circuit.ranking.shape != (graph.num_edges,):
                raise UserError(f"{ranking}: 'ranking' must hold one score per edge ({graph.num_edges}) of the graph "
                                "in circuit.json")
        ablation = path_of("ablation.safetensors")
        if ablation:
            circuit.ablation_values = _read_tensors(ablation)
        try:
            return circuit.check(graph)
        except UserError as error:
            raise UserError(f"{folder}: {error}") from None

    def to_dot(self, title: str | None = None) -> str:
        return circuit_to_dot(self, title)

    def __repr__(self):
        raw = "" if self.raw_edges in (None, len(self.edges)) else \
            f" ({self.raw_edges} above the threshold, sparsity {self.edge_sparsity:.4f}; the rest have pruned writers)"
        return (f"Circuit({len(self.edges)} of {self.graph.num_edges} edges, effective sparsity "
                f"{self.effective_edge_sparsity:.4f}{raw}, {len(self.nodes)} of {self.graph.num_writers} nodes, "
                f"task={self.task!r})")


def load_run(path: str) -> "Circuit | dict[float, Circuit]":
    """A circuit folder, or a budget sweep's folder ({fraction kept: Circuit} from its budget-<f>/
    folders), as `edgeprune prune` writes them."""
    if os.path.exists(os.path.join(path, "circuit.json")) or os.path.isdir(os.path.join(path, folders.COMMIT)):
        return Circuit.load(path)
    stages = {float(name[len("budget-"):]): Circuit.load(os.path.join(path, name))
              for name in sorted(os.listdir(path)) if name.startswith("budget-")} if os.path.isdir(path) else {}
    if not stages:
        raise MissingFile(f"{path!r} holds neither a circuit (circuit.json) nor a budget sweep (budget-<f>/)")
    return stages


def _jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def _score_tensors(graph: Graph, edges: torch.Tensor, nodes: torch.Tensor | None) -> dict[str, torch.Tensor]:
    out = {f"edge.{s.name}": edges[s.start:s.stop].reshape(s.rows, s.cols) for s in graph.segments}
    if nodes is not None:
        out |= {f"node.{s.name}": nodes[s.start:s.stop].reshape(s.rows, s.cols) for s in graph.node_segments}
    return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise MissingFile(f"{path} is missing: the folder was not written by Circuit.save") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON ({error}): the file is damaged or cut off") from None


def _read_tensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise UserError(f"{path} is not a readable safetensors file ({error})") from None


def _read_scores(path: str, graph: Graph) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The flat edge and node log-alphas of a log_alphas.safetensors file, each segment's shape checked
    (an attribution's scores have no node part: None)."""
    tensors = _read_tensors(path)
    parts = {"edge": [], "node": []}
    kinds = [("edge", graph.segments)]
    if any(name.startswith("node.") for name in tensors):
        kinds.append(("node", graph.node_segments))
    for kind, segments in kinds:
        for s in segments:
            t = tensors.get(f"{kind}.{s.name}")
            if t is None or tuple(t.shape) != (s.rows, s.cols):
                got = "missing" if t is None else f"of shape {tuple(t.shape)}"
                raise UserError(f"{path}: the scores {kind}.{s.name} are {got}, expected ({s.rows}, {s.cols}) for "
                                f"the graph in circuit.json")
            parts[kind].append(t.reshape(-1))
    return torch.cat(parts["edge"]), torch.cat(parts["node"]) if parts["node"] else None
