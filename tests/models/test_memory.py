"""What the gated forward keeps for backward: the delta stack once, so memory grows with W, not L x W.

Measured by storage (helpers/saved.py: every storage the forward created and still holds, ctx
attributes and checkpoint inputs included), activation-sized storages only (whole multiples of
one (B, S, D) tensor); gates, weights and the cached corrupted record are not counted. In units
u = B * S * D * 4 bytes, this GPT-2 config (H = 4, D = 32, E = 2, W = 2 + 5 L writers) holds exactly

    W + 31 L + 1 units   (attention readers recomputed in backward, the default)
    W + 43 L + 1 units   (kept: 3H = 12 more per layer, the per-reader norms' inputs)

i.e. the delta stack once plus a fixed per-layer amount. The reference keeps (2L + 1) stacks of W
units: O(L^2).
"""
import pytest
import torch

import edgeprune
from helpers.models import VOCAB, tiny
from helpers.saved import held_by_forward

B, S, D = 2, 8, 32
UNIT = B * S * D * 4


def _activation_units(layers: int, recompute: bool = True) -> tuple[float, int]:
    model = tiny("gpt2", layers=layers)
    pm = edgeprune.prunable(model)
    ids, cids = torch.randint(2, VOCAB, (B, S)), torch.randint(2, VOCAB, (B, S))
    edges = torch.rand(pm.graph.num_edges, requires_grad=True)
    nodes = torch.rand(pm.graph.num_writers, requires_grad=True)
    record = pm.record(cids)
    out, storages = held_by_forward(lambda: pm(ids, positions=torch.full((B, 1), S - 1), edges=edges, nodes=nodes,
                                               record=record, recompute_readers=recompute))
    return sum(v for v in storages.values() if v % UNIT == 0) / UNIT, pm.graph.num_writers


@pytest.mark.parametrize("recompute,per_layer", [(True, 31), (False, 43)])
def test_saved_bytes_linear_in_writers(recompute, per_layer):
    for layers in (2, 4, 8):
        units, writers = _activation_units(layers, recompute)
        assert units == writers + per_layer * layers + 1
    # the reference's law for comparison: (2L + 1) stacks of W units, 8 layers -> 17 x 42 = 714 units
    assert units < 0.6 * (2 * layers + 1) * writers
