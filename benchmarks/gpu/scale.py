"""Scale benchmark: large models' training steps on one GPU, against edgeprune.plan.

    python benchmarks/gpu/scale.py                        # on a GPU: both shapes, then the table
    python benchmarks/gpu/scale.py --shapes llama13b      # one shape
    python benchmarks/gpu/scale.py --tiny                 # the same code path on tiny shapes (CPU; tests)

Shapes (random weights, built directly on the device in their dtype):
  llama13b   Llama, 40 layers, 40 heads (40 KV), width 5120, MLP 13824, vocabulary 32016, bf16,
             batch 1, sequence 512 (CodeLlama-13B's shape)
  gpt2-xl    GPT-2 XL, 48 layers, 25 heads, width 1600, fp32, batch 32, sequence 64
Variants, each run where the planner says it fits the card: per-layer activation checkpointing with
the attention readers recomputed; no checkpointing, readers recomputed (the trainer's default); no
checkpointing, readers kept for backward. Per shape and variant, in one run on one card:
  step        median time of edgeprune's full optimisation step (benchmarks/train_step.py's TrainStep: gates
              sampled, gated forward, KL, backward, clipping, AdamW), CUDA events, after warm-up
  peak        torch.cuda.max_memory_allocated over the warm-up and timed steps: everything
              allocated, weights and the trainer's cached records and targets included
  plan        edgeprune.plan's estimate of that peak, and plan / measured (the target: within 15%)
  verdicts    the planner's verdict for the card it ran on and for a 141 GiB card (H200)
  baseline    a plain forward and backward of the same HF model in the same run (frozen weights,
              gradient to the input embeddings, the loss at the last position): time and peak
A variant the planner says does not fit the card is not run (its verdict is reported); if even
checkpointing does not fit, the largest layer count that fits runs instead, marked in the table.

Prints a Markdown table; appends it with the card, commit and versions to benchmarks/RESULTS.md
under "## Scale" (--results; not by default with --tiny) and, when $OUT is set, writes
$OUT/scale.md and $OUT/scale.jsonl.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))
if importlib.util.find_spec("edgeprune") is None:  # a source checkout that was not installed
    sys.path.insert(0, str(REPO / "python"))
from _machine import run_info
from _memory import GIB, CpuMemoryTracker, free_memory, is_oom, resident_bytes
from _results import append_jsonl, fmt_bytes, fmt_ratio, fmt_time, markdown_table, ratio
from _timing import time_steps
import edgeprune
from train_step import TrainStep

H200_GIB = 141
# (layer checkpointing, attention readers recomputed): the trainer's default is (False, True)
VARIANTS = [(True, True), (False, True), (False, False)]
SECTION = "## Scale"
INTRO = """`benchmarks/gpu/scale.py`: edgeprune's full training step (gates sampled, gated forward, KL at the
last position, backward, clipping, AdamW) on large random-weight models on one GPU, with its peak
memory (torch.cuda.max_memory_allocated: weights and cached records included) against
`edgeprune.plan`'s estimate (target: within 15%), and a plain forward + backward of the same HF model
(frozen weights, gradient to the input embeddings) measured in the same run as the baseline."""


@dataclass
class Shape:
    name: str
    family: str
    layers: int
    heads: int
    kv_heads: int
    width: int
    intermediate: int
    vocab: int
    dtype: torch.dtype
    batch: int
    seq: int

    def config(self):
        from transformers import GPT2Config, LlamaConfig
        if self.family == "gpt2":
            return GPT2Config(n_layer=self.layers, n_head=self.heads, n_embd=self.width, n_inner=self.intermediate,
                              vocab_size=self.vocab, n_positions=max(1024, self.seq), bos_token_id=0, eos_token_id=0)
        return LlamaConfig(num_hidden_layers=self.layers, num_attention_heads=self.heads,
                           num_key_value_heads=self.kv_heads, hidden_size=self.width,
                           intermediate_size=self.intermediate, vocab_size=self.vocab,
                           max_position_embeddings=max(4096, self.seq), bos_token_id=0, eos_token_id=0)


SHAPES = {
    "llama13b": Shape("llama13b", "llama", 40, 40, 40, 5120, 13824, 32016, torch.bfloat16, 1, 512),
    "gpt2-xl": Shape("gpt2-xl", "gpt2", 48, 25, 25, 1600, 6400, 50257, torch.float32, 32, 64),
}
TINY = {
    "llama13b": Shape("llama13b-tiny", "llama", 2, 4, 4, 64, 172, 128, torch.bfloat16, 1, 32),
    "gpt2-xl": Shape("gpt2-xl-tiny", "gpt2", 2, 4, 4, 64, 256, 128, torch.float32, 4, 16),
}


# ------------------------------------------------------------------------------ building and measuring

def build_model(shape: Shape, device):
    """Random weights, allocated on the device in the shape's dtype (no CPU copy of a 13B model); frozen."""
    from transformers import AutoModelForCausalLM
    old = torch.get_default_dtype()
    torch.set_default_dtype(shape.dtype)
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(shape.config(), attn_implementation="sdpa")
    finally:
        torch.set_default_dtype(old)
    return model.to(device=device, dtype=shape.dtype).eval().requires_grad_(False)


def make_inputs(shape: Shape, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(2, shape.vocab, (shape.batch, shape.seq), generator=g)
    corrupted = torch.randint(2, shape.vocab, (shape.batch, shape.seq), generator=g)
    return clean.to(device), corrupted.to(device), torch.full((shape.batch,), shape.seq - 1, device=device)


def _cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def _tensors_of(trainer) -> list[torch.Tensor]:
    """What a Trainer holds between steps: data, caches, gates, multipliers, optimiser state."""
    out = [*trainer.data.tensors(), *trainer.pm.gates.parameters(), *trainer.pressure.parameters()]
    out += [v for s in trainer.train_step.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return out


def measure(fn, device, warmup: int, iters: int, resident=None) -> dict:
    """Median step time and peak allocated bytes (everything live: resident state included).

    On the CPU the peak is the storage-tracking dispatch mode's over one extra step plus the bytes of
    `resident()` (weights, the trainer's caches), which it does not see being created.
    """
    if _cuda(device):
        free_memory(device)
        timing = time_steps(fn, device, warmup=warmup, iters=iters)
        return timing | {"peak": torch.cuda.max_memory_allocated(device)}
    timing = time_steps(fn, device, warmup=warmup, iters=iters)
    held = resident() if resident is not None else []
    with CpuMemoryTracker() as tracker:
        tracker.ignore(*held)
        fn()
    return timing | {"peak": tracker.peak + resident_bytes(*held)}


def plain_step_fn(model, clean, positions):
    """The same-run baseline: the HF model's own forward and backward (frozen weights)."""
    embed = model.get_input_embeddings()

    def step():
        x = embed(clean).detach().requires_grad_()
        logits = model(inputs_embeds=x).logits
        logits[torch.arange(len(clean), device=clean.device), positions].float().logsumexp(-1).sum().backward()
    return step


def largest_fitting(shape: Shape, card_gib: float) -> Shape | None:
    """The shape with the most layers (up to its own) that the planner fits on the card, checkpointed."""
    for layers in range(shape.layers, 0, -1):
        s = replace(shape, layers=layers, name=f"{shape.name} ({layers} of {shape.layers} layers)")
        if edgeprune.plan(s.config(), s.batch, s.seq, s.dtype, checkpointing=True, recompute_readers=True,
                          gpu_memory_gib=card_gib).fits:
            return s
    return None


def run_shape(shape: Shape, device, card_gib, warmup, iters, log) -> list[dict]:
    rows = []
    plans = _plans(shape, card_gib)
    for (ck, rr), p in plans.items():
        log(str(p))
        log(f"  (attention readers {'recomputed' if rr else 'kept'}) for a {H200_GIB} GiB card: {p.verdict(H200_GIB)}")
    run_shape_ = shape
    if card_gib is not None and not plans[True, True].fits:
        run_shape_ = largest_fitting(shape, card_gib)
        log(f"{shape.name} does not fit the card even with checkpointing; running "
            f"{run_shape_.name if run_shape_ else 'nothing'}")
        if run_shape_ is None:
            return [_row(shape, (True, True), plans[True, True], status="does not fit (plan)")]
        plans = _plans(run_shape_, card_gib)
    variants = [v for v in VARIANTS if card_gib is None or plans[v].fits]
    skipped = [v for v in VARIANTS if v not in variants]

    t0 = time.perf_counter()
    model = build_model(run_shape_, device)
    log(f"built {run_shape_.name} on {device} in {time.perf_counter() - t0:.1f} s "
        f"({sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters)")
    clean, corrupted, positions = make_inputs(run_shape_, device)

    baseline = None
    try:
        baseline = measure(plain_step_fn(model, clean, positions), device, warmup, iters,
                           resident=lambda: [*model.parameters(), *model.buffers()])
        log(f"plain HF forward+backward: {fmt_time(baseline['median_s'])}, peak {fmt_bytes(baseline['peak'])}")
    except Exception as e:
        log(f"plain HF step failed: {type(e).__name__}: {e}")

    for ck, rr in variants:
        status, result = "ok", None
        step = trainer = None
        try:
            step = TrainStep.build(model, clean, corrupted, positions, checkpointing=ck, recompute_readers=rr,
                                   batch_size=run_shape_.batch)
            trainer = step.trainer
            result = measure(step.step, device, warmup, iters,
                             resident=lambda t=trainer: [*model.parameters(), *model.buffers(), *_tensors_of(t)])
        except Exception as e:
            status = "OOM" if is_oom(e) else f"{type(e).__name__}: {str(e)[:120]}"
            log(traceback.format_exc())
        finally:
            step = trainer = None  # the previous variant's caches must not count in the next one's peak
            gc.collect()
            if _cuda(device):
                torch.cuda.empty_cache()
        row = _row(run_shape_, (ck, rr), plans[ck, rr], status=status, result=result, baseline=baseline)
        log(f"  {row['shape']} checkpointing={ck} recompute_readers={rr}: {row['status']}, step {row['step']}, peak {row['peak']}, "
            f"plan {row['plan']} ({row['plan / measured']})")
        rows.append(row)
    for v in skipped:
        rows.append(_row(run_shape_, v, plans[v], status="not run: does not fit (plan)"))
    model = None
    gc.collect()
    if _cuda(device):
        torch.cuda.empty_cache()
    return rows


def _plans(shape: Shape, card_gib) -> dict:
    return {(ck, rr): edgeprune.plan(shape.config(), shape.batch, shape.seq, shape.dtype, checkpointing=ck,
                                     recompute_readers=rr, gpu_memory_gib=card_gib) for ck, rr in VARIANTS}


def _row(shape, variant, p, status, result=None, baseline=None) -> dict:
    ck, rr = variant
    peak = result["peak"] if result else None
    step_s = result["median_s"] if result else None
    return {
        "shape": shape.name, "dtype": str(shape.dtype).replace("torch.", ""), "batch x seq": f"{shape.batch} x {shape.seq}",
        "checkpointing": "on" if ck else "off", "readers": "recomputed" if rr else "kept", "step": fmt_time(step_s),
        "plain fwd+bwd": fmt_time(baseline["median_s"]) if baseline else "-",
        "step / plain": fmt_ratio(ratio(step_s, baseline["median_s"] if baseline else None)),
        "peak": fmt_bytes(peak), "plain peak": fmt_bytes(baseline["peak"]) if baseline else "-",
        "plan": fmt_bytes(p.peak_bytes), "plan / measured": fmt_ratio(ratio(p.peak_bytes, peak)),
        "plan: 141 GiB card": "fits" if p.needed_gib <= H200_GIB else "does not fit",
        "status": status,
        "_raw": {"step_s": step_s, "peak_bytes": peak, "plan_bytes": p.peak_bytes, "plan_needed_gib": p.needed_gib,
                 "baseline": baseline, "iters": result.get("iters") if result else None},
    }


COLUMNS = [(k, k) for k in ("shape", "dtype", "batch x seq", "checkpointing", "readers", "step", "plain fwd+bwd", "step / plain",
                            "peak", "plain peak", "plan", "plan / measured", "plan: 141 GiB card", "status")]


# ------------------------------------------------------------------------------ results file

def append_section(path: Path, block: str) -> None:
    """Add `block` at the end of the "## Scale" section (created at the end of the file if missing)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.split("\n")
    if SECTION not in lines:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{INTRO}\n\n{block.rstrip()}\n"
    else:
        start = lines.index(SECTION) + 1
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
        head = "\n".join(lines[:end]).rstrip("\n")
        tail = "\n".join(lines[end:])
        text = f"{head}\n\n{block.rstrip()}\n" + (f"\n{tail}" if tail else "")
    path.write_text(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="llama13b,gpt2-xl", help="comma-separated: " + ", ".join(SHAPES))
    ap.add_argument("--tiny", action="store_true", help="tiny versions of the shapes (CPU smoke run)")
    ap.add_argument("--device", default=None, help="default: cuda when available (cpu with --tiny)")
    ap.add_argument("--card-gib", type=float, default=None, help="the card's memory for the planner's verdicts "
                    "(default: the GPU's total memory; none on the CPU)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--results", default=None, help="Markdown file to append to (default benchmarks/RESULTS.md; "
                    "none with --tiny)")
    ap.add_argument("--jsonl", default=None)
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cpu" if args.tiny or not torch.cuda.is_available() else "cuda"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type != "cuda" and not args.tiny:
        ap.error("the full shapes need a CUDA GPU; use --tiny for a CPU run of the same code path")
    card = args.card_gib
    if card is None and device.type == "cuda":
        card = torch.cuda.get_device_properties(device).total_memory / GIB
    # Few steps: the peak is what matters here, and run_all.sh gives the 13B shape 75 s.
    warmup = args.warmup if args.warmup is not None else 1
    iters = args.iters if args.iters is not None else (2 if args.tiny else 3)
    table = TINY if args.tiny else SHAPES
    out_dir = os.environ.get("OUT")
    log_lines = []

    def log(*parts):
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        log_lines.append(line)

    info = run_info(device)
    log(f"card: {info['card']}; torch {info['torch']}, transformers {info.get('transformers')}, "
        f"commit {info['git_commit']}")
    rows = []
    for name in [s.strip() for s in args.shapes.split(",") if s.strip()]:
        if name not in table:
            ap.error(f"unknown shape {name!r}; choose from {', '.join(table)}")
        rows += run_shape(table[name], device, card, warmup, iters, log)

    md = markdown_table(rows, COLUMNS)
    when = time.strftime("%Y-%m-%d")
    header = (f"### {info['card']}{' (tiny shapes)' if args.tiny else ''}, {when}\n\n"
              f"commit {info['git_commit']}, torch {info['torch']}, transformers {info.get('transformers')}"
              f"{', CUDA ' + str(info.get('cuda')) if info.get('cuda') else ''}; median of {iters} steps after "
              f"{warmup} warm-up; the planner's verdicts for this card use "
              f"{f'{card:.0f} GiB' if card else 'no size (CPU)'}.")
    block = f"{header}\n\n{md}\n"
    print("\n" + block)
    results = args.results if args.results is not None else (None if args.tiny else str(REPO / "benchmarks" / "RESULTS.md"))
    if results:
        append_section(Path(results), block)
        print(f"appended to {results} under '{SECTION}'")
    record = {"info": info, "card_gib": card, "tiny": args.tiny,
              "rows": [{k: v for k, v in r.items()} for r in rows]}
    if args.jsonl:
        append_jsonl(args.jsonl, record)
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "scale.md").write_text(block)
        (Path(out_dir) / "scale.log").write_text("\n".join(log_lines) + "\n")
        append_jsonl(Path(out_dir) / "scale.jsonl", record)
    return rows


if __name__ == "__main__":
    main()
