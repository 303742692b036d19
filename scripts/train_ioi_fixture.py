"""Train tests/fixtures/ioi-gpt2: a small stock GPT-2 that solves edgeprune's IOI task.

    PYTHONPATH=python python scripts/train_ioi_fixture.py        # writes tests/fixtures/ioi-gpt2/
    PYTHONPATH=python python scripts/train_ioi_fixture.py --task ioi-b --layers 4 --heads 4 --mlp 256 \
        --steps 2000 --out tests/fixtures/ioi-b-gpt2-4x4           # the second fixture, on other text

Random-weight models cannot serve tests that need a model doing a task (faithfulness curves,
budgets, seed stability); this one is trained from scratch, on CPU, in minutes.

Model: transformers.GPT2LMHeadModel, 6 layers x 8 heads, width 128 (head size 16), MLP 512,
32 positions, no dropout, tied embeddings (--layers, --heads, --width, --mlp change the shape).
Tokenizer: word level (whitespace and punctuation split, so " Mary" is one token), its vocabulary
every word the task's generator can produce (its templates and names, all places and objects)
plus "<|endoftext|>" (EOS, also the pad) and "[UNK]".

Data: edgeprune.tasks.ioi's own generator (clean prompt + " IO") for --task: "ioi" (TEMPLATES,
NAMES) or "ioi-b" (TEMPLATES_B, NAMES_B: no template or name in common with "ioi"). Drawn with
seed 1000 + seed, not the seeds edgeprune's splits use, and restricted to prompts edgeprune's
stable hash puts in the task's "train" split, so no validation or test prompt (of ioi and ioi-t1,
or of ioi-b) is ever trained on.
Held out: 5% of the unordered name pairs {IO, S}, never trained on in either role order;
accuracy on prompts built from them measures generalisation to unseen pairs.

Loss: next-token cross-entropy over every prompt token, plus the answer token's cross-entropy
again (weight --answer-weight), so the IO prediction dominates the gradient without making the
rest of the text unlearned. Corrupted (ABC) prompts are not trained on.

Optimiser: AdamW (lr 1e-3, betas 0.9/0.98, weight decay 0.01), 100 warmup steps, then cosine to
10%, gradient clip 1, batch 64, fp32, 1500 steps. Deterministic for a seed and a thread count:
two runs of the defaults gave bit-identical weights. One thread by default: on a shared 2-core AMD
EPYC (load average ~10) two threads were 5-10x slower per step than one. There the defaults took
14 minutes; held-out accuracy reached 100% by step 500. The second fixture (4 x 4, MLP 256,
ioi-b) took 5 minutes for 2000 steps on a 2-core Intel Xeon; its held-out accuracy stayed at
chance until step 1000 and reached 100% by step 1500.
Writes config.json, model.safetensors, the tokenizer files and train_log.jsonl (one line per
evaluation, then a summary line with the held-out and edgeprune test figures and the machine).
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import os
import platform
import random
import sys
import time

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("edgeprune") is None:  # a source checkout that was not installed
    sys.path.insert(0, os.path.join(ROOT, "python"))

import edgeprune  # noqa: E402
from edgeprune.tasks import ioi  # noqa: E402
from edgeprune.tasks.splits import split_of  # noqa: E402
from edgeprune.tasks.words import NAMES, NAMES_B, OBJECTS, PLACES  # noqa: E402

EOS, UNK = "<|endoftext|>", "[UNK]"
OUT = os.path.join(ROOT, "tests", "fixtures", "ioi-gpt2")

# Per training task: the templates and names its generator fills, the family whose hash assigns
# its splits, and the registered tasks the summary evaluates (summary key -> task name).
TASKS = {
    "ioi": {"templates": ioi.TEMPLATES, "names": NAMES, "family": "ioi",
            "reports": {"edgeprune_test": "ioi", "edgeprune_test_t1": "ioi-t1"}},
    "ioi-b": {"templates": ioi.TEMPLATES_B, "names": NAMES_B, "family": "ioi-b",
              "reports": {"edgeprune_test": "ioi-b"}},
}


# ---------------------------------------------------------------------------------- tokenizer
def build_tokenizer(max_length: int, task: dict) -> PreTrainedTokenizerFast:
    """Word-level tokenizer whose vocabulary is every word the task's generator can write (no [UNK])."""
    split = pre_tokenizers.Whitespace()
    words = set()
    for template in task["templates"]:
        text = template.format(A="", B="", S="", PLACE="", OBJECT="")
        words.update(w for w, _ in split.pre_tokenize_str(text))
    words.update(task["names"] + PLACES + OBJECTS)
    vocab = {token: i for i, token in enumerate([EOS, UNK] + sorted(words))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = split
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, unk_token=UNK,
                                   model_max_length=max_length)


# ---------------------------------------------------------------------------------- data
def held_out_pairs(seed: int, names: list[str], fraction: float = 0.05) -> set[frozenset]:
    """Unordered name pairs never trained on, in either order."""
    pairs = [frozenset(p) for p in itertools.combinations(names, 2)]
    return set(random.Random(f"held-out:{seed}").sample(pairs, round(fraction * len(pairs))))


def pair(candidate) -> frozenset:
    return frozenset((candidate.label["io"], candidate.label["s"]))


def training_texts(n: int, seed: int, held_out: set, task: dict) -> list[str]:
    """n distinct clean prompts + answers from edgeprune's train hash bucket, avoiding held-out pairs."""
    texts, seen = [], set()
    for c in ioi.candidates(task["templates"], 1000 + seed, task["names"]):
        if c.key in seen or pair(c) in held_out or split_of(task["family"], c.key, ioi.FRACTIONS) != "train":
            continue
        seen.add(c.key)
        texts.append(c.clean + c.answer)
        if len(texts) == n:
            return texts


def held_out_prompts(n: int, seed: int, held_out: set, task: dict) -> list:
    """n distinct candidates whose {IO, S} is a held-out pair."""
    out, seen = [], set()
    for c in ioi.candidates(task["templates"], 2000 + seed, task["names"]):
        if pair(c) in held_out and c.key not in seen:
            seen.add(c.key)
            out.append(c)
            if len(out) == n:
                return out


def pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


# ---------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def last_logits(model, rows: list[list[int]], pad_id: int, batch: int = 250) -> torch.Tensor:
    """Logits at each prompt's last token (right padding: causal attention never sees the pad)."""
    out = []
    for i in range(0, len(rows), batch):
        part = rows[i:i + batch]
        logits = model(pad(part, pad_id)).logits
        out.append(logits[torch.arange(len(part)), torch.tensor([len(r) - 1 for r in part])])
    return torch.cat(out)


def answer_figures(logits: torch.Tensor, answers, distractors) -> dict:
    answers, distractors = torch.as_tensor(answers), torch.as_tensor(distractors)
    rows = torch.arange(len(answers))
    return {"accuracy": (logits.argmax(-1) == answers).float().mean().item(),
            "logit_difference": (logits[rows, answers] - logits[rows, distractors]).mean().item(),
            "min_logit_difference": (logits[rows, answers] - logits[rows, distractors]).min().item(),
            "io_probability": logits.softmax(-1)[rows, answers].mean().item()}


def held_out_figures(model, tokenizer, candidates) -> dict:
    rows = tokenizer([c.clean for c in candidates])["input_ids"]
    ids = tokenizer.convert_tokens_to_ids
    return answer_figures(last_logits(model, rows, tokenizer.eos_token_id),
                          [ids(c.label["io"]) for c in candidates], [ids(c.label["s"]) for c in candidates])


def edgeprune_figures(model, tokenizer, task: str = "ioi") -> dict:
    """The full model on edgeprune's test split, and under interchange ablation with every edge pruned."""
    data = edgeprune.tasks.get(task, tokenizer, split="test")
    logits = last_logits(model, [e.clean for e in data], tokenizer.eos_token_id)
    full = answer_figures(logits, [e.answer for e in data], [e.distractor for e in data])
    pm = edgeprune.prunable(model)
    empty = edgeprune.Circuit(graph=pm.graph, edges=[], nodes=list(pm.graph.writers))
    kept = edgeprune.evaluate(pm, None, data, tokenizer=tokenizer)
    pruned = edgeprune.evaluate(pm, empty, data, tokenizer=tokenizer)
    return {"task": task, "n": len(data), **full, "edges": pm.graph.num_edges,
            "all_kept_kl": kept["kl"], "all_kept_accuracy": kept["accuracy"],
            "all_pruned_accuracy": pruned["accuracy"], "all_pruned_logit_difference": pruned["logit_difference"],
            "all_pruned_kl": pruned["kl"]}


# ---------------------------------------------------------------------------------- training
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=OUT)
    p.add_argument("--task", choices=sorted(TASKS), default="ioi", help="the IOI text to train on")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--mlp", type=int, default=512, help="MLP hidden width")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--answer-weight", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    start, load_at_start = time.perf_counter(), os.getloadavg()

    task = TASKS[args.task]
    tokenizer = build_tokenizer(32, task)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=args.width, n_layer=args.layers,
                        n_head=args.heads, n_inner=args.mlp,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config)

    held_out = held_out_pairs(args.seed, task["names"])
    texts = training_texts(args.steps * args.batch, args.seed, held_out, task)
    rows = tokenizer(texts)["input_ids"]
    assert tokenizer.unk_token_id not in {t for r in rows for t in r}, "a training word is missing from the vocabulary"
    probe = held_out_prompts(1000, args.seed, held_out, task)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))

    def lr_at(step):
        if step < args.warmup:
            return (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, "train_log.jsonl"), "w")

    def write(record):
        print(json.dumps(record), flush=True)
        log.write(json.dumps(record) + "\n")

    write({"settings": vars(args) | {"out": os.path.relpath(args.out, ROOT)}, "vocab": len(tokenizer),
           "parameters": sum(p.numel() for p in model.parameters()), "held_out_pairs": len(held_out),
           "training_prompts": len(texts)})
    losses = []
    for step in range(args.steps):
        model.train()
        part = rows[step * args.batch:(step + 1) * args.batch]
        ids = pad(part, tokenizer.eos_token_id)
        lengths = torch.tensor([len(r) for r in part])
        targets = ids[:, 1:].masked_fill(torch.arange(ids.shape[1] - 1) >= (lengths - 1)[:, None], -100)
        logits = model(ids).logits[:, :-1]
        lm = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        answer = F.cross_entropy(logits[torch.arange(len(part)), lengths - 2], ids[torch.arange(len(part)), lengths - 1])
        loss = lm + args.answer_weight * answer
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append((lm.item(), answer.item()))
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            model.eval()
            lm_mean, answer_mean = (sum(x) / len(losses) for x in zip(*losses))
            losses = []
            write({"step": step + 1, "lm_loss": round(lm_mean, 4), "answer_loss": round(answer_mean, 5),
                   "held_out": {k: round(v, 4) for k, v in held_out_figures(model, tokenizer, probe).items()},
                   "seconds": round(time.perf_counter() - start, 1)})

    model.eval()
    train_seconds = time.perf_counter() - start
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    summary = {"held_out_pairs": held_out_figures(model, tokenizer, probe) | {"n": len(probe)},
               **{key: edgeprune_figures(model, tokenizer, name) for key, name in task["reports"].items()},
               "train_seconds": round(train_seconds, 1),
               "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "torch": torch.__version__, "python": platform.python_version(),
                           "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()}}
    write({"summary": summary})
    log.close()


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    main()
