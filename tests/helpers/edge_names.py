"""Writer and edge names of a graph with a query, a key and a value reader per head, written out by
hand for the float64 references (independent of edgeprune.graph, whose enumeration the tests check
against them)."""
from __future__ import annotations


def writer_names(embeddings: list[str], layers: int, heads: int, before_layer: int | None = None,
                 own_heads: bool = False) -> list[str]:
    """The writers a reader of `before_layer` may read (all with None); an MLP also reads its own heads."""
    stop = layers if before_layer is None else before_layer
    names = list(embeddings)
    for layer in range(stop):
        names += [f"a{layer}.h{h}" for h in range(heads)] + [f"m{layer}"]
    if own_heads:
        names += [f"a{before_layer}.h{h}" for h in range(heads)]
    return names


def edge_names(embeddings: list[str], layers: int, heads: int) -> list[tuple[str, str]]:
    """Every (writer, reader) pair, in the graph's order."""
    out = []
    for layer in range(layers):
        for kind in "qkv":
            out += [(w, f"a{layer}.h{h}.{kind}") for h in range(heads)
                    for w in writer_names(embeddings, layers, heads, layer)]
        out += [(w, f"m{layer}") for w in writer_names(embeddings, layers, heads, layer, own_heads=True)]
    return out + [(w, "resid_post") for w in writer_names(embeddings, layers, heads)]
