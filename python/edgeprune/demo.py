"""`edgeprune demo`: recover the circuits of two Tracr-compiled programs whose truth is known.

A circuit counts as recovered (method.md 7, issue 6) when it has no edge outside the program's
weight-support circuit, keeps every writer the program uses, and the pruned model is exact on the
task (reverse: every sequence right; xproportion: within 0.05 at every position).
"""
from __future__ import annotations

import os
import time

import torch

from . import tracr
from .circuit import Circuit
from .draw import render
from .evaluate import evaluate
from .tracr.settings import SETTINGS


def recovery(circuit: Circuit, program: "tracr.TracrProgram", metrics: dict) -> dict:
    """How a found circuit compares with the program's ground truth."""
    truth = set(program.ground_truth)
    found = set(circuit.edges)
    used_writers = {w for w, _ in truth}
    found_writers = {w for w, _ in found}
    exact = metrics["accuracy"] == 1.0  # reverse: whole sequences; xproportion: within 0.05 everywhere
    return {"extra_edges": sorted(found - truth), "missing_edges": sorted(truth - found),
            "missing_writers": sorted(used_writers - found_writers), "exact": exact,
            "recovered": not (found - truth) and used_writers <= found_writers and exact}


def recover(name: str, seed: int = 0, steps: int | None = None, progress: bool = False):
    """Train on a Tracr program with the package's fixed settings; returns (circuit, report)."""
    from .train import train
    program = tracr.load(name)
    settings = dict(SETTINGS[name])
    if steps is not None:
        settings["steps"] = steps
    torch.manual_seed(seed)
    circuit = train(program.model, program.dataset, seed=seed, progress=progress, **settings)
    metrics = evaluate(_prunable(program, circuit), circuit, program.dataset,
                       batch_size=64)
    circuit.metrics = {k: v for k, v in metrics.items() if k != "per_example"}
    return circuit, recovery(circuit, program, metrics)


def _prunable(program, circuit):
    from .models import prunable
    return prunable(program.model, embedding_nodes=circuit.graph.embedding_nodes, ablation="zero")


def run_demo(out: str = "edgeprune-demo", seed: int = 0, steps: int | None = None) -> bool:
    ok = True
    for name in tracr.PROGRAMS:
        started = time.perf_counter()
        circuit, report = recover(name, seed=seed, steps=steps)
        program = tracr.load(name)
        folder = os.path.join(out, name)
        circuit.save(folder)
        print(f"\n== Tracr {name}: {len(circuit.edges)} edges found of {circuit.graph.num_edges}; ground truth "
              f"{len(program.ground_truth)} edges ({time.perf_counter() - started:.1f} s)")
        truth = set(program.ground_truth)
        for edge in sorted(set(circuit.edges) | truth):
            mark = "found " if edge in circuit.edges and edge in truth else \
                "EXTRA " if edge in circuit.edges else "absent"
            print(f"  {mark}  {edge[0]:>10} -> {edge[1]}")
        print(f"  accuracy of the pruned model: {circuit.metrics['accuracy']:.3f}   recovered: {report['recovered']}")
        try:
            print(f"  drawing: {render(circuit, os.path.join(folder, 'circuit.svg'), title=f'Tracr {name}')}")
        except RuntimeError as missing_dot:
            print(f"  drawing: {missing_dot}")
        ok &= report["recovered"]
    return ok
