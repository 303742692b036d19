"""End-to-end training-step benchmark: edgeprune against the plain model and the naive reference.

In one run, on one device, for each shape it builds one random-weight Hugging Face model and
measures, one after the other on that same model:
  (a) edgeprune's training step (benchmarks/train_step.py's `TrainStep`, through the adapter
      `edgeprune_step_factory` below); skipped with a note when edgeprune's trainer is unavailable;
  (b) the plain HF model step: a clean and a corrupted forward without gradient, then one forward
      and backward (KL at the loss position against the clean logits), HF's default attention, the
      same dtype; weights trainable, no optimiser;
  (c) the naive reference step (benchmarks/naive_reference.py: the reference implementation's
      stack materialisation, three forwards, backward, clipping, AdamW); GPT-2 shapes only;
  (a') edgeprune's step compiled (TrainConfig(compile="on"); on a GPU without CUDA graphs) and
  (a'') compiled with CUDA graphs (what compile="on" does on a GPU; CUDA only);
  (b') the plain step with the model compiled (torch.compile, default mode).
The compiled variants also report their first step (compiling included) and the step at which the
compile time is repaid against the eager variant.
Reported per variant: median step time (CUDA events on a GPU, perf_counter on the CPU, after
warm-up) and peak memory (torch.cuda.max_memory_allocated over the timed steps, weights and cached
state included; on the CPU the storage-tracking dispatch mode of _memory plus the model's resident
weights), with the ratios a/b and a/c (and c/b). Shapes that do not fit are recorded as OOM.

    python benchmarks/step.py                          # GPU shapes (GPT-2 small b32 = the paper's setting)
    python benchmarks/step.py --cpu-small              # small shapes, about a minute on 2 CPU cores
    python benchmarks/step.py --ioi-run                # + a full IOI-shaped pruning run timed end to end
    python benchmarks/step.py --shapes gpt2-small-b32 --variants a,b --jsonl out.jsonl
    python benchmarks/step.py --shapes host-gpt2-small --variants "a,a',b,b'" --threads 1
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import run_info  # noqa: E402
from _memory import CpuMemoryTracker, free_memory, is_oom, resident_bytes  # noqa: E402
from _results import append_csv, append_jsonl, fmt_bytes, fmt_ratio, fmt_time, markdown_table, ratio  # noqa: E402
from _timing import synchronize, time_interleaved, time_steps  # noqa: E402
import naive_reference as NR  # noqa: E402

EDGE_SPARSITY = 0.98


# ------------------------------------------------------------------------------ shapes

@dataclass
class Shape:
    name: str
    family: str               # "gpt2" or "llama"
    layers: int
    heads: int
    width: int
    batch: int
    seq: int
    dtype: str = "fp32"
    kv_heads: int | None = None
    intermediate: int | None = None
    vocab: int = 50257
    variants: tuple = ("a", "b", "c")
    note: str = ""

    @property
    def torch_dtype(self):
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.dtype]


GPU_SHAPES = [
    Shape("gpt2-small-b32", "gpt2", 12, 12, 768, 32, 64, note="the paper's setting"),
    Shape("gpt2-small-b128", "gpt2", 12, 12, 768, 128, 64),
    Shape("gpt2-medium-b32", "gpt2", 24, 16, 1024, 32, 64),
    Shape("gpt2-xl-b8", "gpt2", 48, 25, 1600, 8, 64),
    Shape("gpt2-xl-b32", "gpt2", 48, 25, 1600, 32, 64),
    Shape("llama13b-bf16-b1-s512", "llama", 40, 40, 5120, 1, 512, dtype="bf16", kv_heads=40, intermediate=13824,
          vocab=32000, variants=("a", "b"), note="13B Llama shape, built on the GPU"),
]
# CPU shapes: GPT-2 blocks at head size 64, vocabulary cut to 8,192 so that the unembedding's share of the
# plain step's FLOPs (about 30%) stays near GPT-2 small's instead of dominating a 4-layer model.
CPU_SHAPES = [
    Shape("cpu-small-b4", "gpt2", 4, 4, 256, 4, 32, vocab=8192, note="vocab 8,192"),
]
EXTRA_CPU_SHAPES = [
    Shape("cpu-small-b16", "gpt2", 4, 4, 256, 16, 32, vocab=8192, note="vocab 8,192"),
    Shape("cpu-small-b4-v50k", "gpt2", 4, 4, 256, 4, 32, note="full GPT-2 vocab"),
]
# GPT-2 small's graph (12 layers x 12 heads: the same ops and launches per step) at a width and batch
# where the arithmetic is negligible: its step time is the host's cost (Python, dispatch, launches).
# Next to gpt2-small-b32 on a GPU it says whether that step waits on the host.
HOST_SHAPES = [
    Shape("host-gpt2-small", "gpt2", 12, 12, 48, 2, 8, vocab=256, note="GPT-2 small's graph, width 48: host cost"),
]
ALL_SHAPES = {s.name: s for s in GPU_SHAPES + CPU_SHAPES + EXTRA_CPU_SHAPES + HOST_SHAPES}


def build_model(shape: Shape, device):
    """A random-weight HF model of the shape, built directly on the device in its dtype."""
    from transformers import AutoModelForCausalLM, LlamaConfig
    if shape.family == "gpt2":
        cfg = NR.gpt2_config(shape.layers, shape.heads, shape.width, vocab_size=shape.vocab,
                             n_positions=max(1024, shape.seq))
    else:
        cfg = LlamaConfig(num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                          num_key_value_heads=shape.kv_heads or shape.heads, hidden_size=shape.width,
                          intermediate_size=shape.intermediate or 4 * shape.width, vocab_size=shape.vocab,
                          max_position_embeddings=max(4096, shape.seq))
    old = torch.get_default_dtype()
    torch.set_default_dtype(shape.torch_dtype)
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.to(device=device, dtype=shape.torch_dtype).train()


def make_inputs(shape: Shape, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, shape.vocab, (shape.batch, shape.seq), generator=g)
    corrupted = torch.randint(0, shape.vocab, (shape.batch, shape.seq), generator=g)
    positions = torch.full((shape.batch,), shape.seq - 1, dtype=torch.long)   # KL at one position
    return clean.to(device), corrupted.to(device), positions.to(device)


# ------------------------------------------------------------------------------ the three steps

def _import_edgeprune_train():
    """The step harness (benchmarks/train_step.py) and edgeprune.train: installed, or from the checkout."""
    if str(Path(__file__).resolve().parent) not in sys.path:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
    return importlib.import_module("train_step")


# ======================= ADAPTER (a): the only code here that touches edgeprune internals =========
def edgeprune_step_factory(model, clean_ids, corrupted_ids, positions, edge_sparsity=EDGE_SPARSITY, **kwargs):
    """Build edgeprune's training step on `model` and return a callable running one full
    optimisation step (forward, backward, optimiser) that returns the loss as a float.

    Written against the trainer's API: TrainStep.build(hf_model, clean_ids, corrupted_ids,
    positions, edge_sparsity=...) -> object with step() -> float. Cache building happens in build().
    """
    TrainStep = _import_edgeprune_train().TrainStep     # benchmarks/train_step.py
    step = TrainStep.build(model, clean_ids, corrupted_ids, positions, edge_sparsity=edge_sparsity, **kwargs)
    return step.step
# ==================================================================================================


def compiled_step_factory(graphs: bool):
    """(a') / (a''): edgeprune's step with compile="on", without or with CUDA graphs."""
    def factory(model, clean_ids, corrupted_ids, positions, **kwargs):
        return edgeprune_step_factory(model, clean_ids, corrupted_ids, positions, compile="on", cuda_graphs=graphs,
                                      **kwargs)
    return factory


def plain_step_factory(model, clean_ids, corrupted_ids, positions, compile_model: bool = False, **_):
    """(b): clean and corrupted forward without gradient, one forward and backward (weights trainable).
    (b'): the same with the model's forward compiled."""
    for p in model.parameters():
        p.requires_grad_(True)
    rows = torch.arange(clean_ids.shape[0], device=clean_ids.device)
    forward = torch.compile(model, dynamic=False) if compile_model else model

    def step() -> float:
        with torch.no_grad():
            target = forward(clean_ids, use_cache=False).logits[rows, positions]
            forward(corrupted_ids, use_cache=False)
        logits = forward(clean_ids, use_cache=False).logits[rows, positions]
        loss = F.kl_div(F.log_softmax(logits.float(), -1), F.log_softmax(target.float(), -1),
                        reduction="batchmean", log_target=True)
        loss.backward()
        for p in model.parameters():
            p.grad = None
        return loss.item()
    return step


def naive_step_factory(model, clean_ids, corrupted_ids, positions, edge_sparsity=EDGE_SPARSITY, **_):
    """(c): the naive reference step (with its own second copy of the model, as the reference)."""
    return NR.NaiveReferenceStep(model, clean_ids, corrupted_ids, positions, edge_sparsity=edge_sparsity).step


FACTORIES = {"a": edgeprune_step_factory, "a'": compiled_step_factory(graphs=False),
             "a''": compiled_step_factory(graphs=True), "b": plain_step_factory,
             "b'": partial(plain_step_factory, compile_model=True), "c": naive_step_factory}
LABELS = {"a": "(a) edgeprune", "a'": "(a') edgeprune compiled", "a''": "(a'') edgeprune CUDA graphs",
          "b": "(b) plain HF step", "b'": "(b') plain HF step compiled", "c": "(c) naive reference"}
ORDER = ("b", "b'", "c", "a", "a'", "a''")   # baselines first, then edgeprune
CUDA_ONLY = ("a''",)
EAGER_OF = {"a'": "a", "a''": "a", "b'": "b"}  # a compiled variant's eager twin (for its repayment step)


# ------------------------------------------------------------------------------ measuring

@dataclass
class Result:
    shape: str
    variant: str
    status: str = "ok"
    time_s: float | None = None
    p20_s: float | None = None
    p80_s: float | None = None
    iters: int = 0
    peak_bytes: int | None = None
    build_s: float | None = None
    loss: float | None = None
    extra: dict = field(default_factory=dict)


def _status_of(e: BaseException, verbose: bool) -> str:
    if isinstance(e, ImportError):
        return f"skipped: edgeprune trainer unavailable ({e})"
    if is_oom(e):
        return "OOM"
    if verbose:
        traceback.print_exception(e)
    msg = str(e).splitlines()[0][:200] if str(e) else ""
    return f"error: {type(e).__name__}: {msg}"


def _pin_flags(model, fn):
    """Each variant leaves the model's requires_grad flags as it needs them (the naive step freezes the
    weights, the plain step trains them); re-apply that variant's flags before each of its steps, so
    variants can run interleaved on one model."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]

    def run():
        for p, f in zip(params, flags):
            if p.requires_grad != f:
                p.requires_grad_(f)
        return fn()
    return run


def prepare(shape: Shape, variant: str, model, inputs, device, args):
    """Build one variant and run its first step; on the CPU also measure its peak memory
    (build and first step inside the tracker, peak over the second step). Returns (Result, fn or None)."""
    res = Result(shape.name, variant)
    device = torch.device(device)
    # the tracker is a dispatch mode, under which torch.compile traces nothing: compiled variants go untracked
    tracked = device.type == "cpu" and not args.no_cpu_memory and variant not in EAGER_OF
    tracker = CpuMemoryTracker() if tracked else None
    try:
        free_memory(device)
        if tracker is not None:
            tracker.ignore(*model.parameters(), *model.buffers(), *inputs)
        t0 = time.perf_counter()
        with tracker if tracker is not None else contextlib.nullcontext():
            extra = {"recompute_readers": False} if args.keep_readers and variant.startswith("a") else {}
            fn = _pin_flags(model, FACTORIES[variant](model, *inputs, edge_sparsity=EDGE_SPARSITY, **extra))
            synchronize(device)
            res.build_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            fn()                                   # first step: lazy state (optimiser, grads, compile)
            synchronize(device)
            res.extra["first_step_s"] = time.perf_counter() - t0
            if tracker is not None:
                tracker.reset_peak()
                fn()
                res.peak_bytes = tracker.peak + resident_bytes(model)
        synchronize(device)
        return res, fn
    except Exception as e:  # noqa: BLE001 - a benchmark records failures and moves on
        res.status = _status_of(e, args.verbose)
        free_memory(device)
        return res, None


def measure_cuda(shape: Shape, variant: str, model, inputs, device, args) -> Result:
    """GPU: build, warm up, then peak memory and CUDA-event times over the timed steps."""
    flags = [p.requires_grad for p in model.parameters()]
    res, fn = prepare(shape, variant, model, inputs, device, args)
    if fn is not None:
        try:
            n_warm = max(1, args.warmup - 1)
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            for _ in range(n_warm):
                fn()
            torch.cuda.synchronize(device)
            per = (time.perf_counter() - t0) / n_warm      # sizes the timed part to about --target-s
            iters = args.iters or int(min(50, max(5, math.ceil(args.target_s / max(per, 1e-6)))))
            torch.cuda.reset_peak_memory_stats(device)
            t = time_steps(fn, device, warmup=0, iters=iters)
            res.peak_bytes = torch.cuda.max_memory_allocated(device)
            res.time_s, res.p20_s, res.p80_s, res.iters = t["median_s"], t["p20_s"], t["p80_s"], t["iters"]
            res.loss = fn()
        except Exception as e:  # noqa: BLE001
            res.status = _status_of(e, args.verbose)
    fn = None
    for p, f in zip(model.parameters(), flags):
        p.requires_grad_(f)
        p.grad = None
    free_memory(device)
    return res


def _loadavg():
    try:
        return [round(x, 2) for x in __import__("os").getloadavg()]
    except OSError:
        return None


def measure_cpu(shape: Shape, variants: list[str], model, inputs, device, args) -> dict[str, Result]:
    """CPU: build every variant on the one model, then time them interleaved (round-robin), so a
    shared machine's load falls on all of them alike."""
    flags = [p.requires_grad for p in model.parameters()]
    results, fns = {}, {}
    for v in variants:
        print(f"   building {LABELS[v]} ...", flush=True)
        results[v], fn = prepare(shape, v, model, inputs, device, args)
        if fn is not None:
            fns[v] = fn
    for _ in range(max(0, args.warmup - 2)):
        for v in list(fns):
            try:
                fns[v]()
            except Exception as e:  # noqa: BLE001
                results[v].status = _status_of(e, args.verbose)
                del fns[v]
    if fns:
        print(f"   timing {', '.join(fns)} interleaved ...", flush=True)
        timed = time_interleaved(fns, device, iters=args.iters, target_s=args.target_s)
        for v, t in timed.items():
            r = results[v]
            if isinstance(t, BaseException):
                r.status = _status_of(t, args.verbose)
                continue
            r.time_s, r.p20_s, r.p80_s, r.iters = t["median_s"], t["p20_s"], t["p80_s"], t["iters"]
            r.extra["cpu_time_median_s"] = t["cpu_median_s"]
            r.extra["load_average"] = _loadavg()
            r.loss = fns[v]()
    fns.clear()
    for p, f in zip(model.parameters(), flags):
        p.requires_grad_(f)
        p.grad = None
    free_memory(device)
    return results


def report_shape(shape: Shape, results: dict[str, Result], card: str) -> str:
    b, c = results.get("b"), results.get("c")

    def val(r, attr):
        return getattr(r, attr) if r is not None and r.status == "ok" else None

    rows = []
    for k in ORDER:
        r = results.get(k)
        if r is None:
            continue
        rows.append({
            "v": LABELS[k], "status": r.status, "time": fmt_time(val(r, "time_s")),
            "mem": fmt_bytes(val(r, "peak_bytes")),
            "tb": fmt_ratio(ratio(val(r, "time_s"), val(b, "time_s"))),
            "mb": fmt_ratio(ratio(val(r, "peak_bytes"), val(b, "peak_bytes"))),
            "tc": fmt_ratio(ratio(val(r, "time_s"), val(c, "time_s"))),
            "mc": fmt_ratio(ratio(val(r, "peak_bytes"), val(c, "peak_bytes"))),
            "first": fmt_time(r.extra.get("first_step_s")),
            "n": r.iters or "-",
        })
    dims = (f"L={shape.layers} H={shape.heads} D={shape.width} B={shape.batch} S={shape.seq} {shape.dtype}"
            + (f", {shape.note}" if shape.note else ""))
    table = markdown_table(rows, [("v", "variant"), ("status", "status"), ("time", "step time (median)"),
                                    ("tb", "time / b"), ("tc", "time / c"), ("mem", "peak memory"),
                                    ("mb", "mem / b"), ("mc", "mem / c"), ("first", "first step"),
                                    ("n", "timed steps")])
    lines = [f"### {shape.name} ({dims}) on {card}", "", table, ""]
    def cpu_time(r):
        return r.extra.get("cpu_time_median_s") if r is not None and r.status == "ok" else None

    for num, den in (("a", "b"), ("a'", "b"), ("a''", "b"), ("a'", "b'"), ("b'", "b"), ("a'", "a"), ("a", "c"),
                     ("c", "b")):
        rn, rd = results.get(num), results.get(den)
        rt = ratio(val(rn, "time_s"), val(rd, "time_s"))
        rm = ratio(val(rn, "peak_bytes"), val(rd, "peak_bytes"))
        rc = ratio(cpu_time(rn), cpu_time(rd))
        if rt is not None or rm is not None:
            lines.append(f"- {num}/{den}: time {fmt_ratio(rt)}"
                         + (f" (process CPU time {fmt_ratio(rc)})" if rc is not None else "")
                         + f", peak memory {fmt_ratio(rm)}")
    for k, eager in EAGER_OF.items():
        step = repaid_at(results.get(k), results.get(eager))
        if step is not None:
            lines.append(f"- {k}: compile time repaid against {eager} after {step} steps")
    loads = [r.extra.get("load_average") for r in results.values() if r.extra.get("load_average")]
    if loads:
        lines.append(f"- load average (1, 5, 15 min) after timing: {loads[-1]}")
    return "\n".join(lines)


def repaid_at(compiled: Result | None, eager: Result | None) -> int | str | None:
    """The step at which a compiled variant's extra first-step time is won back ("never" if it is slower)."""
    if compiled is None or eager is None or compiled.status != "ok" or eager.status != "ok":
        return None
    extra = compiled.extra.get("first_step_s", 0) - eager.extra.get("first_step_s", 0)
    saved = eager.time_s - compiled.time_s
    return "never" if saved <= 0 else max(1, math.ceil(extra / saved))


def record(args, info: dict, payload: dict) -> None:
    rec = {**info, **payload}
    if args.jsonl:
        append_jsonl(args.jsonl, rec)
    if args.csv:
        append_csv(args.csv, rec)


def run_shapes(args, device, shapes: list[Shape], info: dict) -> None:
    card = info["card"]
    notes_printed = set()
    for shape in shapes:
        variants = [v for v in args.variants if v[0] in shape.variants and (v not in CUDA_ONLY or device.type == "cuda")]
        print(f"\n== {shape.name}: building the model on {device} ...", flush=True)
        try:
            free_memory(device)
            torch.manual_seed(0)
            model = build_model(shape, device)
            inputs = make_inputs(shape, device)
        except Exception as e:  # noqa: BLE001
            status = "OOM" if is_oom(e) else f"error: {type(e).__name__}: {e}"
            print(f"   model build failed: {status}")
            record(args, info, {"bench": "step", "shape": asdict(shape), "variant": "build", "status": status})
            free_memory(device)
            continue
        order = sorted(variants, key=ORDER.index)
        if device.type == "cuda":
            results = {}
            for v in order:
                print(f"   {LABELS[v]} ...", flush=True)
                results[v] = measure_cuda(shape, v, model, inputs, device, args)
        else:
            results = measure_cpu(shape, order, model, inputs, device, args)
        for v in order:
            r = results[v]
            if r.status.startswith("skipped") and v not in notes_printed:
                print(f"   NOTE: {LABELS[v]} {r.status}")
                notes_printed.add(v)
            else:
                print(f"     {LABELS[v]}: {r.status}: {fmt_time(r.time_s)}, peak {fmt_bytes(r.peak_bytes)}")
            cfg = asdict(shape)
            cfg["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32 if device.type == "cuda" else None
            cfg["edge_sparsity"] = EDGE_SPARSITY
            cfg["timing"] = "cuda events, sequential" if device.type == "cuda" else "perf_counter, interleaved"
            record(args, info, {"bench": "step", "shape": cfg, **{k: x for k, x in asdict(r).items() if k != "shape"}})
        print()
        print(report_shape(shape, results, card), flush=True)
        del model, inputs
        free_memory(device)


# ------------------------------------------------------------------------------ IOI-shaped run

_NAMES = ["Mary", "John", "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack",
          "Kate", "Leo", "Mia", "Noah", "Olivia", "Paul", "Rose", "Sam"]
_PLACES = ["store", "park", "school", "office", "garden", "station", "market", "library"]
_OBJECTS = ["drink", "book", "ring", "kiss", "bone", "basketball", "computer", "snack"]
_TEMPLATES = [
    "Then , {B} and {A} went to the {P} . {B} gave a {O} to",
    "When {B} and {A} got a {O} at the {P} , {B} decided to give it to",
    "After the lunch , {B} and {A} went to the {P} . {B} gave a {O} to",
    "While {B} and {A} were working at the {P} , {B} gave a {O} to",
    "Friends {B} and {A} found a {O} at the {P} . {B} gave it to",
]


def synthetic_ioi_data(n: int = 200, seed: int = 0):
    """IOI-shaped {"clean", "corrupted"} pairs (edgeprune's custom format): the clean prompt ends with
    <predict>IO</predict>; the corrupted prompt uses three other names (the paper's ABC corruption).
    With a word-level tokenizer the prompts are 14-20 tokens, close to IOI's real lengths."""
    g = torch.Generator().manual_seed(seed)

    def pick(xs):
        return xs[int(torch.randint(len(xs), (1,), generator=g))]

    data = []
    for _ in range(n):
        t = pick(_TEMPLATES)
        a, b, c, d, e = (_NAMES[i] for i in torch.randperm(len(_NAMES), generator=g)[:5].tolist())
        place, obj = pick(_PLACES), pick(_OBJECTS)
        clean = t.format(A=a, B=b, P=place, O=obj) + f" <predict>{a}</predict>"
        corrupted = t.format(A=c, B=d, P=place, O=obj).replace(f"{d} gave", f"{e} gave").replace(
            f"{d} decided", f"{e} decided")
        data.append({"clean": clean, "corrupted": corrupted})
    return data


def word_tokenizer(texts):
    """A word-level tokenizer built locally (nothing is downloaded), EOS as id 0 and as padding."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<|endoftext|>", "[UNK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", unk_token="[UNK]")


def _accepted_kwargs(fn, wanted: dict) -> tuple[dict, list]:
    """Keep the keyword arguments fn takes (all of them when it takes **kwargs); report the rest as dropped."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}, list(wanted)
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(wanted), []
    keep = {k: v for k, v in wanted.items() if k in params and params[k].kind != inspect.Parameter.POSITIONAL_ONLY}
    return keep, [k for k in wanted if k not in keep]


def ioi_run(args, device, info: dict) -> None:
    """A full IOI-shaped pruning run, timed end to end: edgeprune.train(model, data, ...) from the call
    to its return, with TrainConfig's defaults (validation every 64 steps, a checkpoint every 256,
    logging; caches and the final binarisation included; model construction excluded); padded to 64
    tokens as in the paper and/or at the prompts' real lengths, for each --ioi-compile setting."""
    print("\n== IOI-shaped pruning run (edgeprune.train) ==", flush=True)
    try:
        _import_edgeprune_train()
        from edgeprune import train
    except Exception as e:  # noqa: BLE001
        print(f"NOTE: skipped, edgeprune.train unavailable ({type(e).__name__}: {e})")
        record(args, info, {"bench": "ioi_run", "status": f"skipped: {e}"})
        return
    cpu = torch.device(device).type == "cpu"
    shape = CPU_SHAPES[0] if cpu else GPU_SHAPES[0]
    steps = args.ioi_steps or (20 if cpu else 3000)
    data = synthetic_ioi_data(args.ioi_examples)
    validation = synthetic_ioi_data(100, seed=1)
    tokenizer = word_tokenizer([d["clean"] for d in data + validation] + [d["corrupted"] for d in data + validation])
    lengths = [len(tokenizer(d["clean"].split(" <predict>")[0])["input_ids"]) for d in data]
    print(f"   {len(data)} examples, prompts of {min(lengths)}-{max(lengths)} tokens; {shape.name} random weights; "
          f"{steps} steps, batch 32, edge sparsity {EDGE_SPARSITY}", flush=True)
    # same-run baseline: the plain HF step (b) at the run's batch and padded length, times the step count
    base_shape = Shape(shape.name + "-b32-s64", shape.family, shape.layers, shape.heads, shape.width, 32, 64,
                       shape.dtype, vocab=shape.vocab)
    model = build_model(base_shape, device)
    plain = plain_step_factory(model, *make_inputs(base_shape, device))
    base = time_steps(plain, device, warmup=2, iters=args.iters, target_s=args.target_s)["median_s"]
    del model, plain
    free_memory(device)
    print(f"   baseline (b) plain HF step at batch 32, sequence 64: {fmt_time(base)} "
          f"-> {steps} steps = {fmt_time(base * steps)}", flush=True)
    rows = []
    runs = {"64": ("padded to 64 tokens", 64), "real": ("real lengths", None)}
    for (label, pad), compile in ((runs[name], c) for name in args.ioi_pads.split(",")
                                  for c in args.ioi_compile.split(",")):
        torch.manual_seed(0)
        model = build_model(shape, device)
        label = f"{label}, compile={compile}"
        folder = tempfile.TemporaryDirectory()
        wanted = {"edge_sparsity": EDGE_SPARSITY, "steps": steps, "batch_size": 32, "pad_to": pad,
                  "tokenizer": tokenizer, "device": str(device), "progress": False, "compile": compile,
                  "validation": validation, "checkpoint_dir": folder.name}
        kwargs, dropped = _accepted_kwargs(train, wanted)
        status, elapsed = "ok", None
        try:
            synchronize(device)
            t0 = time.perf_counter()
            train(model, data, **kwargs)
            synchronize(device)
            elapsed = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001
            status = _status_of(e, args.verbose)
        folder.cleanup()
        shown = {k: v for k, v in kwargs.items() if k not in ("tokenizer", "validation", "checkpoint_dir")}
        shown["validation"] = f"{len(validation)} examples" if "validation" in kwargs else None
        shown["checkpoint_dir"] = "a temporary folder" if "checkpoint_dir" in kwargs else None
        rows.append({"run": label, "status": status, "time": fmt_time(elapsed),
                     "per_step": fmt_time(elapsed / steps if elapsed else None),
                     "vs": fmt_ratio(ratio(elapsed, base * steps)), "kwargs": str(shown)})
        print(f"   {label}: {status} {fmt_time(elapsed)}", flush=True)
        record(args, info, {"bench": "ioi_run", "run": label, "status": status, "time_s": elapsed, "steps": steps,
                            "plain_step_s": base, "ratio_vs_plain_steps": ratio(elapsed, base * steps),
                            "examples": len(data), "shape": asdict(shape), "kwargs": shown, "dropped": dropped})
        del model
        free_memory(device)
    print(markdown_table(rows, [("run", "IOI-shaped run"), ("status", "status"), ("time", "end to end"),
                                  ("per_step", "per step"), ("vs", f"/ ({steps} x plain step)"),
                                  ("kwargs", "train kwargs")]))


# ------------------------------------------------------------------------------ main

def main(argv=None):
    p = argparse.ArgumentParser(description="edgeprune training-step benchmark (a) vs (b) plain HF vs (c) naive")
    p.add_argument("--cpu-small", action="store_true", help="small shapes for a CPU (about a minute)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--shapes", default=None, help=f"comma list of {', '.join(ALL_SHAPES)}")
    p.add_argument("--variants", default="a,b,c")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=None, help="timed steps (default: about --target-s seconds)")
    p.add_argument("--target-s", type=float, default=3.0)
    p.add_argument("--ioi-run", action="store_true", help="also time a full IOI-shaped pruning run")
    p.add_argument("--ioi-only", action="store_true", help="only the IOI-shaped run")
    p.add_argument("--ioi-steps", type=int, default=None, help="default 3000 (GPU), 20 (CPU)")
    p.add_argument("--ioi-examples", type=int, default=200)
    p.add_argument("--ioi-pads", default="64,real",
                   help="the IOI-shaped runs: 64 (padded to 64 tokens), real (the prompts' real lengths) or both")
    p.add_argument("--ioi-compile", default="auto",
                   help="TrainConfig.compile of the IOI-shaped runs: auto, on, off, or a comma list (one run each)")
    p.add_argument("--jsonl", default=None, help="append one JSON record per measurement")
    p.add_argument("--csv", default=None, help="append one CSV row per measurement")
    p.add_argument("--no-cpu-memory", action="store_true", help="skip the CPU storage-tracking pass")
    p.add_argument("--force", action="store_true", help="run GPU shapes on a CPU anyway")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--keep-readers", action="store_true",
                   help="edgeprune's variants keep the attention readers' mixtures for backward "
                        "(recompute_readers=False), as the plain step keeps its activations")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if not args.ioi_pads or set(args.ioi_pads.split(",")) - {"64", "real"}:
        p.error(f"--ioi-pads takes 64, real or 64,real; got {args.ioi_pads!r}")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in ORDER]
    if unknown:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.shapes:
        shapes = [ALL_SHAPES[s.strip()] for s in args.shapes.split(",")]
    elif args.cpu_small:
        shapes = CPU_SHAPES
    else:
        shapes = GPU_SHAPES
    cpu_ok = CPU_SHAPES + EXTRA_CPU_SHAPES + HOST_SHAPES
    if device.type == "cpu" and not args.force and any(s not in cpu_ok for s in shapes):
        p.error("GPU shapes on a CPU would take hours; use --cpu-small (or --force)")
    if any(v.startswith("a") for v in args.variants):
        try:
            _import_edgeprune_train().TrainStep  # noqa: B018
        except Exception as e:  # noqa: BLE001
            print(f"NOTE: (a) skipped: `from train_step import TrainStep` failed ({type(e).__name__}: {e})")
            args.variants = [v for v in args.variants if not v.startswith("a")]

    info = run_info(device)
    print(f"device: {info['card']} | torch {info['torch']} | transformers {info.get('transformers')} | "
          f"commit {info['git_commit']}")
    if not args.ioi_only:
        run_shapes(args, device, shapes, info)
    if args.ioi_run or args.ioi_only:
        ioi_run(args, device, info)


if __name__ == "__main__":
    main()
