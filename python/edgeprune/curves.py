"""Faithfulness curves at MIB's budgets, and their CPR and CMD (as MIB's circuit track scores them).

    curve = edgeprune.faithfulness(model, circuit, "ioi")      # every budget on the same batches
    print(curve.table()); curve.cpr, curve.cmd

f(C) = (m(C) - m(empty)) / (m(full) - m(empty)), with m averaged over the examples first. m is the
logit difference (the clean answer's logit minus the counterfactual answer's, at the answer
position) or KL(full || circuit). Pruned edges are patched with the corrupted run (interchange
ablation, as MIB evaluates), whatever the circuit was trained with, unless `ablation` says
otherwise (a circuit trained with optimal ablation, evaluated with its own constants). At each budget the circuit's ranking
is cut to the top floor(fraction x MIB's edge count) edges on MIB's graph, then pruned of dangling
edges (edgeprune.mib). CPR is the trapezoid area of f over the fractions (higher is better), CMD the
area of |1 - f| (0 is best); CPR ranks by the signed score, CMD by its absolute value (they agree
for learned gates, whose scores are keep probabilities).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import tasks
from .circuit import Circuit
from .errors import UserError
from .loading import prunable_for
from .mib import BUDGETS, MIBGraph, cumulative_area, for_budget
from .models import PrunableModel
from .progress import progress_bar

METRICS = ("logit_diff", "kl")


@dataclass
class Curve:
    fractions: list[float]
    faithfulness: list[float]
    faithfulness_abs: list[float]      # the curve of the ranking by |score| (CMD's)
    edges: list[int]                   # edgeprune edges kept at each budget
    mib_edges: list[int]               # MIB edges in the pruned circuit at each budget
    kl: list[float]
    accuracy: list[float]
    metric: str
    full: float                        # m(full model)
    empty: float                       # m(every edge patched)
    label: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def cpr(self) -> float:
        return cumulative_area(self.fractions, self.faithfulness)

    @property
    def cmd(self) -> float:
        return cumulative_area(self.fractions, [abs(1 - f) for f in self.faithfulness_abs])

    def table(self) -> str:
        head = (f"{self.label or 'circuit'}: metric {self.metric} (full {self.full:.4g}, empty {self.empty:.4g}); "
                f"CPR {self.cpr:.4f}, CMD {self.cmd:.4f}")
        signed = self.faithfulness_abs != self.faithfulness  # signed scores: CMD's curve is another ranking's
        lines = [head, f"  {'fraction':>9} {'MIB edges':>10} {'edges':>8} {'f':>8} {'KL':>8} {'accuracy':>9}"
                       + (f" {'f (|score|)':>12}" if signed else "")]
        for i, frac in enumerate(self.fractions):
            lines.append(f"  {frac:>9g} {self.mib_edges[i]:>10} {self.edges[i]:>8} {self.faithfulness[i]:>8.4f} "
                         f"{self.kl[i]:>8.4f} {self.accuracy[i]:>9.4f}"
                         + (f" {self.faithfulness_abs[i]:>12.4f}" if signed else ""))
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"label": self.label, "metric": self.metric, "cpr": self.cpr, "cmd": self.cmd, "full": self.full,
                "empty": self.empty, "fractions": self.fractions, "faithfulness": self.faithfulness,
                "faithfulness_abs": self.faithfulness_abs, "edges": self.edges, "mib_edges": self.mib_edges,
                "kl": self.kl, "accuracy": self.accuracy, **self.extra}


def metric_values(metric: str, task, logits: torch.Tensor, full: torch.Tensor, batch) -> torch.Tensor:
    """Per-example m: the logit difference at the answer position, or KL(full || circuit)."""
    if metric == "kl":
        return task.kl(logits, full, batch)
    if bool((batch.distractors < 0).any()) or bool((batch.answers < 0).any()):
        raise UserError(f"the {task.name} examples have no counterfactual answer for the logit difference; use "
                         "metric='kl' (custom JSONL: add a \"counterfactual\" field to each line)")
    first = logits[:, 0].to(torch.promote_types(logits.dtype, torch.float32))  # float64 models keep float64
    rows = torch.arange(len(first), device=first.device)
    return first[rows, batch.answers.to(first.device)] - first[rows, batch.distractors.to(first.device)]


@torch.no_grad()
def faithfulness(model, circuit: Circuit | dict | torch.Tensor, data, *, budgets="mib", metric: str = "logit_diff",
                 split: str = "test", n: int | None = None, batch_size: int = 16, tokenizer=None, seed: int = 0,
                 device=None, label: str = "", ablation: str = "corrupted", progress: bool | None = None) -> Curve:
    """The circuit's faithfulness at each budget (fractions of MIB's edges kept), with CPR and CMD.

    model: a PrunableModel or anything edgeprune.train accepts. circuit: a Circuit with scores (a
    trained, attributed or MIB-imported one), {fraction: Circuit} from a budget sweep (each budget
    cut from its own stage's ranking), or a tensor of per-edge scores in graph order (higher: more
    important). budgets: "mib" (MIB's ten fractions) or a list of fractions in [0, 1]. ablation:
    what pruned edges carry, "corrupted" (MIB's patching), "mean" (over the evaluated data) or
    "optimal" (the circuit's learned constants). progress: a bar over the batches and budgets, with
    a time estimate (None: on a terminal).
    """
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; choose one of {METRICS}")
    fractions = list(BUDGETS if budgets == "mib" else budgets)
    if not fractions or any(not 0 <= f <= 1 for f in fractions) or fractions != sorted(fractions):
        raise UserError(f"budgets must be increasing fractions of edges kept, in [0, 1]; got {budgets!r}")
    stages = circuit if isinstance(circuit, dict) else None
    circuit = stages[max(stages)] if stages else circuit
    pm, tokenizer = prunable_for(model, "faithfulness", ablation, tokenizer, device,
                                 embedding_nodes=_input_nodes(circuit))
    if isinstance(circuit, torch.Tensor):
        circuit = Circuit(pm.graph, [], list(pm.graph.writers), edge_scores=circuit, score_kind="score")
    dataset = data if hasattr(data, "batch") else tasks.load(data, tokenizer, split=split, n=n, seed=seed)
    pm.kind.prepare_evaluation(pm, dataset, circuit)

    target = MIBGraph(pm.graph)
    masks, counts = {}, {}
    for frac in fractions:
        ranked = for_budget(stages, frac) if stages else circuit
        source = MIBGraph(ranked.graph)
        scores = ranked.mib_scores(source)
        for absolute in (False, True):
            in_graph = source.top_edges(scores, source.budget_edges(frac), absolute=absolute)
            masks[absolute, frac] = target.edge_mask(in_graph)
            counts[absolute, frac] = int(in_graph.sum())
    ends = {"full": torch.ones(pm.graph.num_edges), "empty": torch.zeros(pm.graph.num_edges)}
    sums = _evaluate(pm, dataset, metric, {**masks, **ends}, batch_size,
                     progress_bar(-(-len(dataset) // batch_size) * (len(masks) + len(ends)),
                                  f"curve {label or circuit.task}", progress))
    full, empty = sums["full"]["m"], sums["empty"]["m"]
    denom = full - empty
    if abs(denom) < 1e-12:
        raise UserError(f"the full model and the empty circuit score the same on {metric} ({full:.4g}): "
                         "faithfulness is undefined; check the corrupted inputs differ from the clean ones")

    def f(key):
        return (sums[key]["m"] - empty) / denom
    return Curve(fractions, [f((False, x)) for x in fractions], [f((True, x)) for x in fractions],
                 [int(masks[False, x].sum()) for x in fractions], [counts[False, x] for x in fractions],
                 [sums[False, x]["kl"] for x in fractions], [sums[False, x]["accuracy"] for x in fractions],
                 metric, full, empty, label or circuit.config.get("label", "") or circuit.task)


@torch.no_grad()
def circuit_faithfulness(model, circuit: Circuit, data, *, metric: str = "logit_diff", split: str = "test",
                         n: int | None = None, batch_size: int = 16, tokenizer=None, seed: int = 0, device=None) -> float:
    """f of one circuit's own edges (no budget cut): (m(C) - m(empty)) / (m(full) - m(empty))."""
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; choose one of {METRICS}")
    pm, tokenizer = prunable_for(model, "faithfulness", "corrupted", tokenizer, device,
                                 embedding_nodes=_input_nodes(circuit))
    dataset = data if hasattr(data, "batch") else tasks.load(data, tokenizer, split=split, n=n, seed=seed)
    edges = MIBGraph(pm.graph).edge_mask(MIBGraph(circuit.graph).membership_from(circuit.graph.edge_mask(circuit.edges)))
    sums = _evaluate(pm, dataset, metric, {"circuit": edges, "full": torch.ones(pm.graph.num_edges),
                                           "empty": torch.zeros(pm.graph.num_edges)}, batch_size)
    return (sums["circuit"]["m"] - sums["empty"]["m"]) / (sums["full"]["m"] - sums["empty"]["m"])


def _input_nodes(circuit) -> int | None:
    """The embedding nodes of a model built for a circuit's curve: at least one, as MIB patches the
    embeddings too (None: the family's default, for scores given as a tensor in its graph's order).
    Its K/V edges are per query head, MIB's own graph, so a MIB membership maps one to one (a
    grouped circuit's K/V edge is then kept on each query head of its group)."""
    return max(1, circuit.graph.embedding_nodes) if isinstance(circuit, Circuit) else None


def _evaluate(pm: PrunableModel, dataset, metric: str, masks: dict, batch_size: int, bar=None) -> dict:
    """Mean m, KL and accuracy of every mask over the dataset; one corrupted record per batch (bar: a
    progress bar, one unit per batch and mask)."""
    device = pm.adapter.device
    nodes = torch.ones(pm.graph.num_writers, device=device)
    masks = {k: v.to(device) for k, v in masks.items()}
    totals = {k: {"m": 0.0, "kl": 0.0, "accuracy": 0.0} for k in masks}
    seq_len = dataset.batch(list(range(len(dataset)))).clean.shape[1]
    for start in range(0, len(dataset), batch_size):
        batch = dataset.batch(list(range(start, min(len(dataset), start + batch_size))), pad_to=seq_len).to(device)
        record = pm.ablation_record(batch.corrupted, batch.attention_mask, seq_len)
        full = pm.full_logits(batch.clean, batch.attention_mask, batch.positions).float()
        for key, edges in masks.items():
            logits = pm(batch.clean, batch.attention_mask, batch.positions, edges=edges, nodes=nodes,
                        record=record).float()
            t = totals[key]
            t["m"] += float(metric_values(metric, dataset.task, logits, full, batch).sum())
            t["kl"] += float(dataset.task.kl(logits, full, batch).sum())
            if bool((batch.answers >= 0).all()):
                t["accuracy"] += float((logits[:, 0].argmax(-1) == batch.answers).float().sum())
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return {k: {name: value / len(dataset) for name, value in t.items()} for k, t in totals.items()}
