"""Evaluate a circuit: the pruned model against the full model on a task split (docs/method.md 5.2)."""
from __future__ import annotations

import os

import torch

from . import provenance, tasks
from .circuit import Circuit
from .errors import UserError
from .loading import load_model
from .models import PrunableModel, prunable
from .progress import progress_bar


@torch.no_grad()
def evaluate_gates(pm: PrunableModel, dataset, edges, nodes, batch_size: int = 16, pad_to=None,
                   progress: bool | None = False) -> dict:
    """Per-example task metrics of the model under the given gate values, and their means (progress:
    a bar per batch, edgeprune.progress)."""
    task = dataset.task
    device = pm.adapter.device
    per_example: dict[str, list[float]] = {}
    # One length for every batch, so a fixed (mean / zero) ablation record fits them all.
    seq_len = dataset.batch(list(range(len(dataset))), pad_to=pad_to).clean.shape[1]
    edges, nodes = edges.to(device), nodes.to(device)
    bar = progress_bar(-(-len(dataset) // batch_size), "evaluating", progress)
    for start in range(0, len(dataset), batch_size):
        batch = dataset.batch(list(range(start, min(len(dataset), start + batch_size))), pad_to=seq_len).to(device)
        record = pm.ablation_record(batch.corrupted, batch.attention_mask, seq_len)
        logits = pm(batch.clean, batch.attention_mask, batch.positions, edges=edges, nodes=nodes,
                    record=record).float()
        full = pm.full_logits(batch.clean, batch.attention_mask, batch.positions).float()
        for name, values in task.metrics(logits, full, batch).items():
            per_example.setdefault(name, []).extend(values.float().cpu().tolist())
        bar.update(1)
    bar.close()
    means = {name: sum(v) / len(v) for name, v in per_example.items() if v}
    return means | {"per_example": per_example, "n": len(dataset)}


def evaluate_circuit(pm: PrunableModel, circuit: Circuit | None, dataset, batch_size: int = 16, pad_to=None,
                     progress: bool | None = False) -> dict:
    """evaluate_gates with a circuit's binary gates (None: the full model, KL 0)."""
    if circuit is not None:
        circuit.check(pm.graph)
    edges, nodes = pm.circuit_gates(None if circuit is None else circuit.edges)
    return evaluate_gates(pm, dataset, edges, nodes, batch_size, pad_to, progress)


def evaluate(model, circuit: Circuit | None, data, *, split: str = "test", batch_size: int = 16, tokenizer=None,
             n: int | None = None, seed: int = 0, ablation: str | None = None, pad_to=None, device=None,
             check_weights: bool = True, progress: bool | None = None) -> dict:
    """KL, logit difference, accuracy, exact match and the task's own metrics of `circuit` on `data`.

    model: a PrunableModel, or a model as edgeprune.train accepts it. circuit None evaluates the
    full model against itself (KL 0), a sanity baseline. Returns means plus "per_example" lists.
    A circuit that records its model's weights fingerprint is refused on other weights unless
    check_weights=False (edgeprune.provenance). progress: a bar per batch (None: on a terminal).
    """
    given = repr(str(model)) if isinstance(model, (str, os.PathLike)) else "the model given"
    if isinstance(model, PrunableModel):
        pm = model
        tokenizer = tokenizer or getattr(pm.model, "tokenizer", None)
    else:
        model, tokenizer = load_model(model, tokenizer, device)
        emb = circuit.graph.embedding_nodes if circuit is not None else None
        writers = circuit.graph.attention_writers if circuit is not None else "heads"
        pm = prunable(model, embedding_nodes=emb, ablation=ablation or (circuit.config.get("ablation", "corrupted")
                                                                        if circuit else "corrupted"),
                      attention_writers=writers, kv_edges=circuit.graph.kv_edges if circuit is not None else "group")
    if check_weights and circuit is not None:
        provenance.check_weights(circuit, pm.model, given)
    dataset = data if hasattr(data, "batch") else tasks.load(data, tokenizer, split=split, n=n, seed=seed)
    pm.kind.prepare_evaluation(pm, dataset, circuit, pad_to)
    return evaluate_circuit(pm, circuit, dataset, batch_size, pad_to, progress)
