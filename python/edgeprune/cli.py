"""The `edgeprune` command: prune, eval, draw, demo, plan, bench.

Exit codes: 0 success; 1 a failed run (bad data, a missing file, a non-finite loss), with one
line saying why; 2 a malformed command line (argparse's own convention).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def _sparsity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 2:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 2): a sparsity is the fraction of edges removed")
    return value


def _add_train_options(p: argparse.ArgumentParser):
    g = p.add_argument_group("training (defaults: the paper's GPT-2 runs)")
    g.add_argument("--steps", type=int, default=3000)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=0.8, help="edge-gate learning rate")
    g.add_argument("--node-lr", type=float, default=None, help="node-gate learning rate (default: --lr)")
    g.add_argument("--lambda-lr", type=float, default=0.8, help="multipliers' learning rate (ascent)")
    g.add_argument("--warmup-steps", type=int, default=200)
    g.add_argument("--ramp-steps", type=int, default=2500, help="steps over which the target rises from 0")
    g.add_argument("--node-sparsity", type=_sparsity, default=None, help="node target (default: no node term)")
    g.add_argument("--ablation", choices=("corrupted", "zero", "mean"), default="corrupted")
    g.add_argument("--embedding-nodes", type=int, choices=(0, 1, 2), default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--n", type=int, default=None, help="training examples (default: the task's size)")
    g.add_argument("--eval-every", type=int, default=64)
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None)
    g.add_argument("--checkpointing", action="store_true", help="recompute each decoder layer in backward")
    g.add_argument("--cpu-offload", action="store_true", help="FSDP under torchrun: keep weight shards on the CPU")
    g.add_argument("--no-progress", action="store_true")


def _train_kwargs(args) -> dict:
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, node_lr=args.node_lr,
                lambda_lr=args.lambda_lr, warmup_steps=args.warmup_steps, ramp_steps=args.ramp_steps,
                node_sparsity=args.node_sparsity, ablation=args.ablation, embedding_nodes=args.embedding_nodes,
                seed=args.seed, n=args.n, eval_every=args.eval_every, device=device,
                dtype=getattr(torch, args.dtype) if args.dtype else None, progress=not args.no_progress,
                checkpointing=args.checkpointing, cpu_offload=args.cpu_offload)


def _check_data(data: str):
    from . import tasks
    if data not in tasks.names() and not os.path.exists(data):
        raise ValueError(f"{data!r} is neither a task ({', '.join(tasks.names())}) nor an existing JSONL file")


# ---------------------------------------------------------------------- commands

def cmd_prune(args):
    from .train import train
    _check_data(args.data)
    kwargs = _train_kwargs(args)
    if str(kwargs["device"]).startswith("cuda"):  # say before a large run whether it will fit
        import torch

        from .plan import plan
        try:
            print(plan(args.model, batch_size=args.batch_size, seq_len=64, dtype=kwargs["dtype"] or torch.float32,
                       n_gpus=int(os.environ.get("WORLD_SIZE", "1")), checkpointing=args.checkpointing,
                       gpu_memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30))
        except ValueError as no_plan:  # a family the planner has no calibration for: prune anyway
            print(f"(no memory plan: {no_plan})")
    targets = sorted(args.sparsity)
    os.makedirs(args.out, exist_ok=True)
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
    from .evaluate import evaluate
    _check_data(args.data)
    circuit = Circuit.load(args.circuit)
    model = args.model or circuit.model
    if not model:
        raise ValueError("the circuit does not name its model: pass --model")
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
            raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
        recovered = recovery_rate(args.seeds, steps=args.steps)
        if args.check and not all(len(seeds) >= 2 for seeds in recovered.values()):
            raise RuntimeError("a Tracr program was recovered for fewer than two seeds (see above)")
        return
    ok = run_demo(args.out, seed=args.seed, steps=args.steps)
    if args.check and not ok:
        raise RuntimeError("a Tracr circuit was not recovered exactly (see above)")


def cmd_plan(args):
    from .plan import plan
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
    raise FileNotFoundError("the step benchmark (benchmarks/step.py) is not installed with the package: run "
                            "`edgeprune bench step` from the edgeprune source checkout")


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
    _add_train_options(p)
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

    p = sub.add_parser("bench", help="kernel bandwidth table (kernels), or the training-step benchmark "
                       "(step: from the source checkout only)")
    p.add_argument("which", choices=("kernels", "step"))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the benchmark (--help: its options)")
    p.set_defaults(fn=cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, FileNotFoundError, RuntimeError, KeyError, TypeError) as error:
        print(f"edgeprune {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
