"""Evaluate a circuit: the pruned model against the full model on a task split (method.md 5.2)."""
from __future__ import annotations

import torch

from .circuit import Circuit
from .models import PrunableModel, prunable
from .models.disentangled import run_disentangled


@torch.no_grad()
def evaluate_gates(pm: PrunableModel, dataset, edges, nodes, batch_size: int = 16, pad_to=None) -> dict:
    """Per-example task metrics of the model under the given gate values, and their means."""
    task = dataset.task
    device = pm.adapter.device
    per_example: dict[str, list[float]] = {}
    # One length for every batch, so a fixed (mean / zero) ablation record fits them all.
    seq_len = dataset.batch(list(range(len(dataset))), pad_to=pad_to).clean.shape[1]
    fixed = None if pm.ablation == "corrupted" else pm.ablation_record(seq_len=seq_len)
    for start in range(0, len(dataset), batch_size):
        batch = dataset.batch(list(range(start, min(len(dataset), start + batch_size))), pad_to=seq_len).to(device)
        record = fixed if fixed is not None or pm.ablation != "corrupted" else \
            pm.record(batch.corrupted, batch.attention_mask)
        logits = run_disentangled(pm.adapter, pm.graph, batch.clean, record, edges.to(device), nodes.to(device),
                                  batch.attention_mask, batch.positions, pm.backend).float()
        full = pm.full_logits(batch.clean, batch.attention_mask, batch.positions).float()
        for name, values in task.metrics(logits, full, batch).items():
            per_example.setdefault(name, []).extend(values.float().cpu().tolist())
    means = {name: sum(v) / len(v) for name, v in per_example.items() if v}
    return means | {"per_example": per_example, "n": len(dataset)}


def evaluate(model, circuit: Circuit | None, data, *, split: str = "test", batch_size: int = 16, tokenizer=None,
             n: int | None = None, seed: int = 0, ablation: str | None = None, pad_to=None, device=None) -> dict:
    """KL, logit difference, accuracy, exact match and the task's own metrics of `circuit` on `data`.

    model: a PrunableModel, or a model as edgeprune.train accepts it. circuit None evaluates the
    full model against itself (KL 0), a sanity baseline. Returns means plus "per_example" lists.
    """
    from . import tasks
    from .train import load_model
    if isinstance(model, PrunableModel):
        pm = model
        tokenizer = tokenizer or getattr(pm.model, "tokenizer", None)
    else:
        model, tokenizer = load_model(model, tokenizer, device)
        emb = circuit.graph.embedding_nodes if circuit is not None else None
        pm = prunable(model, embedding_nodes=emb, ablation=ablation or (circuit.config.get("ablation", "corrupted")
                                                                        if circuit else "corrupted"))
    dataset = data if hasattr(data, "batch") else tasks.load(data, tokenizer, split=split, n=n, seed=seed)
    if pm.ablation == "mean" and pm.mean_record is None:
        batch = dataset.batch(list(range(len(dataset))), pad_to=pad_to)
        pm.set_mean_ablation(batch.clean.to(pm.adapter.device), batch.attention_mask.to(pm.adapter.device))
    if circuit is not None and circuit.graph != pm.graph:
        raise ValueError(f"the circuit was found on a graph {circuit.graph} but the model's graph is {pm.graph}: "
                         "evaluate it on the model (and embedding_nodes) it was trained on")
    edges = torch.zeros(pm.graph.num_edges)
    if circuit is None:
        edges += 1
    else:
        index = pm.graph.edge_index
        edges[[index[tuple(e)] for e in circuit.edges]] = 1
    nodes = torch.ones(pm.graph.num_writers)
    return evaluate_gates(pm, dataset, edges, nodes, batch_size, pad_to)
