"""Bytes saved for backward: the delta stack is kept once, so edge memory grows with W, not L x W.

Counted by storage (helpers/saved.py), activation-sized tensors only (at least one (B, S, D)
tensor); the gate parameters and weights are excluded. In units u = B * S * D * 4 bytes, the
gated forward of this GPT-2 config (H = 4, D = 32, E = 2) saves exactly

    W + 33.625 L + 0.25   units,    W = 2 + 5 L writers,

i.e. the delta stack once (W units) plus a fixed per-layer amount (per-reader norm inputs, the
attention and MLP activations). The reference saves (2L + 1) stacks of W units: O(L^2).
"""
import torch

import edgeprune
from edgeprune.models.disentangled import run_disentangled
from helpers.models import VOCAB, tiny
from helpers.saved import saved_storages

B, S, D = 2, 8, 32
UNIT = B * S * D * 4


def _activation_units(layers: int) -> tuple[float, int]:
    model = tiny("gpt2", layers=layers)
    pm = edgeprune.prunable(model)
    ids, cids = torch.randint(2, VOCAB, (B, S)), torch.randint(2, VOCAB, (B, S))
    edges = torch.rand(pm.graph.num_edges, requires_grad=True)
    nodes = torch.rand(pm.graph.num_writers, requires_grad=True)
    out = run_disentangled(pm.adapter, pm.graph, ids, pm.record(cids), edges, nodes,
                           positions=torch.full((B, 1), S - 1))
    storages = saved_storages(out, exclude=[*model.parameters(), edges, nodes])
    return sum(v for v in storages.values() if v >= UNIT) / UNIT, pm.graph.num_writers


def test_saved_bytes_linear_in_writers():
    (u2, w2), (u4, w4), (u8, w8) = (_activation_units(n) for n in (2, 4, 8))
    per_layer = ((u4 - w4) - (u2 - w2)) / 2
    assert per_layer == 33.625
    for layers, units, writers in ((2, u2, w2), (4, u4, w4), (8, u8, w8)):
        assert units == writers + per_layer * layers + 0.25
    # the reference's law for comparison: (2L + 1) stacks of W units, 8 layers -> 17 x 42 = 714 units
    assert u8 < 0.5 * (2 * 8 + 1) * w8
