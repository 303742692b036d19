"""The computation graph of Edge Pruning (method.md section 1): writers, readers, edges.

Writers add into the residual stream (embedding nodes, every head, every MLP); readers take a gated
sum of it (each head's query, key and value input, each MLP input, the final read). Names are the
reference's: `tok_embeds`, `pos_embeds` or `embeds`, `a{l}.h{h}`, `m{l}`, `a{l}.h{h}.q|k|v`,
`m{l}`, `resid_post`. Under grouped-query attention the key and value readers are numbered by
key-value head (kv_edges="group": one K and one V reader per group, shared by its query heads), or
by query head (kv_edges="query": every query head reads its own K and V input, as MIB's graph has
it; without grouped-query attention the two are the same graph, recorded as "query"). With
attention_writers="layer" a layer's attention is one writer, `a{l}` (the heads'
sum: the coarser graph for models with a norm on the attention's output, docs/design.md); its
readers stay per head.

Edge gates are stored flat, valid entries only, in one canonical order that is also the edge index:
layer by layer, the attention readers (queries, keys, values; each row spans the layer's valid
writer prefix), then the MLP reader (prefix + the layer's heads), and last the final read (all
writers). In a parallel-residual model (GPT-NeoX / Pythia: x + attn(x) + mlp(x)) the MLP reads the
same prefix as its layer's attention: it cannot read its own layer's heads. `Segment`s name the
slices; the deterministic mask counts its zeros per segment, as the reference counts them per
parameter tensor (method.md 3.4).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .errors import UserError

ATTENTION_WRITERS = ("heads", "layer")
KV_EDGES = ("group", "query")


@dataclass(frozen=True)
class Segment:
    """A slice [start, start + rows * cols) of a flat gate vector, laid out (rows, cols)."""
    name: str
    start: int
    rows: int
    cols: int

    @property
    def stop(self) -> int:
        return self.start + self.rows * self.cols


@dataclass(frozen=True)
class Graph:
    num_layers: int
    num_heads: int
    num_kv_heads: int
    embedding_nodes: int  # 0, 1 or 2
    parallel: bool = False  # attention and MLP read the same residual stream (parallel residual)
    attention_writers: str = "heads"  # "heads": one writer per head; "layer": one per layer's attention
    kv_edges: str = "group"  # "group": one key and one value reader per KV head; "query": per query head

    def __post_init__(self):
        if self.attention_writers not in ATTENTION_WRITERS:
            raise UserError(f"attention_writers={self.attention_writers!r}: choose one of {ATTENTION_WRITERS} "
                             "('heads' writes each head separately; 'layer' makes a layer's attention one writer)")
        if self.kv_edges not in KV_EDGES:
            raise UserError(f"kv_edges={self.kv_edges!r}: choose one of {KV_EDGES} ('group' gives a grouped-query "
                            "model one key and one value reader per key-value head; 'query' one per query head, as "
                            "MIB counts edges)")
        if self.num_kv_heads == self.num_heads:  # no grouping: every K/V reader already serves one query head
            object.__setattr__(self, "kv_edges", "query")

    @property
    def grouped_kv(self) -> bool:
        """Whether a key or value reader is shared by several query heads (kv_edges="group" under GQA)."""
        return self.kv_edges == "group"

    @property
    def num_kv_readers(self) -> int:
        """Key (and value) readers per layer: one per key-value head, or one per query head."""
        return self.num_kv_heads if self.grouped_kv else self.num_heads

    # ------------------------------------------------------------------ writers
    @property
    def attn_writers_per_layer(self) -> int:
        """A: the writers of one layer's attention (H, or 1 when the layer's attention is one writer)."""
        return self.num_heads if self.attention_writers == "heads" else 1

    @property
    def num_writers(self) -> int:
        return self.embedding_nodes + self.num_layers * (self.attn_writers_per_layer + 1)

    def head_writer(self, layer: int, head: int) -> int:
        """Writer index of a head (attention_writers="layer": of the layer's attention, head 0)."""
        return self.attn_prefix(layer) + head

    def mlp_writer(self, layer: int) -> int:
        return self.attn_prefix(layer) + self.attn_writers_per_layer

    def attn_prefix(self, layer: int) -> int:
        """Writers an attention reader of `layer` may read: embeddings and all earlier layers."""
        return self.embedding_nodes + layer * (self.attn_writers_per_layer + 1)

    def mlp_prefix(self, layer: int) -> int:
        """The MLP also reads its own layer's attention (which runs first), unless in parallel."""
        return self.attn_prefix(layer) + (0 if self.parallel else self.attn_writers_per_layer)

    def attn_writer_names(self, layer: int) -> list[str]:
        if self.attention_writers == "layer":
            return [f"a{layer}"]
        return [f"a{layer}.h{h}" for h in range(self.num_heads)]

    @cached_property
    def writers(self) -> list[str]:
        names = {0: [], 1: ["embeds"], 2: ["tok_embeds", "pos_embeds"]}[self.embedding_nodes]
        for layer in range(self.num_layers):
            names += self.attn_writer_names(layer) + [f"m{layer}"]
        return names

    # ------------------------------------------------------------------ readers
    @property
    def attn_readers_per_layer(self) -> int:
        return self.num_heads + 2 * self.num_kv_readers

    def attn_reader_names(self, layer: int) -> list[str]:
        """Queries, keys, values: a{l}.h{h}.q per query head; .k and .v per KV reader (group or query head)."""
        return ([f"a{layer}.h{h}.q" for h in range(self.num_heads)]
                + [f"a{layer}.h{g}.k" for g in range(self.num_kv_readers)]
                + [f"a{layer}.h{g}.v" for g in range(self.num_kv_readers)])

    @cached_property
    def readers(self) -> list[str]:
        names = []
        for layer in range(self.num_layers):
            names += self.attn_reader_names(layer) + [f"m{layer}"]
        return names + ["resid_post"]

    # ------------------------------------------------------------------ edges
    @cached_property
    def segments(self) -> list[Segment]:
        """Edge-gate segments in flat order: per layer q, k, v, mlp; then resid_post."""
        segs, start = [], 0
        H, K = self.num_heads, self.num_kv_readers
        for layer in range(self.num_layers):
            p = self.attn_prefix(layer)
            for kind, rows in (("q", H), ("k", K), ("v", K)):
                segs.append(Segment(f"a{layer}.{kind}", start, rows, p))
                start += rows * p
            segs.append(Segment(f"m{layer}", start, 1, self.mlp_prefix(layer)))
            start += self.mlp_prefix(layer)
        segs.append(Segment("resid_post", start, 1, self.num_writers))
        return segs

    def attn_segment(self, layer: int) -> tuple[int, int]:
        """(start, stop) of all attention-reader gates of a layer: one (H + 2K, prefix) block."""
        q = self.segments[4 * layer]
        return q.start, self.segments[4 * layer + 2].stop

    def mlp_segment(self, layer: int) -> Segment:
        return self.segments[4 * layer + 3]

    @property
    def final_segment(self) -> Segment:
        return self.segments[-1]

    @property
    def num_edges(self) -> int:
        return self.segments[-1].stop

    @cached_property
    def node_segments(self) -> list[Segment]:
        """Node-gate segments: each embedding writer, then per layer its heads and its MLP."""
        segs = [Segment(name, i, 1, 1) for i, name in enumerate(self.writers[: self.embedding_nodes])]
        for layer in range(self.num_layers):
            segs.append(Segment(f"a{layer}", self.head_writer(layer, 0), 1, self.attn_writers_per_layer))
            segs.append(Segment(f"m{layer}", self.mlp_writer(layer), 1, 1))
        return segs

    @cached_property
    def edges(self) -> list[tuple[str, str]]:
        """(writer, reader) name pairs, in edge-index order."""
        out = []
        for layer in range(self.num_layers):
            for reader in self.attn_reader_names(layer):
                out += [(w, reader) for w in self.writers[: self.attn_prefix(layer)]]
            out += [(w, f"m{layer}") for w in self.writers[: self.mlp_prefix(layer)]]
        return out + [(w, "resid_post") for w in self.writers]

    @cached_property
    def edge_index(self) -> dict[tuple[str, str], int]:
        return {edge: i for i, edge in enumerate(self.edges)}

    def edge_writer_indices(self) -> torch.Tensor:
        """For every edge (in order), the index of its writer: used for node-effective sparsity."""
        parts = [torch.arange(s.cols).repeat(s.rows) for s in self.segments]
        return torch.cat(parts)

    def unknown_edges(self, edges) -> list[tuple[str, str]]:
        """The edges of a list that this graph does not have."""
        index = self.edge_index
        return [tuple(e) for e in edges if tuple(e) not in index]

    def edge_mask(self, edges) -> torch.Tensor:
        """A 0/1 float vector over the graph's edges with the listed (writer, reader) edges set."""
        unknown = self.unknown_edges(edges)
        if unknown:
            raise UserError(f"{len(unknown)} edge(s) are not in this model's graph, e.g. "
                            f"{', '.join(f'{w} -> {r}' for w, r in unknown[:3])} (writers like 'a0.h1', readers like "
                            f"'a1.h2.q' or 'resid_post'; a reader may only read earlier writers; this graph has "
                            f"{self.num_layers} layers x {self.num_heads} heads, attention writers per "
                            f"{self.attention_writers.rstrip('s')}, key/value readers per "
                            f"{'KV group' if self.grouped_kv else 'query head'})")
        mask = torch.zeros(self.num_edges)
        index = self.edge_index
        mask[[index[tuple(e)] for e in edges]] = 1.0
        return mask


def num_edges(num_layers: int, num_heads: int, embedding_nodes: int, num_kv_heads: int | None = None,
              parallel: bool = False, attention_writers: str = "heads", kv_edges: str = "group") -> int:
    """Closed-form edge count (method.md 1.4), independent of the enumeration above.

    A = H attention writers per layer, or 1 when a layer's attention is one writer; K key and
    value readers per layer: the KV heads, or H with kv_edges="query".
    """
    L, H, E = num_layers, num_heads, embedding_nodes
    K = H if num_kv_heads is None or kv_edges == "query" else num_kv_heads
    A = H if attention_writers == "heads" else 1
    own = 0 if parallel else A  # the MLP's edges from its own layer's attention
    total = sum((H + 2 * K) * (E + layer * (A + 1)) + (E + layer * (A + 1) + own) for layer in range(L))
    return total + E + L * (A + 1)


def rank_scores(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """Scores 1 - rank / n of the order by `primary`, ties by `secondary`, then by index (higher first):
    the best entry scores 1, the worst 1/n. Rankings saved and cut as scores (edgeprune.path, mib)."""
    n = primary.numel()
    # two stable sorts, the primary key last
    order = torch.sort(secondary, descending=True, stable=True).indices
    order = order[torch.sort(primary[order], descending=True, stable=True).indices]
    rank = torch.empty(n, dtype=torch.float32)
    rank[order] = torch.arange(n, dtype=torch.float32)
    return 1 - rank / n

