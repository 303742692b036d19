"""Circuit drawings with Graphviz, bottom to top: each layer's heads on one rank and its MLP on the
next, nodes coloured by kind, a head's used q/k/v inputs as ports below it.

Before drawing, the circuit is cleaned as the reference's draw script does (method.md 5.3): every
head that writes gets edges from its used q/k/v inputs; then, until nothing changes, edges into a
node with no outgoing edge are dropped (the output excepted), and q/k/v inputs with no incoming
edge are dropped. Under grouped-query attention with one key/value reader per KV group
(kv_edges="group") that reader is drawn on the head whose index names its group; with readers per
query head (kv_edges="query") each is drawn on its own head. When a layer's attention is one writer, its heads' readers are drawn as
that writer's q/k/v inputs.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from .errors import RunError, UserError

COLOURS = {"embedding": "#d9ead3", "head": "#cfe2f3", "mlp": "#fce5cd", "output": "#f4cccc"}
_READER = re.compile(r"^(a\d+\.h\d+)\.([qkv])$")


def _kind(node: str) -> str:
    if node == "resid_post":
        return "output"
    if node.startswith("m"):
        return "mlp"
    if node.startswith("a"):
        return "head"
    return "embedding"


def _layer(node: str) -> int:
    match = re.match(r"^[am](\d+)", node)
    return int(match.group(1)) if match else -1


def _reader_node(reader: str, layer_writers: bool) -> tuple[str, str | None]:
    """(node, q/k/v port) a reader feeds: its head, or its layer's attention when that is one writer."""
    match = _READER.match(reader)
    if not match:
        return reader, None
    head = match.group(1)
    return (head.split(".")[0] if layer_writers else head), match.group(2)


def clean_edges(edges, layer_writers: bool = False) -> set[tuple[str, str]]:
    """Drop what cannot affect the output (method.md 5.3); returns (writer, reader) edges.

    layer_writers: the graph's attention is one writer per layer (`a{l}`), fed by its heads' readers.
    """
    edges = {tuple(e) for e in edges}
    while True:
        writers = {w for w, _ in edges}
        target_of = {(w, r): _reader_node(r, layer_writers)[0] for w, r in edges}
        # a reader counts as used if the node it feeds writes somewhere (or is the output)
        kept = {(w, r) for (w, r) in edges if target_of[(w, r)] in writers or r == "resid_post"}
        if kept == edges:
            return edges
        edges = kept


def circuit_to_dot(circuit, title: str | None = None) -> str:
    layer_writers = circuit.graph.attention_writers == "layer"
    edges = clean_edges(circuit.edges, layer_writers)
    heads_inputs: dict[str, set[str]] = {}
    nodes: set[str] = set()
    for w, r in edges:
        nodes.add(w)
        node, port = _reader_node(r, layer_writers)
        nodes.add(node)
        if port:
            heads_inputs.setdefault(node, set()).add(port)
    if title is None:
        title = (f"{circuit.model or 'model'} / {circuit.task or 'task'}: {len(circuit.edges)} edges "
                 f"(sparsity {circuit.edge_sparsity:.2%}; {len(edges)} drawn)")
    lines = ["digraph circuit {", f'  label="{_escape(title)}"; labelloc=t; fontsize=16;',
             "  rankdir=BT; nodesep=0.25; ranksep=0.6;",
             '  node [style="filled,rounded", fontname="Helvetica", fontsize=11];']
    for node in sorted(nodes, key=lambda n: (_layer(n), n)):
        colour = COLOURS[_kind(node)]
        if node in heads_inputs or _kind(node) == "head":
            ports = "|".join(f"<{p}>{p}" for p in "qkv" if p in heads_inputs.get(node, ()))
            label = f"{{{node}|{{{ports}}}}}" if ports else node  # ports below: inputs come from below
            lines.append(f'  "{node}" [shape=record, style="filled", fillcolor="{colour}", label="{label}"];')
        else:
            lines.append(f'  "{node}" [shape=box, fillcolor="{colour}", label="{_pretty(node)}"];')
    # A layer's heads share a rank and its MLP takes the next one: the MLP reads its own layer's
    # heads, and Graphviz cannot draw edges between record nodes of one rank.
    by_layer: dict[tuple[int, bool], list[str]] = {}
    for node in nodes:
        if node != "resid_post":
            by_layer.setdefault((_layer(node), _kind(node) == "mlp"), []).append(node)
    for layer in sorted(by_layer):
        members = " ".join(f'"{n}"' for n in sorted(by_layer[layer]))
        lines.append(f"  {{ rank=same; {members} }}")
    for w, r in sorted(edges):
        node, port = _reader_node(r, layer_writers)
        head_port = f'"{node}":{port}:s' if port else f'"{r}"'
        colour = {"q": "#6aa84f", "k": "#3d85c6", "v": "#a64d79"}.get(port or "", "#666666")
        lines.append(f'  "{w}" -> {head_port} [color="{colour}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _pretty(node: str) -> str:
    names = {"resid_post": "Output", "tok_embeds": "Token embeddings", "pos_embeds": "Position embeddings",
             "embeds": "Embeddings"}
    if node in names:
        return names[node]
    return f"MLP {node[1:]}" if node.startswith("m") else node


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render(circuit, path: str, title: str | None = None) -> str:
    """Write the drawing; the format follows the extension (.svg, .png, .pdf or .dot).

    Returns the path written. Without Graphviz's `dot` program, writes the .dot file beside the
    requested path and raises RuntimeError saying how to render it.
    """
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "svg"
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise UserError(f"cannot draw to {path!r}: use a .svg, .png, .pdf or .dot file name")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    source = circuit_to_dot(circuit, title)
    dot_path = path if fmt == "dot" else os.path.splitext(path)[0] + ".dot"
    with open(dot_path, "w") as f:
        f.write(source)
    if fmt == "dot":
        return dot_path
    dot = shutil.which("dot")
    if dot is None:
        raise RunError(f"Graphviz's `dot` program was not found, so only {dot_path} was written. Install "
                           f"Graphviz (e.g. apt-get install graphviz) and run: dot -T{fmt} {dot_path} -o {path}")
    result = subprocess.run([dot, f"-T{fmt}", dot_path, "-o", path], capture_output=True, text=True)
    if result.returncode != 0:
        raise RunError(f"Graphviz failed to render {dot_path}: {result.stderr.strip()}")
    return path
