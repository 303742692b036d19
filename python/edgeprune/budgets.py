"""Circuits at every budget from one training process.

    circuits = edgeprune.train_budgets(model, "ioi", budgets="mib")    # {fraction kept: Circuit}

By default it is the recipe measured most faithful on MIB's curve (benchmarks/RESULTS.md, "Attribution
against Edge Pruning"): a pruning path (edgeprune.path) warm-started from EAP-IG-inputs scores with
half the edges open, on the objective matched to the logit difference (KL where the examples have
no counterfactual answer). Its target falls through every budget to half the smallest, and each
budget's circuit is the top of the run's exit ranking there, so the circuits nest. Passing a config,
or path=False, objective=..., init=... or init_sparsity=..., sets those by hand.

With path=False it is a sweep from the loosest budget to the tightest. The first stage trains to the loosest budget below 1 with the full schedule (`steps`, `ramp_steps`).
Each later stage starts from the last stage's gates and trains `stage_steps` more, its target ramping
linearly from the last target to its own over the first half (fresh multipliers and optimiser, a
short warm-up). A budget is a fraction of edges kept, so its target sparsity is 1 - fraction. Each
stage's circuit is that budget's circuit; its scores rank the edges for MIB's top-n at that budget.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Callable

from .circuit import Circuit
from .config import CURVE, CURVE_INIT, TrainConfig, kv_edges_for
from .errors import UserError
from .loading import model_name
from .mib import BUDGETS
from .provenance import model_record
from .training import Trainer, has_counterfactuals, prepare, start_from, warm_config

NO_INPUT_NODE = ("budgets rank MIB's edges, input edges included, and this model's default graph has no embedding "
                 "node (embedding_nodes=0) to score them: pass embedding_nodes=1 (--embedding-nodes 1), or "
                 "embedding_nodes=0 explicitly for circuits that MIB's curves and exports will refuse")


def parse_budgets(budgets) -> list[float]:
    """'mib' -> MIB's fractions; else increasing fractions of edges kept in (0, 1]."""
    values = list(BUDGETS if budgets == "mib" else budgets)
    if not values or any(not 0 < f <= 1 for f in values) or values != sorted(set(values)):
        raise UserError(f"budgets must be increasing fractions of edges kept, in (0, 1] (or 'mib'); got {budgets!r}")
    return values


def train_budgets(model, data, budgets="mib", config: TrainConfig | None = None, *, stage_steps: int | None = None,
                  tokenizer=None, validation=None, n: int | None = None, device=None, dtype=None,
                  checkpoint_dir: str | None = None, progress: bool = True, init=CURVE_INIT, overwrite: bool = False,
                  on_circuit: Callable[[float, Circuit], None] | None = None, **overrides) -> dict[float, Circuit]:
    """Train once through every budget (loosest first); returns {fraction kept: Circuit}.

    config / overrides: as edgeprune.train (edge_sparsity is set per stage; kv_edges defaults to
    "query", MIB's graph, for grouped-query models). stage_steps: steps of
    each stage after the first (default: a quarter of `steps`). The fraction 1 (the whole model) is
    the full circuit and is not trained. init: a warm start, as edgeprune.train's (an attribution
    method's name, scores, or None for the paper's cold start).
    checkpoint_dir: each stage checkpoints in its stage-<fraction>/ folder; a rerun keeps the
    finished stages (their circuits rebuilt from their last checkpoints) and resumes the first
    unfinished one; overwrite=True starts every stage afresh. on_circuit(fraction, circuit) is
    called as soon as each budget's circuit is ready (the command line writes its folder then).
    """
    fractions = parse_budgets(budgets)
    overrides.setdefault("edge_sparsity", 1 - fractions[-1])
    fitted = config is None and "objective" not in overrides   # the curve's objective, unless there is none
    if config is None:
        overrides = CURVE | overrides
    config = TrainConfig.with_overrides(config, overrides)
    config = replace(config, kv_edges=kv_edges_for(config.kv_edges, sweep=True))
    stage_steps = stage_steps or max(1, config.steps // 4)
    pm, dataset, validation, run = prepare(model, data, config, tokenizer=tokenizer, validation=validation, n=n,
                                           device=device, dtype=dtype)
    if config.embedding_nodes is None and pm.graph.embedding_nodes == 0:  # before any training, not after
        raise UserError(NO_INPUT_NODE)
    if init is not None:
        start_from(pm, dataset, init, config)
    if fitted and config.objective == "logit_diff" and not has_counterfactuals(dataset):
        config = replace(config, objective="kl")
    if config.path:
        return _path(pm, dataset, config, fractions, init, validation=validation, checkpoint_dir=checkpoint_dir,
                     run=run, progress=progress, overwrite=overwrite, on_circuit=on_circuit)
    config, start = warm_config(config, pm, init)
    circuits: dict[float, Circuit] = {}
    previous = config.ramp_from
    for stage, fraction in enumerate(sorted((f for f in fractions if f < 1), reverse=True)):
        target = 1 - fraction
        stage_config = replace(config, edge_sparsity=target, ramp_from=previous) if stage == 0 else replace(
            config, edge_sparsity=target, ramp_from=previous, steps=stage_steps, ramp_steps=stage_steps // 2,
            warmup_steps=min(config.warmup_steps, max(1, stage_steps // 10)))
        folder = os.path.join(checkpoint_dir, f"stage-{fraction:g}") if checkpoint_dir else None
        # every stage follows from the warm start: a resume must start from the same scores
        trainer = Trainer(pm, dataset, stage_config, validation, folder, dist=run, init=start)
        trainer.maybe_resume(overwrite, reuse_finished=True)
        circuit = trainer.run(progress)
        circuit.config |= {"budget": fraction, "stage": stage} | ({"init": start} if start else {})
        circuits[fraction] = circuit
        if on_circuit is not None:
            on_circuit(fraction, circuit)
        previous = target
    if 1.0 in fractions:
        g = pm.gates
        circuits[1.0] = Circuit(pm.graph, list(pm.graph.edges), list(pm.graph.writers),
                                edge_scores=g.edge_log_alpha.detach().float().cpu().clone(),
                                node_scores=g.node_log_alpha.detach().float().cpu().clone(),
                                model=model_name(pm.model), task=dataset.task.name, config={"budget": 1.0},
                                seed=config.seed, **model_record(pm, sharded=run is not None))
        if on_circuit is not None:
            on_circuit(1.0, circuits[1.0])
    return dict(sorted(circuits.items()))


def _path(pm, dataset, config, fractions, init, *, validation, checkpoint_dir, run, progress, overwrite,
          on_circuit) -> dict[float, Circuit]:
    """path=True: one run from the start to half the smallest budget (edgeprune.path); each budget's
    circuit is the top of its ranking as MIB cuts it, so the circuits are nested."""
    config = replace(config, edge_sparsity=1 - fractions[0] / 2, ramp_steps=min(config.ramp_steps, config.steps))
    config, start = warm_config(config, pm, init)
    trainer = Trainer(pm, dataset, config, validation, os.path.join(checkpoint_dir, "path") if checkpoint_dir else None,
                      dist=run, init=start)
    trainer.maybe_resume(overwrite, reuse_finished=True)
    ranked = trainer.run(progress)
    circuits = {}
    for fraction in fractions:
        circuit = ranked.at_budget(fraction)
        circuit.config |= {"budget": fraction} | ({"init": start} if start else {})
        circuits[fraction] = circuit
        if on_circuit is not None:
            on_circuit(fraction, circuit)
    return circuits


__all__ = ["parse_budgets", "train_budgets"]
