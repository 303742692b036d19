"""Attribution against Edge Pruning on a trained IOI fixture, at MIB's budgets.

    python benchmarks/compare_methods.py [--fixture ioi|ioi-b] [--seeds 3] [--steps 400] [--ep cut|sweep]
                                         [--path-steps 1500] [--paper-steps 3000] [--out DIR]

Fixtures: ioi (tests/fixtures/ioi-gpt2, 6 layers x 8 heads, task "ioi") and ioi-b
(tests/fixtures/ioi-b-gpt2-4x4, 4 layers x 4 heads, task "ioi-b": other templates and names).

Per seed (a seed draws its own training examples and seeds the gates):
- attribution on the train split: eap, eap-ig-inputs, eap-ig-activations, eap-ig-gates (--ig-steps), exact (on
  the first --n-exact training examples: one forward per edge and example);
- Edge Pruning on the same split, --steps per run: cold (the paper's start and KL), warm (started
  from that seed's eap-ig-inputs scores, edgeprune.warmstart), matched (objective="logit_diff"),
  warm+matched, and optimal ablation, Li and Janson's default (one constant per component) and per
  position (each scored twice: with its own constants, and with patching);
  the pruning path (edgeprune.path: warm, matched, one run through every budget, --path-steps), and
  the same path at the paper's length (--paper-steps; the seeds' IoU of its circuits is reported), and
  the path whose warm start opens whole paths (init_ranking="connected").
  --ep cut trains one run at --target and cuts its learned ranking at every budget; --ep sweep
  trains through every budget, loosest first (edgeprune.train_budgets).
Every curve is measured on the test split (--n-test) with interchange ablation and the logit
difference, as MIB scores circuits (the "own ablation" row excepted). Wall times are measured in
the same run. Prints the markdown for benchmarks/RESULTS.md and writes curves.json and a plot.
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
from edgeprune.attribution import attribute  # noqa: E402
from edgeprune.budgets import train_budgets  # noqa: E402
from edgeprune.comparison import compare  # noqa: E402
from edgeprune.curves import Curve, circuit_faithfulness, faithfulness  # noqa: E402
from edgeprune.errors import Unsupported  # noqa: E402
from helpers.fixtures import ioi_b_gpt2_4x4, ioi_gpt2  # noqa: E402

FIXTURES = {"ioi": (ioi_gpt2, "ioi"), "ioi-b": (ioi_b_gpt2_4x4, "ioi-b")}   # model loader, task

ATTRIBUTION = ("eap", "eap-ig-inputs", "eap-ig-activations", "eap-ig-gates", "exact")
PRUNING = {  # label: (train() options, warm start)
    "EP cold": ({}, False),
    "EP warm": ({}, True),
    "EP matched": ({"objective": "logit_diff"}, False),
    "EP warm+matched": ({"objective": "logit_diff"}, True),
    "EP optimal": ({"ablation": "optimal"}, False),
    "EP optimal per position": ({"ablation": "optimal", "optimal_per_position": True}, False),
    "EP path": ({"objective": "logit_diff", "path": True}, True),
    "EP path (paper length)": ({"objective": "logit_diff", "path": True}, True),
    "EP path (connected start)": ({"objective": "logit_diff", "path": True, "init_ranking": "connected"}, True),
}
PATH_END = 0.9995   # a path's last target: half of MIB's smallest budget kept


def steps_of(label: str, args) -> int:
    """A pruning mode's training steps: a path's own length, else --steps."""
    return {"EP path": args.path_steps, "EP path (connected start)": args.path_steps,
            "EP path (paper length)": args.paper_steps}.get(label, args.steps)


def prune(label, args, train, seed, tok, init, pad_to):
    """(circuit or {budget: circuit}, seconds, log rows of the run) for one Edge Pruning mode."""
    options, warm = PRUNING[label]
    log = os.path.join(args.out, "logs", f"{label.replace(' ', '_')}-seed{seed}.jsonl")
    if os.path.exists(log):
        os.remove(log)
    steps = steps_of(label, args)
    common = dict(tokenizer=tok, seed=seed, eval_every=0, progress=False, batch_size=32, steps=steps,
                  warmup_steps=max(1, steps // 15), ramp_steps=int(steps * 0.8), pad_to=pad_to,
                  init=init if warm else None, **options)
    model = FIXTURES[args.fixture][0]()[0]
    started = time.perf_counter()
    if options.get("path"):   # one run through every budget: the ramp spans the run, from the warm start's in-set
        run = edgeprune.train(model, train, edge_sparsity=PATH_END, log_file=log, init_sparsity=args.path_init,
                              **(common | {"ramp_steps": steps}))
    elif args.ep == "sweep":
        run = train_budgets(model, train, budgets="mib", stage_steps=max(1, args.steps // 4), path=False,
                            init_sparsity=0.9, **({"objective": "kl"} | common))
    else:
        run = edgeprune.train(model, train, edge_sparsity=args.target, log_file=log, **common)
    seconds = time.perf_counter() - started
    rows = [json.loads(line) for line in open(log)] if os.path.exists(log) else []
    return run, seconds, rows


def steps_to_reach(rows, kl: float, sparsity: float) -> int | None:
    """The first logged step whose KL (mean of three logs) is at most `kl`, at a sampled edge sparsity
    of at least `sparsity` (None: never)."""
    for i in range(2, len(rows)):
        window = rows[i - 2:i + 1]
        if statistics.mean(r["kl"] for r in window) <= kl and rows[i]["edge_sparsity"] >= sparsity - 0.005:
            return rows[i]["step"]
    return None


def final(rows, key: str) -> float:
    return statistics.mean(r[key] for r in rows[-3:])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fixture", choices=tuple(FIXTURES), default="ioi")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--ep", choices=("cut", "sweep"), default="cut")
    p.add_argument("--target", type=float, default=0.98, help="--ep cut: the edge-sparsity target of each run")
    p.add_argument("--path-steps", type=int, default=1500, help="steps of the pruning path (EP path)")
    p.add_argument("--paper-steps", type=int, default=3000, help="steps of EP path (paper length)")
    p.add_argument("--path-init", type=float, default=0.5, help="the path's warm start: the fraction of edges "
                   "starting out (init_sparsity)")
    p.add_argument("--n-train", type=int, default=200)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--n-exact", type=int, default=8)
    p.add_argument("--ig-steps", type=int, default=5)
    p.add_argument("--methods", default=",".join(ATTRIBUTION + tuple(PRUNING)))
    p.add_argument("--connected", action="store_true", help="also score every attribution method with the "
                   "path's connected cuts (a row '<method> (connected)')")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "compare_methods"))
    p.add_argument("--report-only", action="store_true", help="the tables and the plot from --out's curves.json")
    args = p.parse_args()
    if args.report_only:
        with open(os.path.join(args.out, "curves.json")) as f:
            saved = json.load(f)
        finish(saved["results"], saved["notes"], argparse.Namespace(**(saved["args"] | {"out": args.out})))
        return
    torch.set_num_threads(args.threads)
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    methods = args.methods.split(",")
    load, task = FIXTURES[args.fixture]
    model, tok = load()
    patched = edgeprune.prunable(model)
    test = edgeprune.tasks.get(task, tok, split="test", n=args.n_test)
    results: dict[str, list[dict]] = {}
    circuits: dict[str, list] = {}   # the path runs' circuits per seed, for their IoU
    notes: dict[str, list] = {}

    def record(label, run, seconds, seed, **curve_options):
        started = time.perf_counter()
        curve = faithfulness(curve_options.pop("model", patched), run, test, label=label, **curve_options)
        print(curve.table(), f"\n  {seconds:.0f} s to find; curve in {time.perf_counter() - started:.0f} s",
              flush=True)
        steps = steps_of(label, args) if label.startswith("EP") else 0
        if args.ep == "sweep" and label.startswith("EP") and "path" not in label:
            steps = args.steps + 8 * max(1, args.steps // 4)
        results.setdefault(label, []).append(curve.as_dict() | {"seconds": seconds, "seed": seed, "steps": steps})
        return curve

    for seed in range(args.seeds):
        train = edgeprune.tasks.get(task, tok, split="train", n=args.n_train, seed=seed)
        pad_to = max(train.batch(range(len(train))).clean.shape[1], test.batch(range(len(test))).clean.shape[1])
        scored = {}
        for method in ATTRIBUTION:
            warm_needed = any(PRUNING[m][1] for m in methods if m in PRUNING)
            if method not in methods and not (method == "eap-ig-inputs" and warm_needed):
                continue
            data = edgeprune.tasks.get(task, tok, split="train", n=args.n_exact, seed=seed) \
                if method == "exact" else train
            started = time.perf_counter()
            scored[method] = attribute(patched, data, method, steps=args.ig_steps)
            if method in methods:
                seconds = time.perf_counter() - started
                record(method, scored[method], seconds, seed)
                if args.connected:
                    record(f"{method} (connected)", scored[method].connected(), seconds, seed)
        runs = {}
        for label in PRUNING:
            if label not in methods:
                continue
            run, seconds, rows = prune(label, args, train, seed, tok, scored.get("eap-ig-inputs"), pad_to)
            runs[label] = (run, rows)
            if PRUNING[label][0].get("path"):
                circuits.setdefault(label, []).append(run)
            if label.startswith("EP optimal"):
                own = edgeprune.prunable(model, ablation="optimal")
                tightest = run[min(run)] if isinstance(run, dict) else run   # a sweep: its last stage's constants
                own.set_optimal_ablation(tightest.ablation_values)
                record(f"{label} (own ablation)", run, seconds, seed, model=own, ablation="optimal")
                record(f"{label} (patching)", run, seconds, seed)
            else:
                record(label, run, seconds, seed)
        if args.ep == "cut" and "EP cold" in runs and "EP warm" in runs:
            (cold, cold_rows), (warm, warm_rows) = runs["EP cold"], runs["EP warm"]
            k = len(cold.edges)
            kl, sparsity = final(cold_rows, "kl"), final(cold_rows, "edge_sparsity")
            notes.setdefault("warm", []).append({
                "seed": seed, "cold_edges": k, "warm_edges": len(warm.edges),
                "f_cold": circuit_faithfulness(patched, cold, test),
                "f_warm_at_cold_edges": circuit_faithfulness(patched, warm.at_edges(k), test),
                "kl_cold_final": kl, "sparsity_cold_final": sparsity,
                "steps_cold": steps_to_reach(cold_rows, kl, sparsity),
                "steps_warm": steps_to_reach(warm_rows, kl, sparsity)})
            print("warm vs cold:", notes["warm"][-1], flush=True)
        for label, runs_ in circuits.items():   # the seeds' IoU at each budget, over the seeds so far
            if len(runs_) > 1:
                notes.setdefault("iou", {})[label] = compare(*runs_).mean()
        with open(os.path.join(args.out, "curves.json"), "w") as f:   # after every seed
            json.dump({"results": results, "notes": notes, "args": vars(args)}, f, indent=1)

    finish(results, notes, args)


def finish(results, notes, args):
    """The markdown for RESULTS.md, and the plot of every method's seed-0 curve."""
    report(results, notes, args)
    try:
        from edgeprune.plotting import plot_curves
        curves = [Curve(**{k: r[k] for k in ("fractions", "faithfulness", "faithfulness_abs", "edges", "mib_edges",
                                             "kl", "accuracy", "metric", "full", "empty")}, label=label)
                  for label, rows in results.items() for r in rows[:1]]
        print("\nplot:", plot_curves(curves, os.path.join(args.out, "compare_methods.png"),
                                     title="IOI fixture: attribution and Edge Pruning (seed 0, test split)"))
    except Unsupported as no_plot:  # no matplotlib
        print(no_plot)


def report(results, notes, args):
    def spread(values):
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"
    at = {frac: i for i, frac in enumerate(next(iter(results.values()))[0]["fractions"])}
    print(f"\nMachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s); torch "
          f"{torch.__version__}. {args.seeds} seeds; IOI train n={args.n_train} (exact: {args.n_exact}), test "
          f"n={args.n_test}; Edge Pruning {args.steps} steps, --ep {args.ep}"
          f"{f' at sparsity {args.target}' if args.ep == 'cut' else ''}; EAP-IG {args.ig_steps} steps.\n")
    print("| method | CMD (mean ± sd) | CPR (mean ± sd) | KL at 5% | KL at 10% | training steps | wall time per seed |")
    print("|---|---|---|---|---|---|---|")
    for label, rows in sorted(results.items(), key=lambda item: statistics.mean(r["cmd"] for r in item[1])):
        print(f"| {label} | {spread([r['cmd'] for r in rows])} | {spread([r['cpr'] for r in rows])} | "
              f"{spread([r['kl'][at[0.05]] for r in rows])} | {spread([r['kl'][at[0.1]] for r in rows])} | "
              f"{rows[0].get('steps', '')} | {statistics.mean(r['seconds'] for r in rows):.0f} s |")
    fractions = next(iter(results.values()))[0]["fractions"]
    print("\nFaithfulness f per budget (the |score| ranking, CMD's curve), mean over seeds:\n")
    print("| method | " + " | ".join(f"{f:g}" for f in fractions) + " |")
    print("|---|" + "---|" * len(fractions))
    for label, rows in sorted(results.items(), key=lambda item: statistics.mean(r["cmd"] for r in item[1])):
        print(f"| {label} | " + " | ".join(f"{statistics.mean(r['faithfulness_abs'][i] for r in rows):.3f}"
                                           for i in range(len(fractions))) + " |")
    for label, values in notes.get("iou", {}).items():
        print(f"\n{label}: the seeds' mean pairwise IoU of edge sets at each budget: " + ", ".join(
            f"{f:g}: {v:.2f}" for f, v in zip(fractions, values)))
    if notes.get("warm"):
        print("\nWarm against cold at equal edges (the cold run's circuit size), and the steps each run needs to "
              "reach the cold run's final KL at its final sampled sparsity:\n")
        print("| seed | cold edges | f cold | f warm, same edge count | cold's final KL (sparsity) | steps: cold "
              "| steps: warm |")
        print("|---|---|---|---|---|---|---|")
        for n in notes["warm"]:
            print(f"| {n['seed']} | {n['cold_edges']} | {n['f_cold']:.3f} | {n['f_warm_at_cold_edges']:.3f} | "
                  f"{n['kl_cold_final']:.4f} ({n['sparsity_cold_final']:.3f}) | {n['steps_cold']} | "
                  f"{n['steps_warm']} |")


if __name__ == "__main__":
    main()
