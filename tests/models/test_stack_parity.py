"""The functional delta stack (BlockStack, a compiled step's) run eagerly equals the in-place one
(DeltaStack, an eager step's), in float64: the logits and the gradients of the edge and node gates,
of the ablation record's values and of optimal ablation's constants, for every family edgeprune
prunes, under interchange, zero, mean and optimal ablation, with and without loss positions,
padding, embedding nodes, per-query key/value readers, whole-layer attention writers and layers
recomputed in backward.

The two stacks order their sums differently (per-block gradients summed by autograd against one
buffer accumulated in place), so they agree to rounding, not bit for bit.
"""
from functools import cache

import pytest
import torch

import edgeprune
from edgeprune.recomputation import checkpointed
from edgeprune.errors import UserError
from edgeprune.models import DIRECT
from helpers.models import EVERY_FAMILY, GROUPED_QUERY, any_family, family_ids

RTOL = 1e-10

TRACR = ("reverse", "xproportion")


@cache
def _model(family: str):
    return any_family(family, torch.float64)


def _inputs(family: str, padded: bool):
    ids, cids = family_ids(family, b=3, s=7)
    mask = None
    if padded:  # left padding in two rows, as a batch of prompts of different lengths
        mask = torch.ones_like(ids)
        mask[1, :2] = 0
        mask[2, :4] = 0
    S = ids.shape[1]
    positions = torch.tensor([[S - 1, S - 2], [S - 1, S - 3], [S - 2, S - 1]])
    return ids, cids, mask, positions


def _gates(n: int, seed: int, nearly_closed: bool = False) -> torch.Tensor:
    """Gates strictly inside (0, 1): every writer's delta and every edge's share count. nearly_closed:
    every fifth below optimal ablation's threshold (its constants learn through those edges only)."""
    u = 0.05 + 0.9 * torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if nearly_closed:
        u[::5] = 1e-4
    return u.requires_grad_()


def _run(pm, stack: str, ids, cids, mask, positions, runner=None):
    """Logits and every gradient of one weighted loss, on the given stack."""
    edges, nodes = _gates(pm.graph.num_edges, 2, nearly_closed=True), _gates(pm.graph.num_writers, 3)
    record = pm.ablation_record(cids, mask, ids.shape[1])
    leaves = []
    if record is not None and pm.ablation != "optimal":  # the record's values are gradient leaves too
        record = record.map(lambda t: t.detach().clone().requires_grad_())
        leaves = record.tensors()
    if pm.constants is not None:
        pm.constants.zero_grad(set_to_none=True)
    logits = pm(ids, mask, positions, edges=edges, nodes=nodes, record=record, stack=stack)
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(4), dtype=logits.dtype)
    (logits * weights).sum().backward()
    grads = {"edges": edges.grad, "nodes": nodes.grad}
    grads.update({f"record.{i}": t.grad for i, t in enumerate(leaves)})
    if pm.constants is not None:
        grads.update({f"constant.{name}": p.grad for name, p in pm.constants.named_parameters()})
    return logits.detach(), grads


def _assert_parity(pm, ids, cids, mask, positions):
    delta_logits, delta_grads = _run(pm, "delta", ids, cids, mask, positions)
    block_logits, block_grads = _run(pm, "blocks", ids, cids, mask, positions)
    torch.testing.assert_close(block_logits, delta_logits, rtol=RTOL, atol=RTOL * delta_logits.abs().max())
    assert block_grads.keys() == delta_grads.keys()
    for name, expect in delta_grads.items():
        got = block_grads[name]
        if expect is None:  # a leaf the loss does not reach reaches it on neither stack
            assert got is None, name
            continue
        torch.testing.assert_close(got, expect, rtol=RTOL, atol=RTOL * max(expect.abs().max(), 1e-300), msg=name)
    assert delta_grads["edges"].abs().max() > 0
    return delta_grads


FAMILIES = EVERY_FAMILY
HF = [f for f in FAMILIES if f not in TRACR]
CASES = (
    [pytest.param(f, "corrupted", {}, False, False, id=f"{f}-corrupted") for f in FAMILIES]
    + [pytest.param(f, "corrupted", {}, True, False, id=f"{f}-corrupted-positions") for f in FAMILIES]
    + [pytest.param(f, "zero", {}, True, False, id=f"{f}-zero-positions") for f in FAMILIES]
    + [pytest.param(f, "zero", {}, False, False, id=f"{f}-zero") for f in ("gpt2", "llama", "reverse")]
    + [pytest.param(f, "optimal", {}, True, False, id=f"{f}-optimal-positions") for f in HF]
    + [pytest.param(f, "corrupted", {"kv_edges": "query"}, True, False, id=f"{f}-kv-query") for f in GROUPED_QUERY]
    + [pytest.param(f, "corrupted", {"attention_writers": "layer"}, True, False, id=f"{f}-layer-writers")
       for f in FAMILIES]
    + [pytest.param("gpt2", "mean", {}, True, False, id="gpt2-mean-positions"),
       pytest.param("gpt2", "corrupted", {"embedding_nodes": 0}, True, False, id="gpt2-no-embedding-nodes"),
       pytest.param("llama", "zero", {"embedding_nodes": 0}, False, False, id="llama-no-embedding-nodes-zero"),
       pytest.param("gpt2", "corrupted", {"embedding_nodes": 2}, False, False, id="gpt2-two-embedding-nodes"),
       pytest.param("llama", "corrupted", {}, True, True, id="llama-padded-positions"),
       pytest.param("gemma2", "zero", {}, False, True, id="gemma2-padded-zero")]
)


@pytest.mark.parametrize("family,ablation,graph,with_positions,padded", CASES)
def test_block_stack_equals_delta_stack(family, ablation, graph, with_positions, padded):
    pm = edgeprune.prunable(_model(family), ablation=ablation, **graph)
    ids, cids, mask, positions = _inputs(family, padded)
    if ablation in ("mean", "optimal"):
        pm.set_mean_ablation(torch.cat([cids, ids.flip(1)]), None if mask is None else torch.cat([mask, mask]))
        if pm.constants is not None:  # float64 like the model, so that rounding cannot hide a difference
            pm.constants.double()
    grads = _assert_parity(pm, ids, cids, mask, positions if with_positions else None)
    if ablation == "optimal":  # the constants learn through the reader term on both stacks
        assert any(name.startswith("constant.") and g is not None and g.abs().max() > 0 for name, g in grads.items())
    if ablation in ("corrupted", "mean"):  # the record's values carry a gradient on both stacks
        assert any(name.startswith("record.") and g is not None and g.abs().max() > 0 for name, g in grads.items())


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_block_stack_equals_delta_stack_with_checkpointed_layers(family):
    """Each layer rerun in backward (edgeprune.recomputation): the rerun's writes leave the forward's blocks."""
    pm = edgeprune.prunable(_model(family))
    pm.set_layer_runner(checkpointed(DIRECT))
    ids, cids, mask, positions = _inputs(family, False)
    _assert_parity(pm, ids, cids, mask, positions)


def test_block_stack_equals_delta_stack_without_gradients():
    """Gate sets (G blocks of the batch, one gate set each), the single-edge ablations' batched forward,
    on a model whose embeddings are not writers (the first layer's readers read no writer)."""
    pm = edgeprune.prunable(_model("llama"))
    ids, cids, _, positions = _inputs("llama", False)
    edges = torch.rand(3, pm.graph.num_edges, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    nodes = torch.ones(pm.graph.num_writers, dtype=torch.float64)
    with torch.no_grad():
        record = pm.record(cids)
        out = [pm(ids, None, positions, edges=edges, nodes=nodes, record=record, stack=s) for s in ("delta", "blocks")]
    torch.testing.assert_close(out[1], out[0], rtol=RTOL, atol=RTOL * out[0].abs().max())
    with torch.no_grad():  # set g is example g's own gated forward
        each = torch.cat([pm(ids[g:g + 1], None, positions[g:g + 1], edges=edges[g], nodes=nodes,
                             record=record.select(slice(g, g + 1))) for g in range(3)])
    torch.testing.assert_close(out[0], each, rtol=RTOL, atol=RTOL * each.abs().max())


def test_an_unknown_stack_is_refused():
    pm = edgeprune.prunable(_model("gpt2"))
    edges, nodes = pm.circuit_gates()
    with pytest.raises(UserError, match=r"stack='traced' is not a delta stack kind; choose one of \('delta', 'blocks'\)"):
        pm(torch.zeros(1, 3, dtype=torch.long), edges=edges.double(), nodes=nodes.double(), record=None,
           stack="traced")
