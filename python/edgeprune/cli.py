"""The `edgeprune` command: prune, eval, draw, demo, plan, bench.

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
                       gpu_memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30))
        except ValueError as no_plan:  # a family the planner has no calibration for: prune anyway
            print(f"(no memory plan: {no_plan})")
    targets = sorted(args.sparsity)
    os.makedirs(args.out, exist_ok=True)
    kwargs["overwrite"] = args.overwrite
    if args.one_run:
        circuit = train(args.model, args.data, edge_sparsity=max(targets), checkpoint_dir=os.path.join(args.out, "run"),
                        **kwargs)
        results = {t: circuit.at_sparsity(min(t, 1.0)) for t in targets}
    else:
        results = {t: train(args.model, args.data, edge_sparsity=t,
                            checkpoint_dir=os.path.join(args.out, f"run-{t:g}"), **kwargs) for t in targets}
    for target, circuit in results.items():
        folder = os.path.join(args.out, f"sparsity-{target:g}")
        circuit.save(folder)
        print(f"target {target:g}: {len(circuit.edges)} edges (sparsity {circuit.edge_sparsity:.4f}) -> {folder}")


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
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks")
    for candidate in (os.path.join(os.getcwd(), "benchmarks"), root):
        script = os.path.join(candidate, {"kernels": "bench_kernels.py", "step": "step.py"}[args.which])
        if os.path.exists(script):
            sys.exit(subprocess.call([sys.executable, script, *args.rest]))
    raise MissingFile(f"the {args.which} benchmark was not found: run `edgeprune bench` from the edgeprune "
                      "source checkout (the benchmarks are not installed with the package)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeprune", description="Find circuits with Edge Pruning.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prune", help="learn circuits at one or more sparsity targets")
    p.add_argument("model", help="Hugging Face hub id or local folder (model and tokenizer)")
    p.add_argument("data", help="a task name or a JSONL file of {clean, corrupted} pairs")
    p.add_argument("--sparsity", type=_sparsity, nargs="+", required=True, help="edge sparsity targets")
    p.add_argument("--one-run", action="store_true",
                   help="train once (at the largest target) and cut the learned ranking at each target")
    p.add_argument("--out", required=True, help="output folder: one sparsity-<t>/ circuit folder per target")
    p.add_argument("--overwrite", action="store_true", help="start afresh over the runs in --out (by default a "
                   "killed run resumes; another run's or a finished run's checkpoint is refused)")
    add_config_options(p)
    p.set_defaults(fn=cmd_prune)

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

    p = sub.add_parser("bench", help="run a benchmark script from the source checkout")
    p.add_argument("which", choices=("kernels", "step"))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the script")
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
