"""Per-layer counts of a training step's host work: autograd nodes and ATen operator calls (each a
kernel launch on a GPU, or a CPU kernel), for edgeprune's step and the plain HF step; with
--compiled, also the calls of edgeprune's compiled step.

    python benchmarks/op_counts.py [--layers 4 8 12] [--compiled]

The counts are exact and machine-independent (unlike timings): every operator the dispatcher runs in
the forward and in the backward (a TorchDispatchMode), and the nodes of the loss's autograd graph.
The per-layer figure is the slope over the layer counts, so the embeddings, the unembedding and the
loss drop out. GPT-2 small's heads (12) and a tiny width, as benchmarks/step.py's host-gpt2-small.

The compiled step (TrainConfig(compile="on")) runs its graphs without the dispatcher seeing each
operator, so its calls are counted with cProfile over one step: the kernels inductor generated,
and the library calls its code makes (matmuls, attention's batched matmuls, concatenations and
edgeprune's custom ops; on a GPU each is one kernel launch, or a few). Its autograd graph is one
node for the whole objective.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import TrainStep  # noqa: E402


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def autograd_nodes(root) -> int:
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(fn for fn, _ in node.next_functions)
    return len(seen)


def _step(layers: int, **config):
    from transformers import AutoModelForCausalLM, GPT2Config
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=layers, n_head=12, n_embd=48, vocab_size=256,
                                                        n_positions=64))
    ids, cids = torch.randint(0, 256, (2, 8)), torch.randint(0, 256, (2, 8))
    return model, ids, cids, TrainStep.build(model, ids, cids, torch.full((2,), 7), edge_sparsity=0.98,
                                             eval_every=0, **config)


_KERNEL = re.compile(r"kernel\.kernel>$")                       # a kernel inductor generated (CPU)
_LIBRARY = re.compile(r"^<built-in method torch\.(mm|bmm|addmm|baddbmm|cat|_ops\.edgeprune\.)")


def compiled_counts(layers: int) -> dict[str, int]:
    """Calls per step of the compiled step (cProfile over one step, after two that compile)."""
    _, _, _, step = _step(layers, compile="on")
    step.step()
    step.step()
    profile = cProfile.Profile()
    profile.runcall(step.step)
    kernels = library = 0
    for (_, _, name), (calls, *_rest) in pstats.Stats(profile).stats.items():
        kernels += calls if _KERNEL.search(name) else 0
        library += calls if _LIBRARY.search(name) else 0
    return {"compiled: inductor kernels": kernels, "compiled: library calls (matmuls, cat, edgeprune ops)": library}


def counts(layers: int) -> dict[str, int]:
    model, ids, cids, step = _step(layers)
    t = step.trainer
    step.step()
    out = {}
    with CountOps() as mode:
        terms = t.train_step.objective(t.data.batch(t.order(1)), 1)
    out["edgeprune forward ops"] = sum(mode.ops.values())
    out["edgeprune autograd nodes"] = autograd_nodes(terms["loss"].grad_fn)
    with CountOps() as mode:
        terms["loss"].backward()
    out["edgeprune backward ops"] = sum(mode.ops.values())

    # the plain HF step: clean and corrupted forwards without gradient, one forward and backward
    for p in model.parameters():
        p.requires_grad_(True)
    with CountOps() as mode:
        with torch.no_grad():
            model(ids), model(cids)
        logits = model(ids).logits[:, -1]
        loss = torch.nn.functional.kl_div(logits.log_softmax(-1), logits.detach().log_softmax(-1), log_target=True,
                                          reduction="batchmean")
    out["plain forward ops"] = sum(mode.ops.values())
    out["plain autograd nodes"] = autograd_nodes(loss.grad_fn)
    with CountOps() as mode:
        loss.backward()
    out["plain backward ops"] = sum(mode.ops.values())
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, nargs="+", default=[4, 8, 12])
    p.add_argument("--compiled", action="store_true", help="also count the compiled step's calls (compiles once "
                   "per layer count: minutes on a CPU)")
    args = p.parse_args()
    rows = {layers: counts(layers) | (compiled_counts(layers) if args.compiled else {}) for layers in args.layers}
    first, last = args.layers[0], args.layers[-1]
    print(f"| count | per layer (slope, {first} to {last} layers) | total at {last} layers |")
    print("|---|---|---|")
    for key in rows[last]:
        slope = (rows[last][key] - rows[first][key]) / (last - first)
        print(f"| {key} | {slope:.1f} | {rows[last][key]} |")


if __name__ == "__main__":
    main()
