"""The shipped Tracr programs: their compiled weights (package data) and weight-support ground truth.

See edgeprune.tracr for the table of programs and how the ground truth is defined.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache

import torch

from ..errors import MissingFile, UserError
from ..graph import Graph
from ..models.tracr import TracrConfig, TracrTransformer

PROGRAMS = ("reverse", "xproportion")
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def check_name(name: str) -> str:
    if name.startswith("tracr-"):
        name = name[len("tracr-"):]
    if name not in PROGRAMS:
        raise UserError(f"unknown Tracr program {name!r}; choose one of {', '.join(PROGRAMS)}")
    return name


@lru_cache(maxsize=None)
def _read(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file
    base = os.path.join(DATA_DIR, name)
    if not os.path.exists(base + ".json") or not os.path.exists(base + ".safetensors"):
        raise MissingFile(f"the package data for Tracr program {name!r} is missing from {DATA_DIR}; "
                          "regenerate it with `python scripts/compile_tracr.py` (needs tracr-pypi)")
    with open(base + ".json") as f:
        config = json.load(f)
    return config, load_file(base + ".safetensors")


def load_model(name: str) -> TracrTransformer:
    """The compiled model of a program, from the shipped weights (a fresh copy each call)."""
    config, weights = _read(check_name(name))
    return TracrTransformer(TracrConfig.from_json(config), weights)


# ---------------------------------------------------------------------------------------- ground truth

def _nonzero(t: torch.Tensor) -> frozenset[int]:
    return frozenset(torch.nonzero(t != 0).flatten().tolist())


def supports(model: TracrTransformer) -> tuple[dict[str, frozenset[int]], dict[str, frozenset[int]]]:
    """(writer -> residual dims it writes, reader -> residual dims it reads), by graph names."""
    c = model.config
    H, dk = c.num_heads, c.key_size
    col = lambda w: w.abs().sum(0)  # noqa: E731  (D_in, D_out) -> per output column
    row = lambda w: w.abs().sum(1)  # noqa: E731  per input row
    writes = {"tok_embeds": _nonzero(col(model.token_embed)), "pos_embeds": _nonzero(col(model.pos_embed))}
    reads: dict[str, frozenset[int]] = {}
    for layer, m in enumerate(model.layers):
        for h in range(H):
            heads = slice(h * dk, (h + 1) * dk)
            writes[f"a{layer}.h{h}"] = _nonzero(col(m.out_w[heads]) + m.out_b.abs())
            reads[f"a{layer}.h{h}.q"] = _nonzero(row(m.query_w[:, heads]))
            reads[f"a{layer}.h{h}.k"] = _nonzero(row(m.key_w[:, heads]))
            reads[f"a{layer}.h{h}.v"] = _nonzero(row(m.value_w[:, heads]))
        writes[f"m{layer}"] = _nonzero(col(m.mlp_w2) + m.mlp_b2.abs())
        reads[f"m{layer}"] = _nonzero(row(m.mlp_w1))
    if model.unembedding is not None:
        reads["resid_post"] = _nonzero(row(model.unembedding))
    else:
        reads["resid_post"] = frozenset({c.output_dim})
    return writes, reads


def ground_truth(model: TracrTransformer) -> list[tuple[str, str]]:
    """The weight-support circuit of a compiled model, in the graph's edge order (module docstring)."""
    c = model.config
    graph = Graph(c.num_layers, c.num_heads, c.num_heads, 2)
    writes, reads = supports(model)

    def live_reader(reader: str) -> bool:  # the component the reader feeds writes something
        return reader == "resid_post" or bool(writes[reader.rsplit(".", 1)[0] if reader.count(".") == 2
                                                     else reader])

    return [(w, r) for w, r in graph.edges if writes[w] and live_reader(r) and writes[w] & reads[r]]




def read_config(name: str) -> dict:
    """The package-data JSON of a program (vocabulary, encodings, shapes)."""
    return _read(check_name(name))[0]
