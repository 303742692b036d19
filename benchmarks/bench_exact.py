"""Exact single-edge patching: one gated forward per edge, or G edges per forward (gate sets).

    python benchmarks/bench_exact.py [--layers 3] [--heads 4] [--width 64] [--batch 8] [--seq 16]
                                     [--sets 0 1 4 16 64] [--rounds 3]

`--sets 0` is one forward per edge through the mixing kernels (flat gates); G >= 1 runs G
single-edge ablations per forward over a G-times repeated batch, the delta stack's gate-set read
(models/delta_stack.py). The variants are timed interleaved, round-robin, and the median round is
reported per edge; every variant's scores are checked equal to the first's.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

import torch

if importlib.util.find_spec("edgeprune") is None:  # a source checkout that was not installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import edgeprune  # noqa: E402
import edgeprune.attribution as attribution  # noqa: E402
from edgeprune.tasks.base import AnswerTask, Example, TaskDataset  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=16)
    p.add_argument("--sets", type=int, nargs="+", default=[0, 1, 4, 16, 64, 256])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    from transformers import AutoModelForCausalLM, GPT2Config
    torch.manual_seed(0)
    vocab = 512
    model = AutoModelForCausalLM.from_config(GPT2Config(
        n_layer=args.layers, n_head=args.heads, n_embd=args.width, n_positions=max(64, args.seq), vocab_size=vocab,
        bos_token_id=0, eos_token_id=0)).eval()
    g = torch.Generator().manual_seed(1)
    examples = [Example(torch.randint(2, vocab, (args.seq,), generator=g).tolist(),
                        torch.randint(2, vocab, (args.seq,), generator=g).tolist(), [args.seq - 1], 3, 4)
                for _ in range(args.batch)]
    data = TaskDataset(AnswerTask(), examples, pad_id=1)
    pm = edgeprune.prunable(model)
    print(f"GPT-2 L={args.layers} H={args.heads} D={args.width}, {pm.graph.num_edges} edges, batch {args.batch} x "
          f"{args.seq} tokens, {torch.get_num_threads()} threads, torch {torch.__version__}")
    times = {s: [] for s in args.sets}
    scores = {}
    for _ in range(args.rounds):
        for sets in args.sets:
            start = time.perf_counter()
            out = attribution.attribute(pm, data, "exact", batch_size=args.batch, exact_sets=sets).edge_scores
            times[sets].append(time.perf_counter() - start)
            scores.setdefault(sets, out)
    first = scores[args.sets[0]]
    for sets in args.sets:
        median = statistics.median(times[sets])
        same = float((scores[sets] - first).abs().max())
        name = "one forward per edge" if sets == 0 else f"{sets} edges per forward"
        print(f"  {name:>24}: {median:7.2f} s, {1000 * median / pm.graph.num_edges:6.2f} ms per edge "
              f"(max |difference| {same:.1e})")


if __name__ == "__main__":
    main()
