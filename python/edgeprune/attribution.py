"""Edge attribution on edgeprune's own graph and gated forward: EAP, EAP-IG, clean-corrupted, exact.

    scored = edgeprune.attribute(model, "ioi", method="eap-ig-inputs")   # a Circuit of scores
    edgeprune.faithfulness(model, scored, "ioi")                          # its curve, CPR and CMD

An edge e = (w -> r) has a gate z_e in the gated forward, in_r = base_r + sum_w z[w, r] (x_w - c_w)
(docs/method.md 2.2), so dm/dz_e = (x_w - c_w) . dm/d in_r: the gradient of the metric with respect
to the flat edge gates is the attribution-patching score of every edge at once. Under grouped-query
attention every query head has its own key and value edges by default (kv_edges="query", MIB's
graph); kv_edges="group" scores one gate per KV group instead.

Sign convention: higher = more important for the metric. A score estimates m(every edge) -
m(every edge but e), the effect of keeping e. m is per example: the logit difference, or
-KL(full || circuit) for metric "kl". Scores are summed over positions (a gate is shared by them)
and averaged over examples. The methods (docs/method.md 11):
- eap: dm/dz at z = 1, one forward and backward per batch.
- eap-ig-inputs: (x_w - c_w) . dm/d in_r averaged over the runs whose input embeddings are
  c + a (x - c), a = k / steps for k = 0 .. steps - 1 (EAP-IG; x_w - c_w stays the clean run's).
- clean-corrupted: the same at a = 1 and a = 0 only (the clean and the corrupted run).
- eap-ig-activations (the EAP-IG package's definition): each node group in turn (the input, a
  layer's attention, a layer's MLP) has its output fixed at c + a (x - c), a = k / steps for
  k = 1 .. steps, the rest recomputed; every edge takes (x_w - c_w) . dm/d in_r of each such run,
  averaged over all groups and steps (edgeprune.node_groups).
- eap-ig-gates: integrated gradients in gate space, dm/dz averaged over z = a on every edge,
  a = k / steps for k = 1 .. steps; the scores sum to about m(full) - m(empty).
- exact: m(every edge) - m(every edge but e). The single-edge ablations run G at a time: one
  gated forward over the batch repeated G times, block g under the gates without edge g (the delta
  stack's gate-set read). Measured faster than one forward per edge (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch

from . import tasks
from .circuit import Circuit
from .curves import METRICS, metric_values
from .errors import UserError
from .loading import model_name, prunable_for
from .models import PrunableModel, WriterRecord
from .models.forward import record_writers
from .node_groups import group_gradients, node_groups
from .progress import progress_bar
from .provenance import model_record

METHODS = ("eap", "eap-ig-inputs", "eap-ig-activations", "eap-ig-gates", "clean-corrupted", "exact")
STEPPED = ("eap-ig-inputs", "eap-ig-activations", "eap-ig-gates")   # methods with integration steps
INPUT_METHODS = ("eap-ig-inputs", "clean-corrupted")   # interpolate clean and corrupted inputs
EXACT_EXAMPLES = 512   # exact: examples per gated forward (single-edge ablations x batch), by default


def attribute(model, data, method: str = "eap-ig-inputs", *, metric: str = "logit_diff",
              ablation: str = "corrupted", steps: int = 5, split: str = "train", n: int | None = None,
              batch_size: int = 16, tokenizer=None, seed: int = 0, device=None,
              exact_sets: int | None = None, kv_edges: str = "query", progress: bool | None = None) -> Circuit:
    """Score every edge of the model's graph on `data`; returns a Circuit of scores (score_kind "score").

    model: a PrunableModel, or a model as edgeprune.train accepts it (built with at least one
    embedding node, so input edges are scored, as MIB scores them). data: a task name, JSONL path,
    list of pairs or task dataset. steps: the integration steps of the EAP-IG methods. ablation:
    what a removed edge carries, "corrupted" (interchange), "mean" or "zero"; the input methods
    need "corrupted". exact_sets: single-edge ablations per forward for "exact" (default: about
    EXACT_EXAMPLES examples per forward; 0: one forward per edge through the mixing kernels). Cut
    the result with `at_edges` / `at_sparsity`, or score it with edgeprune.faithfulness. kv_edges:
    the graph's key and value edges under grouped-query attention, per query head ("query", MIB's)
    or per KV group ("group"); a PrunableModel keeps its own graph. progress: a bar per batch (per
    edge set for "exact"), with a time estimate (None: on a terminal).
    """
    if method not in METHODS:
        raise UserError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; choose one of {METRICS}")
    if steps < 1:
        raise UserError(f"steps must be at least 1, got {steps}")
    if exact_sets is not None and exact_sets < 0:
        raise UserError(f"exact_sets must be 0 (one forward per edge) or more, got {exact_sets}")
    sets = max(1, EXACT_EXAMPLES // batch_size) if exact_sets is None else exact_sets
    # built here with an input node: its edges are scored too, as MIB scores them
    pm, tokenizer = prunable_for(model, "attribution", ablation, tokenizer, device, input_node=True, kv_edges=kv_edges)
    pm.kind.check(method)
    dataset = data if hasattr(data, "batch") else tasks.load(data, tokenizer, split=split, n=n, seed=seed)
    if len(dataset) == 0:
        raise UserError("the attribution dataset is empty: give at least one clean/corrupted example")
    seq_len = dataset.batch(list(range(len(dataset)))).clean.shape[1]
    device = pm.adapter.device
    pm.kind.prepare_evaluation(pm, dataset)

    started = time.perf_counter()
    total = torch.zeros(pm.graph.num_edges, dtype=torch.float64, device=device)
    per_batch = 1 if method != "exact" else -(-pm.graph.num_edges // sets) if sets else pm.graph.num_edges
    bar = progress_bar(-(-len(dataset) // batch_size) * per_batch, method, progress)
    for start in range(0, len(dataset), batch_size):
        batch = dataset.batch(list(range(start, min(len(dataset), start + batch_size))), pad_to=seq_len).to(device)
        total += _batch_scores(pm, dataset.task, batch, method, metric, steps, seq_len, sets, bar)
        if method != "exact":
            bar.update(1)
    bar.close()
    scores = (total / len(dataset)).to(_gate_dtype(pm)).cpu()
    config = {"method": method, "metric": metric, "ablation": pm.ablation, "n": len(dataset),
              "seconds": time.perf_counter() - started, "label": method}
    if method in STEPPED:
        config["steps"] = steps
    return Circuit(pm.graph, list(pm.graph.edges), list(pm.graph.writers), edge_scores=scores, score_kind="score",
                   model=model_name(pm.model), task=dataset.task.name, config=config, **model_record(pm))


# ---------------------------------------------------------------------- one batch

def _batch_scores(pm: PrunableModel, task, batch, method: str, metric: str, steps: int, seq_len: int,
                  sets: int, bar) -> torch.Tensor:
    """The sum over the batch's examples of every edge's score, (num_edges,) float64."""
    record = pm.ablation_record(batch.corrupted, batch.attention_mask, seq_len)
    full = pm.full_logits(batch.clean, batch.attention_mask, batch.positions)

    def m(edges, rec, grad: bool):
        """Per-example metric of the gated model; with grad, edges is a leaf and its gradient is returned."""
        with torch.set_grad_enabled(grad):
            logits = pm(batch.clean, batch.attention_mask, batch.positions, edges=edges, nodes=nodes, record=rec)
            values = _metric(metric, task, logits, full, batch)
        if not grad:
            return values
        (gradient,) = torch.autograd.grad(values.sum(), edges)
        return gradient.double()

    device = pm.adapter.device
    nodes = torch.ones(pm.graph.num_writers, device=device, dtype=_gate_dtype(pm))
    ones = torch.ones(pm.graph.num_edges, device=device, dtype=_gate_dtype(pm))

    def leaf(value):
        return torch.full_like(ones, value).requires_grad_()

    if method == "eap":
        return m(leaf(1.0), record, True)
    if method == "eap-ig-gates":
        return sum(m(leaf(k / steps), record, True) for k in range(1, steps + 1)) / steps
    if method == "eap-ig-activations":
        clean, groups = pm.record(batch.clean, batch.attention_mask), node_groups(pm.graph)
        return sum(group_gradients(pm, m, batch, clean, record, g, steps, ones) for g in groups) / (len(groups) * steps)
    if method in INPUT_METHODS:
        alphas = [k / steps for k in range(steps)] if method == "eap-ig-inputs" else [0.0, 1.0]
        clean = pm.record(batch.clean, batch.attention_mask)
        return sum(m(leaf(1.0), _interpolated_record(pm, batch, clean, record, a), True) for a in alphas) / len(alphas)
    if sets:
        return _exact_sets(pm, task, batch, record, full, metric, sets, bar)
    return _exact(pm, m, ones, record, bar)


def _gate_dtype(pm: PrunableModel) -> torch.dtype:
    """Gates are float32, or float64 with a float64 model (the kernels accumulate in the gates' precision)."""
    return torch.float64 if pm.adapter.dtype == torch.float64 else torch.float32


def _metric(metric: str, task, logits, full, batch) -> torch.Tensor:
    """m per example, higher = the circuit does more of what the full model does."""
    values = metric_values(metric, task, logits, full, batch)
    return -values if metric == "kl" else values


def _interpolated_record(pm: PrunableModel, batch, clean: WriterRecord, corrupted: WriterRecord,
                         alpha: float) -> WriterRecord:
    """A record under which the gated forward of the clean input, every gate at 1, is the run on
    the embeddings c + alpha (x - c), while every delta x_w - c_w stays the clean run's.

    With R(a) that run's record: c'_w = R(a)_w - (x_w - c_w) for the heads and MLPs (their deltas
    in that run are then the clean ones), the corrupted embeddings (the forward embeds the clean
    input, so its embedding deltas are the clean ones), and as bases R(a) - R(1) + R(0), the
    residual streams of R(a) shifted by the clean-minus-corrupted embeddings that the embedding
    deltas add back.
    """
    if alpha == 1.0:
        return corrupted
    embeds = [c + alpha * (x - c) for x, c in zip(clean.embeds, corrupted.embeds)]
    run = record_writers(pm.adapter, batch.clean, batch.attention_mask, pm.layer_runner, embeds=embeds)

    def shift(a, x, c):
        return a - x + c
    fields = {name: [shift(a, x, c) for a, x, c in zip(getattr(run, name), getattr(clean, name),
                                                         getattr(corrupted, name))]
              for name in ("ctx", "mlp", "resid_pre", "resid_mid")}
    return WriterRecord(embeds=list(corrupted.embeds), resid_final=shift(run.resid_final, clean.resid_final,
                                                                         corrupted.resid_final), **fields)


@torch.no_grad()
def _exact(pm: PrunableModel, m, ones: torch.Tensor, record, bar) -> torch.Tensor:
    """m(every edge) - m(every edge but e), summed over the batch: one gated forward per edge (flat
    gates, through the mixing kernels)."""
    full = m(ones, record, False).double()
    out = torch.empty(pm.graph.num_edges, dtype=torch.float64, device=ones.device)
    edges = ones.clone()
    for e in range(pm.graph.num_edges):
        edges[e] = 0.0
        out[e] = (full - m(edges, record, False).double()).sum()
        edges[e] = 1.0
        bar.update(1)
    return out


@torch.no_grad()
def _exact_sets(pm: PrunableModel, task, batch, record, full_logits, metric: str, sets: int, bar) -> torch.Tensor:
    """As _exact, with `sets` single-edge ablations per gated forward (gate sets over a repeated batch)."""
    device, B, E = pm.adapter.device, len(batch), pm.graph.num_edges
    nodes = torch.ones(pm.graph.num_writers, device=device, dtype=_gate_dtype(pm))
    ones = torch.ones(E, device=device, dtype=_gate_dtype(pm))
    logits = pm(batch.clean, batch.attention_mask, batch.positions, edges=ones, nodes=nodes, record=record)
    full = _metric(metric, task, logits, full_logits, batch).double()
    out = torch.empty(E, dtype=torch.float64, device=device)
    for start in range(0, E, sets):
        g = min(sets, E - start)
        edges = ones.repeat(g, 1)
        edges[torch.arange(g), torch.arange(start, start + g)] = 0.0
        rep = _repeat_batch(batch, g)
        rec = None if record is None else record.map(lambda t: t.repeat(g, *[1] * (t.dim() - 1)) if t.shape[0] == B else t)
        logits = pm(rep.clean, rep.attention_mask, rep.positions, edges=edges, nodes=nodes, record=rec)
        values = _metric(metric, task, logits, full_logits.repeat(g, 1, 1), rep).double()
        out[start:start + g] = (full.repeat(g) - values).view(g, B).sum(1)
        bar.update(1)
    return out


def _repeat_batch(batch, g: int):
    fields = {name: getattr(batch, name).repeat(g, *[1] * (getattr(batch, name).dim() - 1)) for name in
              ("clean", "corrupted", "attention_mask", "positions", "position_mask", "answers", "distractors")}
    return replace(batch, **fields)


__all__ = ["EXACT_EXAMPLES", "INPUT_METHODS", "METHODS", "attribute"]
