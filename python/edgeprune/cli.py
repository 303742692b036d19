"""The `edgeprune` command: prune, attribute, curve, export, eval, draw, demo, plan, bench.

Exit codes: 0 success; 1 a failed run (bad data, a missing file, a non-finite loss: an
edgeprune.errors.UserError), with one line saying why (--debug: its traceback too); 2 a malformed
command line (argparse's own convention). Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import fields

from .config import TrainConfig
from .errors import MissingFile, RunError, UserError


def _sparsity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 2:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 2): a sparsity is the fraction of edges removed")
    return value


def add_config_options(p: argparse.ArgumentParser):
    """One option per TrainConfig field marked for the command line, with its default and help."""
    g = p.add_argument_group("training (defaults: the paper's GPT-2 runs)")
    for f in fields(TrainConfig):
        if not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _option_type(f)
        help_text = f.metadata["help"]
        if kind is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
            continue
        if f.name.endswith("sparsity"):
            kind = _sparsity
        choices = f.metadata.get("choices")
        g.add_argument(flag, type=kind, default=f.default, choices=choices,
                       help=help_text + ("" if f.default is None else f" (default: {f.default})"))
    g.add_argument("--n", type=int, default=None, help="training examples (default: the task's size)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None)
    g.add_argument("--no-progress", action="store_true")


def _option_type(f):
    """The Python type of a TrainConfig field: bool, int, float or str (Optional[...] unwrapped)."""
    for name in ("bool", "int", "float", "str"):
        if str(f.type).split(" |")[0].strip() == name:
            return {"bool": bool, "int": int, "float": float, "str": str}[name]
    raise TypeError(f"TrainConfig.{f.name}: no command-line type for {f.type!r}")


def _config_overrides(args) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.metadata.get("cli", True)}


def _run_kwargs(args) -> dict:
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return dict(n=args.n, device=device, dtype=getattr(torch, args.dtype) if args.dtype else None,
                progress=not args.no_progress)


def _check_data(data: str):
    from . import tasks
    if data not in tasks.names() and not os.path.exists(data):
        raise UserError(f"{data!r} is neither a task ({', '.join(tasks.names())}) nor an existing JSONL file")


# ---------------------------------------------------------------------- commands

def cmd_prune(args):
    from .training import train
    _check_data(args.data)
    kwargs = _run_kwargs(args) | _config_overrides(args)
    if str(kwargs["device"]).startswith("cuda"):  # say before a large run whether it will fit
        import torch

        from .planning import plan
        try:
            print(plan(args.model, batch_size=args.batch_size, seq_len=64, dtype=kwargs["dtype"] or torch.float32,
                       n_gpus=int(os.environ.get("WORLD_SIZE", "1")), checkpointing=args.checkpointing,
                       gpu_memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30,
                       kv_edges=args.kv_edges or ("query" if args.budgets else "group")))
        except ValueError as no_plan:  # a family the planner has no calibration for: prune anyway
            print(f"(no memory plan: {no_plan})")
    if args.init:  # a warm start from an attribution's (or any scored circuit's) folder
        from .circuit import Circuit
        kwargs["init"] = Circuit.load(args.init)
    seeds = range(args.seed, args.seed + args.seeds) if args.seeds else [args.seed]
    runs = []
    for seed in seeds:
        out = os.path.join(args.out, f"seed-{seed}") if args.seeds else args.out
        kwargs["seed"] = seed
        runs.append(_prune_budgets(args, kwargs, out) if args.budgets else _prune_targets(args, kwargs, train, out))
    if args.seeds and args.seeds > 1:
        from .comparison import compare
        print(compare(*runs).table())


def _prune_targets(args, kwargs, train, out):
    """--sparsity: one run per target (or one run cut at each); folders sparsity-<t>/."""
    targets = sorted(args.sparsity)
    os.makedirs(out, exist_ok=True)
    kwargs["overwrite"] = args.overwrite
    if args.one_run:
        circuit = train(args.model, args.data, edge_sparsity=max(targets), checkpoint_dir=os.path.join(out, "run"),
                        **kwargs)
        results = {t: circuit.at_sparsity(min(t, 1.0)) for t in targets}
    else:
        results = {t: train(args.model, args.data, edge_sparsity=t,
                            checkpoint_dir=os.path.join(out, f"run-{t:g}"), **kwargs) for t in targets}
    for target, circuit in results.items():
        folder = os.path.join(out, f"sparsity-{target:g}")
        circuit.save(folder)
        print(f"target {target:g}: {len(circuit.edges)} edges (sparsity {circuit.edge_sparsity:.4f}) -> {folder}")
    return results[targets[-1]]


def _prune_budgets(args, kwargs, out):
    """--budgets: circuits at fractions of edges kept, from one sweep; folders budget-<f>/."""
    from .budgets import train_budgets
    circuits = train_budgets(args.model, args.data, "mib" if args.budgets == ["mib"] else
                             [float(b) for b in args.budgets], stage_steps=args.stage_steps,
                             checkpoint_dir=os.path.join(out, "run"), **kwargs)
    for fraction, circuit in circuits.items():
        folder = os.path.join(out, f"budget-{fraction:g}")
        circuit.save(folder)
        print(f"budget {fraction:g}: {len(circuit.edges)} edges (sparsity {circuit.edge_sparsity:.4f}) -> {folder}")
    return circuits


def cmd_attribute(args):
    from .attribution import attribute
    _check_data(args.data)
    circuit = attribute(args.model, args.data, args.method, metric=args.metric, ablation=args.ablation,
                        steps=args.steps, split=args.split, n=args.n, batch_size=args.batch_size, device=args.device,
                        kv_edges=args.kv_edges)
    circuit.save(args.out)
    print(f"{args.method}: {circuit.graph.num_edges} edges scored on {circuit.config['n']} examples in "
          f"{circuit.config['seconds']:.1f} s -> {args.out}")


def _load_run(path: str):
    """A circuit folder, or a budget sweep's folder ({fraction: Circuit} from its budget-<f>/ folders)."""
    from .circuit import Circuit
    if os.path.exists(os.path.join(path, "circuit.json")):
        return Circuit.load(path)
    stages = {float(name[len("budget-"):]): Circuit.load(os.path.join(path, name))
              for name in sorted(os.listdir(path)) if name.startswith("budget-")} if os.path.isdir(path) else {}
    if not stages:
        raise MissingFile(f"{path!r} holds neither a circuit (circuit.json) nor a budget sweep (budget-<f>/)")
    return stages


def cmd_curve(args):
    from .curves import faithfulness
    curves = []
    for path in args.runs:
        run = _load_run(path)
        first = run if not isinstance(run, dict) else run[max(run)]
        model = args.model or first.model
        curve = faithfulness(model, run, args.data or first.task, metric=args.metric, split=args.split, n=args.n,
                             batch_size=args.batch_size, device=args.device,
                             label=os.path.basename(os.path.normpath(path)))
        print(curve.table())
        curves.append(curve)
    if args.output:
        from .plotting import plot_curves
        for written in plot_curves(curves, args.output):
            print(f"plot: {written}")


def cmd_export(args):
    from .mib import BUDGETS
    run = _load_run(args.run)
    if isinstance(run, dict):  # a sweep: one binary circuit per budget, each from its own stage
        from .mib import for_budget
        written = [f for frac in BUDGETS if frac < 1
                   for f in for_budget(run, frac).to_mib(args.mib, format=args.format, budgets=[frac])]
    else:
        written = run.to_mib(args.mib if args.binary else os.path.join(args.mib, f"importances.{args.format}"),
                             format=args.format, budgets=BUDGETS if args.binary else None)
    print(f"{len(written)} file(s) under {args.mib}")


def cmd_eval(args):
    from .circuit import Circuit
    from .evaluation import evaluate
    _check_data(args.data)
    circuit = Circuit.load(args.circuit)
    model = args.model or circuit.source
    if not model:
        raise UserError(f"the circuit in {args.circuit} does not say where its model ({circuit.model}) came from: "
                        "it was trained on a model built in Python; pass --model with its hub id or folder")
    metrics = evaluate(model, circuit, args.data, split=args.split, n=args.n, batch_size=args.batch_size,
                       device=args.device)
    metrics.pop("per_example")
    print(json.dumps(metrics, indent=1))


def cmd_draw(args):
    from .circuit import Circuit
    from .draw import render
    circuit = Circuit.load(args.circuit)
    out = args.output or os.path.join(args.circuit, "circuit.svg")
    print(render(circuit, out))


def cmd_demo(args):
    from .demo import recovery_rate, run_demo
    if args.seeds is not None:
        if args.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {args.seeds}")
        recovered = recovery_rate(args.seeds, steps=args.steps)
        if args.check and not all(len(seeds) >= 2 for seeds in recovered.values()):
            raise RunError("a Tracr program was recovered for fewer than two seeds (see above)")
        return
    ok = run_demo(args.out, seed=args.seed, steps=args.steps)
    if args.check and not ok:
        raise RunError("a Tracr circuit was not recovered exactly (see above)")


def cmd_plan(args):
    from .planning import plan
    import torch
    print(plan(args.model, batch_size=args.batch_size, seq_len=args.seq_len, dtype=getattr(torch, args.dtype),
               n_gpus=args.gpus, gpu_memory_gib=args.gpu_memory))


def cmd_bench(args):
    if args.which == "kernels":
        from .bench_kernels import main as bench_kernels
        bench_kernels(args.rest, prog="edgeprune bench kernels")
        return
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks")
    for candidate in (os.path.join(os.getcwd(), "benchmarks"), root):
        script = os.path.join(candidate, "step.py")
        if os.path.exists(script):
            sys.exit(subprocess.call([sys.executable, script, *args.rest]))
    raise MissingFile("the step benchmark (benchmarks/step.py) is not installed with the package: run "
                      "`edgeprune bench step` from the edgeprune source checkout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeprune", description="Find circuits with Edge Pruning.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prune", help="learn circuits at sparsity targets or at MIB's edge budgets")
    p.add_argument("model", help="Hugging Face hub id or local folder (model and tokenizer)")
    p.add_argument("data", help="a task name or a JSONL file of {clean, corrupted} pairs")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--sparsity", type=_sparsity, nargs="+",
                      help="edge-sparsity targets: fractions of edges REMOVED (one run each, or --one-run)")
    what.add_argument("--budgets", nargs="+", metavar="FRACTION",
                      help="fractions of edges KEPT, or 'mib' for MIB's ten: one run sweeping from the loosest to "
                           "the tightest, a circuit per budget")
    p.add_argument("--one-run", action="store_true",
                   help="with --sparsity: train once (at the largest target) and cut the learned ranking at each")
    p.add_argument("--stage-steps", type=int, default=None,
                   help="with --budgets: steps of each stage after the first (default: a quarter of --steps)")
    p.add_argument("--seeds", type=int, default=None,
                   help="run seeds --seed .. --seed + N - 1 (folders seed-<s>/) and print their edge sets' IoU")
    p.add_argument("--out", required=True, help="output folder: sparsity-<t>/ or budget-<f>/ circuit folders")
    p.add_argument("--overwrite", action="store_true", help="start afresh over the runs in --out (by default a "
                   "killed run resumes; another run's or a finished run's checkpoint is refused)")
    p.add_argument("--init", default=None, metavar="DIR",
                   help="warm start: the edge gates start from the scores of this circuit folder (from attribute); "
                        "see --init-sparsity and --init-temperature")
    add_config_options(p)
    p.set_defaults(fn=cmd_prune)

    p = sub.add_parser("attribute", help="score every edge by attribution (EAP, EAP-IG, exact patching)")
    p.add_argument("model", help="Hugging Face hub id or local folder (model and tokenizer)")
    p.add_argument("data", help="a task name or a JSONL file of {clean, corrupted} pairs")
    p.add_argument("--method", default="eap-ig-inputs",
                   help="eap, eap-ig-inputs, eap-ig-activations, eap-ig-gates, clean-corrupted or exact "
                        "(default: eap-ig-inputs)")
    p.add_argument("--metric", choices=("logit_diff", "kl"), default="logit_diff",
                   help="what the scores explain (default: logit_diff)")
    p.add_argument("--steps", type=int, default=5, help="integration steps of the EAP-IG methods (default: 5)")
    p.add_argument("--ablation", choices=("corrupted", "mean", "zero"), default="corrupted",
                   help="what a removed edge carries (default: the corrupted run's value)")
    p.add_argument("--kv-edges", choices=("query", "group"), default="query",
                   help="grouped-query models' key and value edges: one per query head, MIB's graph (default), or "
                        "one per KV group")
    p.add_argument("--split", default="train")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None)
    p.add_argument("--out", required=True, help="output folder: a scored circuit (circuit.json, scores)")
    p.set_defaults(fn=cmd_attribute)

    p = sub.add_parser("curve", help="faithfulness at MIB's budgets, with CPR and CMD; plot several runs")
    p.add_argument("runs", nargs="+", help="circuit folders or budget-sweep folders (from prune)")
    p.add_argument("--data", default=None, help="task name or JSONL file (default: the circuit's task)")
    p.add_argument("--model", default=None, help="default: the model named in the circuit")
    p.add_argument("--metric", choices=("logit_diff", "kl"), default="logit_diff")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None)
    p.add_argument("-o", "--output", default=None, help="plot file (.png or .svg; both are written)")
    p.set_defaults(fn=cmd_curve)

    p = sub.add_parser("export", help="write a circuit (or a budget sweep) in MIB's format")
    p.add_argument("run", help="a circuit folder or a budget-sweep folder")
    p.add_argument("--mib", required=True, help="output folder, one per task and model (e.g. out/ioi_gpt2)")
    p.add_argument("--format", choices=("json", "pt"), default="json")
    p.add_argument("--binary", action="store_true",
                   help="one binary circuit per budget instead of one file of scores (a sweep is always binary)")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("eval", help="evaluate a saved circuit on a task split")
    p.add_argument("circuit", help="a folder written by prune (circuit.json)")
    p.add_argument("data", help="a task name or a JSONL file")
    p.add_argument("--model", default=None, help="default: the model named in the circuit")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None)
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("draw", help="draw a saved circuit (SVG, PNG, PDF or DOT)")
    p.add_argument("circuit", help="a folder written by prune")
    p.add_argument("-o", "--output", default=None, help="file name; its extension picks the format")
    p.set_defaults(fn=cmd_draw)

    p = sub.add_parser("demo", help="recover the two Tracr circuits on CPU and draw them (under a minute)")
    p.add_argument("--out", default="edgeprune-demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="override the demo's step counts")
    p.add_argument("--seeds", type=int, default=None,
                   help="instead: train each program on seeds 0..N-1 and report how many recover (no drawings)")
    p.add_argument("--check", action="store_true", help="exit 1 unless both circuits are recovered exactly "
                   "(with --seeds: each program for at least two seeds)")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("plan", help="estimate peak GPU memory of a pruning run")
    p.add_argument("model", help="hub id or local folder (only the config is read)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="bfloat16")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--gpu-memory", type=float, default=None, help="GiB per GPU to check against")
    p.set_defaults(fn=cmd_plan)

    p = sub.add_parser("bench", help="kernel bandwidth table (kernels), or the training-step benchmark "
                       "(step: from the source checkout only)")
    p.add_argument("which", choices=("kernels", "step"))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the benchmark (--help: its options)")
    p.set_defaults(fn=cmd_bench)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", help="on an error, show its traceback too")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except UserError as error:  # anything else is a bug: its traceback is kept
        if args.debug:
            raise
        print(f"edgeprune {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
