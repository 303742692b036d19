"""The `edgeprune` command: prune, attribute, curve, export, eval, draw, demo, plan, bench.

Exit codes: 0 success; 1 a failed run (bad data, a missing file, a non-finite loss: an
edgeprune.errors.UserError), with one line saying why (--debug: its traceback too); 2 a malformed
command line (argparse's own convention). Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import warnings
from dataclasses import fields

from .config import CURVE, CURVE_INIT, MAX_TARGET, TrainConfig, check_target, kv_edges_for
from .errors import MissingFile, RunError, UserError
from .graph import KV_EDGES
from .models.ablations import serving


def _sparsity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        check_target("sparsity", value)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("sparsity=")) from None
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
        # options whose default differs for --budgets stay None until the run resolves them
        curve = f.name in CURVE
        if kind is bool:
            shown = flag if f.default else "--no-" + flag[2:]
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=None if curve else f.default,
                           help=f"{help_text} (default: {shown}" + (
                               f"; with --budgets: {flag if CURVE[f.name] else '--no-' + flag[2:]})" if curve else ")"))
            continue
        if f.name.endswith("sparsity"):
            kind = _sparsity
        choices = f.metadata.get("choices")
        shown = "" if f.default is None else f" (default: {f.default}" + (
            f"; with --budgets: {CURVE[f.name]})" if curve else ")")
        g.add_argument(flag, type=kind, default=None if curve else f.default, choices=choices, help=help_text + shown)
    g.add_argument("--n", type=int, default=None, help="training examples (default: the task's size)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="the model's dtype (default: float32)")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bar (default: a bar with a time estimate)")


def _option_type(f):
    """The Python type of a TrainConfig field: bool, int, float or str (Optional[...] unwrapped)."""
    for name in ("bool", "int", "float", "str"):
        if str(f.type).split(" |")[0].strip() == name:
            return {"bool": bool, "int": int, "float": float, "str": str}[name]
    raise TypeError(f"TrainConfig.{f.name}: no command-line type for {f.type!r}")


def _attribution_methods() -> tuple[str, ...]:
    from .attribution import METHODS
    return METHODS


def _config_overrides(args) -> dict:
    """The training options given; those left to the run (None where TrainConfig has a default) are left out."""
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.metadata.get("cli", True)
            and (getattr(args, f.name) is not None or f.default is None)}


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

SHORT_OF_TARGET = 0.01  # a circuit whose sparsity is this far below its target is reported as short of it


def _prune_folders(args) -> list[str]:
    """Every folder a prune command writes: checked before the first step."""
    tops = [os.path.join(args.out, f"seed-{s}") for s in range(args.seed, args.seed + args.seeds)] if args.seeds \
        else [args.out]
    if args.budgets:
        fractions = _budget_fractions(args)
        stages = [os.path.join("run", f"stage-{f:g}") for f in fractions if f < 1]
        below = ["run", os.path.join("run", "path")] + stages + [f"budget-{f:g}" for f in fractions]
    else:
        below = [f"sparsity-{t:g}" for t in args.sparsity] + \
            (["run"] if args.one_run else [f"run-{t:g}" for t in args.sparsity])
    return [args.out] + [os.path.join(top, name) for top in tops for name in [""] + below]


def _check_no_foreign_circuits(args) -> None:
    """Refuse to write over circuits that no run in --out made (another command's, e.g. --one-run's
    over one run per target): without --overwrite, a circuit folder is only replaced by its own run."""
    if args.overwrite:
        return
    tops = [os.path.join(args.out, f"seed-{s}") for s in range(args.seed, args.seed + args.seeds)] if args.seeds \
        else [args.out]
    if args.budgets:
        pairs = [(f"budget-{f:g}", "run") for f in _budget_fractions(args)]
    else:
        pairs = [(f"sparsity-{t:g}", "run" if args.one_run else f"run-{t:g}") for t in args.sparsity]
    for top in tops:
        for circuit, run in pairs:
            folder = os.path.join(top, circuit)
            if os.path.exists(os.path.join(folder, "circuit.json")) and not os.path.isdir(os.path.join(top, run)):
                raise UserError(f"{folder} holds a circuit that this command's run ({os.path.join(top, run)}) did not "
                                "make (another command wrote it, or the run's folder was removed). Give another --out, "
                                "or pass --overwrite to train again and replace it")


def _budget_fractions(args) -> list[float]:
    from .budgets import parse_budgets
    if args.budgets == ["mib"]:
        return parse_budgets("mib")
    try:
        values = [float(b) for b in args.budgets]
    except ValueError:
        raise UserError(f"--budgets takes fractions of edges kept (e.g. 0.05 0.1) or 'mib', got {args.budgets}") \
            from None
    return parse_budgets(values)


def _report(label: str, circuit, folder: str) -> None:
    """Save `circuit` in `folder` (a circuit rebuilt from a finished run keeps the folder that holds
    it already) and print its size and sparsity against its target."""
    kept = bool(circuit.config.get("from_finished_checkpoint")) and _holds(folder, circuit)
    if not kept:
        circuit.save(folder)
    reached, target = circuit.edge_sparsity, circuit.target_edge_sparsity
    if target is None:
        against = ""
    elif target > 1:
        against = f" (target {target:g}: as sparse as possible)"
    elif reached < target - SHORT_OF_TARGET:
        against = f", short of its target {target:g} by {target - reached:.3f}"
    else:
        against = f" (target {target:g})"
    note = " (finished earlier; kept)" if kept else ""
    print(f"{label}: {len(circuit.edges)} edges, sparsity {reached:.4f}{against}{note} -> {folder}")


def _holds(folder: str, circuit) -> bool:
    """Whether `folder` holds a readable circuit with `circuit`'s edges."""
    from .circuit import Circuit
    try:
        return Circuit.load(folder).edges == circuit.edges
    except UserError:  # missing or damaged: written again
        return False


def cmd_prune(args):
    from .outputs import check_folder
    from .training import train
    _check_data(args.data)
    for folder in _prune_folders(args):
        check_folder(folder)
    _check_no_foreign_circuits(args)
    kwargs = _run_kwargs(args) | _config_overrides(args)
    kwargs["overwrite"] = args.overwrite
    if str(kwargs["device"]).startswith("cuda"):  # say before a large run whether it will fit
        import torch

        from .planning import plan
        try:
            print(plan(args.model, batch_size=args.batch_size, seq_len=64, dtype=kwargs["dtype"] or torch.float32,
                       n_gpus=int(os.environ.get("WORLD_SIZE", "1")), checkpointing=args.checkpointing,
                       gpu_memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30,
                       kv_edges=kv_edges_for(args.kv_edges, sweep=bool(args.budgets))))
        except ValueError as no_plan:  # a family the planner has no calibration for: prune anyway
            print(f"(no memory plan: {no_plan})")
    if args.init == "none":   # the paper's cold start
        kwargs["init"] = None
    elif args.init in _attribution_methods():  # attributed on the training data first
        kwargs["init"] = args.init
    elif args.init:  # a warm start from an attribution's (or any scored circuit's) folder
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
        asked = "mib" if not args.budgets or args.budgets == ["mib"] else _budget_fractions(args)
        print(compare(*runs, budgets=asked).table())


def _prune_targets(args, kwargs, train, out):
    """--sparsity: one run per target (or one run cut at each); folders sparsity-<t>/."""
    targets = sorted(args.sparsity)
    results = {}
    if args.one_run:
        circuit = train(args.model, args.data, edge_sparsity=max(targets), checkpoint_dir=os.path.join(out, "run"),
                        reuse_finished=True, **kwargs)
        results = {t: circuit.at_sparsity(min(t, 1.0)) for t in targets}
        for t, cut in results.items():
            _report(f"target {t:g}", cut, os.path.join(out, f"sparsity-{t:g}"))
        return results[targets[-1]]
    for t in targets:  # each written as soon as it is trained; a rerun keeps the finished ones
        results[t] = train(args.model, args.data, edge_sparsity=t, checkpoint_dir=os.path.join(out, f"run-{t:g}"),
                           reuse_finished=True, **kwargs)
        _report(f"target {t:g}", results[t], os.path.join(out, f"sparsity-{t:g}"))
    return results[targets[-1]]


def _prune_budgets(args, kwargs, out):
    """--budgets: circuits at fractions of edges kept, from one sweep; folders budget-<f>/."""
    from .budgets import train_budgets
    return train_budgets(args.model, args.data, _budget_fractions(args), stage_steps=args.stage_steps,
                         checkpoint_dir=os.path.join(out, "run"),
                         on_circuit=lambda f, c: _report(f"budget {f:g}", c, os.path.join(out, f"budget-{f:g}")),
                         **kwargs)


def cmd_attribute(args):
    from .attribution import attribute
    from .outputs import check_folder
    _check_data(args.data)
    check_folder(args.out)
    circuit = attribute(args.model, args.data, args.method, metric=args.metric, ablation=args.ablation,
                        steps=args.steps, split=args.split, n=args.n, batch_size=args.batch_size, device=args.device,
                        kv_edges=args.kv_edges, progress=None if args.progress else False)
    circuit.save(args.out)
    print(f"{args.method}: {circuit.graph.num_edges} edges scored on {circuit.config['n']} examples in "
          f"{circuit.config['seconds']:.1f} s -> {args.out}")


def cmd_curve(args):
    import importlib.util

    from .circuit import load_run
    from .curves import faithfulness
    from .outputs import check_file
    from .plotting import INSTALL, check_plot_path
    plot = args.output
    if plot:
        check_plot_path(plot)
        check_file(plot, "plot file")
        if importlib.util.find_spec("matplotlib") is None:  # said first: the curves may take minutes
            print(f"edgeprune curve: no plot: matplotlib is not installed ({INSTALL}); the tables follow",
                  file=sys.stderr)
            plot = None
    runs = [_cut(load_run(path), args.connected) for path in args.runs]  # every folder read before the first curve
    curves = []
    for path, run in zip(args.runs, runs):
        first = run if not isinstance(run, dict) else run[max(run)]
        model = args.model or first.source or first.model
        curve = faithfulness(model, run, args.data or first.task, metric=args.metric, split=args.split, n=args.n,
                             batch_size=args.batch_size, device=args.device,
                             label=os.path.basename(os.path.normpath(path)), progress=None if args.progress else False)
        print(curve.table())
        curves.append(curve)
    if plot:
        from .plotting import plot_curves
        for written in plot_curves(curves, plot):
            print(f"plot: {written}")


MIB_FILE = re.compile(r"(importances|[0-9.]+)\.(json|pt)")  # the names export writes


def cmd_export(args):
    from .circuit import load_run
    from .mib import BUDGETS
    from .outputs import check_folder
    check_folder(args.mib, "MIB folder")
    run = _cut(load_run(args.run), args.connected)
    first = run if not isinstance(run, dict) else run[max(run)]
    d_model = _d_model(first, args.d_model)
    present = sorted(os.listdir(args.mib)) if os.path.isdir(args.mib) else []
    if present and not args.overwrite:
        raise UserError(f"{args.mib} already holds {len(present)} file(s) ({', '.join(present[:3])}"
                        f"{', ...' if len(present) > 3 else ''}): an export into it would mix two circuits' files. "
                        "Give an empty folder (one per task and model), or pass --overwrite to replace its MIB files")
    for name in present:  # --overwrite: the files of an earlier export go, whatever its budgets or format
        if MIB_FILE.fullmatch(name):
            os.remove(os.path.join(args.mib, name))
    if isinstance(run, dict):  # a sweep: one binary circuit per budget, each from its own stage
        from .mib import for_budget
        written = [f for frac in BUDGETS if frac < 1
                   for f in for_budget(run, frac).to_mib(args.mib, format=args.format, budgets=[frac],
                                                         d_model=d_model)]
    else:
        written = run.to_mib(args.mib if args.binary else os.path.join(args.mib, f"importances.{args.format}"),
                             format=args.format, budgets=BUDGETS if args.binary else None, d_model=d_model)
    print(f"{len(written)} file(s) under {args.mib}")


def _cut(run, connected: bool):
    """A run (a circuit or {budget: circuit}) ranked for connected cuts (Circuit.connected) when asked."""
    if not connected:
        return run
    return {k: c.connected() for k, c in run.items()} if isinstance(run, dict) else run.connected()


CONNECTED_HELP = ("rank edges for connected cuts (Circuit.connected): no budget is spent on edges MIB's pruning "
                  "drops; a pruning path's ranking is cut this way already (default: the circuit's own ranking)")


def _d_model(circuit, given: int | None) -> int:
    """The model width MIB's files record: given, the circuit's record, else its model's config."""
    if given or circuit.d_model:
        return given or circuit.d_model
    if circuit.source:
        from .loading import load_config
        config = load_config(circuit.source)
        width = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
        if width:
            return width
    raise UserError(f"the circuit does not record its model's width (d_model), which MIB's files hold, and its "
                    f"model ({circuit.source or circuit.model}) cannot tell: pass --d-model")


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
                       device=args.device, check_weights=not args.other_weights,
                       progress=None if args.progress else False)
    metrics.pop("per_example")
    print(json.dumps(metrics, indent=1))


def cmd_draw(args):
    from .circuit import Circuit
    from .draw import render
    from .outputs import check_file
    circuit = Circuit.load(args.circuit)
    out = args.output or os.path.join(args.circuit, "circuit.svg")
    check_file(out, "drawing")
    print(render(circuit, out))


def cmd_demo(args):
    from .demo import recovery_rate, run_demo
    if args.seeds is not None:
        if args.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {args.seeds}")
        recovered = recovery_rate(args.seeds, steps=args.steps, mode=args.mode)
        if args.check and not all(len(seeds) >= 2 for seeds in recovered.values()):
            raise RunError("a Tracr program was recovered for fewer than two seeds (see above)")
        return
    from .outputs import check_folder
    check_folder(args.out)
    ok = run_demo(args.out, seed=args.seed, steps=args.steps, mode=args.mode)
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
    # attribute, curve and eval take their defaults and choices from the functions they run
    from .attribution import METHODS, attribute
    from .curves import METRICS, faithfulness
    from .evaluation import evaluate
    parser = argparse.ArgumentParser(prog="edgeprune", description="Find circuits with Edge Pruning.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prune", help="learn circuits at sparsity targets or at MIB's edge budgets")
    p.add_argument("model", help="Hugging Face hub id or local folder (model and tokenizer)")
    p.add_argument("data", help="a task name or a JSONL file of {clean, corrupted} pairs")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--sparsity", type=_sparsity, nargs="+",
                      help=f"edge-sparsity targets: fractions of edges REMOVED, in [0, 1] (one run each, or "
                           f"--one-run); above 1, up to {MAX_TARGET:g}, 'as sparse as possible' as in the paper")
    what.add_argument("--budgets", nargs="+", metavar="FRACTION",
                      help="fractions of edges KEPT, or 'mib' for MIB's ten: one run sweeping from the loosest to "
                           "the tightest, a circuit per budget")
    p.add_argument("--one-run", action="store_true",
                   help="with --sparsity: train once (at the largest target) and cut the learned ranking at each")
    p.add_argument("--stage-steps", type=int, default=None,
                   help="with --budgets: steps of each stage after the first (default: a quarter of --steps)")
    p.add_argument("--seeds", type=int, default=None,
                   help="run seeds --seed .. --seed + N - 1 (folders seed-<s>/) and print their edge sets' IoU "
                        "(default: one run, --seed)")
    p.add_argument("--out", required=True, help="output folder: sparsity-<t>/ or budget-<f>/ circuit folders, each "
                   "written as soon as its run ends, and the runs' checkpoints")
    p.add_argument("--overwrite", action="store_true", help="start afresh over the runs in --out (by default a rerun "
                   "keeps the finished circuits and resumes the unfinished runs; another run's checkpoint is refused)")
    p.add_argument("--init", default=None, metavar="DIR|METHOD|none",
                   help="warm start: the edge gates start from the scores of this circuit folder (from attribute), "
                        "or of an attribution method run first on the training data (a method name, as attribute "
                        "takes it); none: the paper's cold start. See --init-sparsity and --init-temperature (default: "
                        f"none; with --budgets: {CURVE_INIT})")
    add_config_options(p)
    p.set_defaults(fn=cmd_prune)

    given = _defaults(attribute)
    p = sub.add_parser("attribute", help="score every edge by attribution (EAP, EAP-IG, exact patching)")
    p.add_argument("model", help="Hugging Face hub id or local folder (model and tokenizer)")
    p.add_argument("data", help="a task name or a JSONL file of {clean, corrupted} pairs")
    p.add_argument("--method", default=given["method"],
                   help=f"{', '.join(METHODS[:-1])} or {METHODS[-1]} (default: {given['method']})")
    p.add_argument("--metric", choices=METRICS, default=given["metric"],
                   help=f"what the scores explain (default: {given['metric']})")
    p.add_argument("--steps", type=int, default=given["steps"],
                   help=f"integration steps of the EAP-IG methods (default: {given['steps']})")
    p.add_argument("--ablation", choices=serving("attribution"), default=given["ablation"],
                   help=f"what a removed edge carries (default: {given['ablation']}, the corrupted run's value)")
    p.add_argument("--kv-edges", choices=KV_EDGES, default=given["kv_edges"],
                   help=f"grouped-query models' key and value edges: one per query head ('query', MIB's graph) or "
                        f"one per KV group ('group') (default: {given['kv_edges']})")
    _evaluation_options(p, split=given["split"], batch_size=given["batch_size"])
    p.add_argument("--out", required=True, help="output folder: a scored circuit (circuit.json, scores)")
    _progress_option(p)
    p.set_defaults(fn=cmd_attribute)

    p = sub.add_parser("curve", help="faithfulness at MIB's budgets, with CPR and CMD; plot several runs")
    p.add_argument("runs", nargs="+", help="circuit folders or budget-sweep folders (from prune)")
    p.add_argument("--data", default=None, help="task name or JSONL file (default: the circuit's task)")
    p.add_argument("--model", default=None, help="hub id or folder (default: the model recorded in the circuit)")
    given = _defaults(faithfulness)
    p.add_argument("--metric", choices=METRICS, default=given["metric"],
                   help=f"m in f = (m(C) - m(empty)) / (m(full) - m(empty)) (default: {given['metric']}, MIB's)")
    _evaluation_options(p, split=given["split"], batch_size=given["batch_size"])
    p.add_argument("-o", "--output", default=None, help="plot file (.png or .svg; both are written; default: no "
                   "plot, the tables only)")
    p.add_argument("--connected", action="store_true", help=CONNECTED_HELP)
    _progress_option(p)
    p.set_defaults(fn=cmd_curve)

    p = sub.add_parser("export", help="write a circuit (or a budget sweep) in MIB's format")
    p.add_argument("run", help="a circuit folder or a budget-sweep folder")
    p.add_argument("--mib", required=True, help="output folder, one per task and model (e.g. out/ioi_gpt2); an "
                   "export into a folder that holds files is refused (see --overwrite)")
    p.add_argument("--format", choices=("json", "pt"), default="json", help="file format (default: json)")
    p.add_argument("--binary", action="store_true",
                   help="one binary circuit per budget instead of one file of scores (a sweep is always binary)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the MIB files already in --mib (default: refuse a folder that holds files)")
    p.add_argument("--connected", action="store_true", help=CONNECTED_HELP)
    p.add_argument("--d-model", type=int, default=None,
                   help="the model's width, which MIB's files record (default: the circuit's record, else its "
                        "model's config)")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("eval", help="evaluate a saved circuit on a task split")
    p.add_argument("circuit", help="a folder written by prune (circuit.json)")
    p.add_argument("data", help="a task name or a JSONL file")
    p.add_argument("--model", default=None, help="hub id or folder (default: the model recorded in the circuit)")
    given = _defaults(evaluate)
    _evaluation_options(p, split=given["split"], batch_size=given["batch_size"])
    p.add_argument("--other-weights", action="store_true",
                   help="evaluate on weights other than those the circuit was found on (a fine-tune, another "
                        "checkpoint); by default they are refused")
    _progress_option(p)
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("draw", help="draw a saved circuit (SVG, PNG, PDF or DOT)")
    p.add_argument("circuit", help="a folder written by prune")
    p.add_argument("-o", "--output", default=None,
                   help="file name; its extension picks the format (default: CIRCUIT/circuit.svg)")
    p.set_defaults(fn=cmd_draw)

    p = sub.add_parser("demo", help="recover the two Tracr circuits on CPU and draw them (under a minute)")
    p.add_argument("--out", default="edgeprune-demo", help="folder for the circuits and drawings "
                   "(default: edgeprune-demo)")
    p.add_argument("--seed", type=int, default=0, help="the runs' seed (default: 0)")
    p.add_argument("--steps", type=int, default=None,
                   help="override the demo's step counts (default: edgeprune.tracr.settings')")
    p.add_argument("--mode", choices=("cold", "warm-exact"), default="cold",
                   help="where the gates start: every edge open, as in the paper, or from exact attribution, "
                        "which recovers both programs for every seed measured (default: cold)")
    p.add_argument("--seeds", type=int, default=None,
                   help="instead: train each program on seeds 0..N-1 and report how many recover (no drawings; "
                        "default: one run, --seed)")
    p.add_argument("--check", action="store_true", help="exit 1 unless both circuits are recovered exactly "
                   "(with --seeds: each program for at least two seeds)")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("plan", help="estimate peak GPU memory of a pruning run")
    p.add_argument("model", help="hub id or local folder (only the config is read)")
    p.add_argument("--batch-size", type=int, default=1, help="examples per step (default: 1)")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per example (default: 512)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="bfloat16",
                   help="the model's dtype (default: bfloat16)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs the model is sharded over (default: 1)")
    p.add_argument("--gpu-memory", type=float, default=None,
                   help="GiB per GPU to check against (default: none; the estimate only)")
    p.set_defaults(fn=cmd_plan)

    p = sub.add_parser("bench", help="kernel bandwidth table (kernels), or the training-step benchmark "
                       "(step: from the source checkout only)")
    p.add_argument("which", choices=("kernels", "step"), help="which benchmark")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the benchmark (--help: its options)")
    p.set_defaults(fn=cmd_bench)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", help="on an error, show its traceback too")
    return parser


def _defaults(fn) -> dict:
    """A function's keyword defaults, which its command takes as its own."""
    return {name: p.default for name, p in inspect.signature(fn).parameters.items()}


def _evaluation_options(p: argparse.ArgumentParser, split: str, batch_size: int) -> None:
    p.add_argument("--split", default=split, help=f"the task split to read (default: {split})")
    p.add_argument("--n", type=int, default=None, help="examples (default: the whole split)")
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"examples per forward (default: {batch_size})")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the model's, cpu for a folder)")


def _progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (default: a bar with a time estimate when stderr is a terminal)")


def main(argv=None) -> int:
    from .interrupts import Interrupted
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line(args.command, warnings.showwarning)
            args.fn(args)
    except Interrupted as stopped:
        print(f"edgeprune {args.command}: interrupted by {signal.Signals(stopped.signum).name} at step "
              f"{stopped.step} of {stopped.steps}" + (f"; checkpointed in {stopped.folder}: run the same command "
                                                      "again to resume" if stopped.folder else ""), file=sys.stderr)
        return 128 + stopped.signum
    except UserError as error:  # anything else is a bug: its traceback is kept
        if args.debug:
            raise
        print(f"edgeprune {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C outside a training loop: nothing to checkpoint
        print(f"edgeprune {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    return 0


def _warning_line(command: str, show):
    """edgeprune's own warnings as one line, `edgeprune <command>: warning: ...`; others as Python shows them."""
    def one_line(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if not text.startswith("edgeprune: "):
            return show(message, category, filename, lineno, file, line)
        print(f"edgeprune {command}: warning: {text.removeprefix('edgeprune: ')}", file=sys.stderr)
    return one_line


if __name__ == "__main__":
    sys.exit(main())
