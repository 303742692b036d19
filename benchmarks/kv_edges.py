"""What key and value edges per query head cost: kv_edges="query" against "group" on one model.

    python benchmarks/kv_edges.py [--layers 4] [--heads 8] [--kv-heads 2] [--width 256] [--batch 8]
                                  [--seq 32] [--rounds 5] [--threads N]

A random-weight Llama of the given shape (one embedding node, fp32). Three workloads, each timed
for both graphs back to back in each round; the table gives the median time of each and the median
of the rounds' ratios:
- train step: the gated forward and backward under gates in (0, 1) (the readers recomputed in
  backward, the default), what each training step runs;
- eval forward: the gated forward without gradients under a binary circuit (curves, evaluation);
- EAP: attribute(method="eap") over the batch (one forward and backward at every gate 1).
With K/V readers per query head each layer mixes, norms and projects H + 2H readers instead of
H + 2K, and attention runs with H key-value heads instead of K.
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


def workloads(pm, ids, cids, data):
    """{name: a function that runs the workload once} for one prunable model."""
    g = torch.Generator().manual_seed(0)
    soft = torch.rand(pm.graph.num_edges, generator=g).requires_grad_()
    binary = (torch.rand(pm.graph.num_edges, generator=g) < 0.1).float()
    nodes = torch.ones(pm.graph.num_writers)
    record = pm.record(cids)
    positions = torch.full((ids.shape[0], 1), ids.shape[1] - 1)

    def train_step():
        out = pm(ids, None, positions, edges=soft, nodes=nodes, record=record)
        out.float().logsumexp(-1).sum().backward()
        soft.grad = None

    def eval_forward():
        with torch.no_grad():
            pm(ids, None, positions, edges=binary, nodes=nodes, record=record)

    def eap():
        attribution.attribute(pm, data, "eap", batch_size=ids.shape[0])

    return {"train step": train_step, "eval forward": eval_forward, "EAP": eap}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, LlamaConfig
    torch.manual_seed(0)
    vocab = 512
    model = AutoModelForCausalLM.from_config(LlamaConfig(
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        hidden_size=args.width, intermediate_size=3 * args.width, vocab_size=vocab, max_position_embeddings=256,
        bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, vocab, (args.batch, args.seq), generator=g)
    cids = torch.randint(2, vocab, (args.batch, args.seq), generator=g)
    data = TaskDataset(AnswerTask(), [Example(ids[i].tolist(), cids[i].tolist(), [args.seq - 1], 3, 4)
                                      for i in range(args.batch)], pad_id=1)
    models = {kv: edgeprune.prunable(model, embedding_nodes=1, kv_edges=kv) for kv in ("group", "query")}
    print(f"Llama L={args.layers} H={args.heads} K={args.kv_heads} D={args.width}, batch {args.batch} x {args.seq} "
          f"tokens, fp32, {torch.get_num_threads()} threads, torch {torch.__version__}; edges: "
          + ", ".join(f"{kv} {pm.graph.num_edges}" for kv, pm in models.items()))
    runs = {kv: workloads(pm, ids, cids, data) for kv, pm in models.items()}
    times = {(kv, name): [] for kv in runs for name in runs[kv]}
    for kv in runs:                      # warm-up: first calls allocate and load
        for fn in runs[kv].values():
            fn()
    for _ in range(args.rounds):
        for name in runs["group"]:
            for kv in runs:
                start = time.perf_counter()
                runs[kv][name]()
                times[kv, name].append(time.perf_counter() - start)
    # the ratio of each round's two timings (taken back to back), then its median: steadier than the
    # ratio of the medians on a machine that other jobs load
    print(f"{'workload':<14} {'group ms':>9} {'query ms':>9} {'query / group':>14}")
    for name in runs["group"]:
        a, b = (statistics.median(times[kv, name]) * 1e3 for kv in ("group", "query"))
        ratio = statistics.median(q / g for g, q in zip(times["group", name], times["query", name]))
        print(f"{name:<14} {a:>9.1f} {b:>9.1f} {ratio:>14.2f}")


if __name__ == "__main__":
    main()
