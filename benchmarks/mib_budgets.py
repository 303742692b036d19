"""Edge Pruning at MIB's budgets on the trained IOI fixture (tests/fixtures/ioi-gpt2): three ways to get
a circuit per budget, their faithfulness curves, CPR and CMD, cost, and how stable they are across seeds.

    python benchmarks/mib_budgets.py [--steps 600] [--seeds 3] [--out benchmarks/out/mib_budgets]

- independent: one run per budget (target sparsity 1 - fraction), each `--steps` long;
- sweep:       one run through every budget, loosest first (edgeprune.train_budgets);
- cut:         one run at `--cut-target` whose learned ranking is cut at every budget.
Training uses IOI's train split; curves are measured on its test split (`--n-test` examples), with
interchange ablation and the logit difference, as MIB scores them. Prints a markdown table for
benchmarks/RESULTS.md and writes the curves (JSON) and a plot.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
if importlib.util.find_spec("edgeprune") is None:  # a source checkout that was not installed
    sys.path.insert(0, str(ROOT / "python"))

import torch  # noqa: E402

import edgeprune  # noqa: E402
from edgeprune.budgets import train_budgets  # noqa: E402
from edgeprune.comparison import compare, consensus  # noqa: E402
from edgeprune.curves import circuit_faithfulness, faithfulness  # noqa: E402
from edgeprune.errors import Unsupported  # noqa: E402
from edgeprune.mib import BUDGETS, for_budget  # noqa: E402
from helpers.fixtures import ioi_gpt2  # noqa: E402


def run_method(method: str, seed: int, args, tok) -> tuple[object, int, float]:
    """(circuit or {budget: circuit}, training steps, seconds) for one method and seed."""
    common = dict(tokenizer=tok, n=args.n_train, seed=seed, eval_every=0, progress=False, batch_size=32,
                  warmup_steps=max(1, args.steps // 15), ramp_steps=int(args.steps * 0.8))
    started = time.perf_counter()
    if method == "independent":
        circuits = {}
        for fraction in BUDGETS[:-1]:
            circuits[fraction] = edgeprune.train(ioi_gpt2()[0], "ioi", edge_sparsity=1 - fraction, steps=args.steps,
                                                 **common)
        return circuits, args.steps * (len(BUDGETS) - 1), time.perf_counter() - started
    if method == "sweep":
        stage = max(1, args.steps // 4)
        circuits = train_budgets(ioi_gpt2()[0], "ioi", budgets="mib", steps=args.steps, stage_steps=stage, path=False,
                                 init=None, objective="kl", init_sparsity=0.9, **common)
        return circuits, args.steps + stage * (len(BUDGETS) - 2), time.perf_counter() - started
    circuit = edgeprune.train(ioi_gpt2()[0], "ioi", edge_sparsity=args.cut_target, steps=args.steps, **common)
    return circuit, args.steps, time.perf_counter() - started


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--n-train", type=int, default=200)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--cut-target", type=float, default=0.98)
    p.add_argument("--methods", default="cut,sweep,independent")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "mib_budgets"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    model, tok = ioi_gpt2()
    test = edgeprune.tasks.get("ioi", tok, split="test", n=args.n_test)
    results, runs = {}, {}
    for method in args.methods.split(","):
        for seed in range(args.seeds):
            run, steps, seconds = run_method(method, seed, args, tok)
            started = time.perf_counter()
            curve = faithfulness(edgeprune.prunable(model), run, test, label=f"{method} seed {seed}")
            print(curve.table(), f"\n  trained {steps} steps in {seconds:.0f} s; curve in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            results.setdefault(method, []).append(curve.as_dict() | {"steps": steps, "seconds": seconds})
            runs.setdefault(method, []).append(run)
            with open(os.path.join(args.out, "curves.json"), "w") as f:  # after every run: a cut-off run keeps them
                json.dump(results, f, indent=1)

    print(f"\nMachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s); "
          f"torch {torch.__version__}; {args.steps} steps per run, {args.seeds} seeds, IOI train n={args.n_train}, "
          f"test n={args.n_test}\n")
    print("| method | CMD (mean ± sd) | CPR (mean ± sd) | training steps | wall time per seed |")
    print("|---|---|---|---|---|")
    for method, rows in results.items():
        cmd = [r["cmd"] for r in rows]
        cpr = [r["cpr"] for r in rows]
        sd = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
        print(f"| {method} | {statistics.mean(cmd):.3f} ± {sd(cmd):.3f} | {statistics.mean(cpr):.3f} ± {sd(cpr):.3f} "
              f"| {rows[0]['steps']} | {statistics.mean(r['seconds'] for r in rows):.0f} s |")
    print("\nFaithfulness per budget (seed 0):\n")
    print("| fraction | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for i, frac in enumerate(BUDGETS):
        print(f"| {frac:g} | " + " | ".join(f"{rows[0]['faithfulness'][i]:.3f}" for rows in results.values()) + " |")

    for method, method_runs in runs.items():
        if len(method_runs) > 1:
            print(f"\n{method}: " + compare(*method_runs).table())
            for fraction in (0.05, 0.1):
                n = int(fraction * method_runs[0][max(method_runs[0])].graph.num_edges if isinstance(
                    method_runs[0], dict) else fraction * method_runs[0].graph.num_edges)
                picked = [(for_budget(r, fraction) if isinstance(r, dict) else r).at_edges(n) for r in method_runs]
                k = (len(picked) + 1) // 2
                agreed = consensus(picked, k=k)
                f = circuit_faithfulness(edgeprune.prunable(model), agreed, test)
                print(f"  consensus of {len(picked)} seeds' top {n} edges ({fraction:g}), kept by >= {k}: "
                      f"{len(agreed.edges)} edges, f = {f:.3f}")
    try:
        from edgeprune.plotting import plot_curves
        from edgeprune.curves import Curve
        curves = []
        for method, rows in results.items():
            r = rows[0]
            curves.append(Curve(r["fractions"], r["faithfulness"], r["faithfulness_abs"], r["edges"], r["mib_edges"],
                                r["kl"], r["accuracy"], r["metric"], r["full"], r["empty"], label=method))
        print("\nplot:", plot_curves(curves, os.path.join(args.out, "mib_curves.png"),
                                     title="Edge Pruning on the IOI fixture (seed 0)"))
    except Unsupported as no_plot:  # no matplotlib
        print(no_plot)


if __name__ == "__main__":
    main()
