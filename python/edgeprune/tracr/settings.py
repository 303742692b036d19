"""Training settings for recovering the Tracr circuits, per program (method.md 4.2).

`PAPER` holds the reference run scripts' values, renamed to edgeprune.train's keyword arguments.
The reference disables the node loss for reverse (its node target 0.1 is unused), so
node_sparsity is None there; xproportion trains with the node loss on (target 0.4). Both use zero
ablation and always have the two embedding nodes. The reference's seed is 42.

Ground-truth sparsities (edgeprune.tracr.load(name).ground_truth): reverse 15/94 edges = 0.840
(0.883 for the 11 edges each needed under zero ablation), xproportion 7/32 = 0.781. Both paper
edge targets (1.02, 0.92) ask for sparser circuits than that, and xproportion's node target 0.4
(2.4 of 6 writers) is above its 2 empty writers (a0, m1): the KL term must hold the circuit up.

First CPU trials (edgeprune.train.Trainer, seed as given, eval off; not yet a recovery test):
- xproportion, paper settings, seed 42: pos_embeds pruned as a node, KL 0.021, accuracy 0.32.
- xproportion, node_sparsity None, edge 0.92: seed 42 kept 6 GT edges (tok_embeds -> a1.h0.q
  lost: its KL under the sequence-axis softmax is only 0.004), seed 7 collapsed to 1 edge.
- xproportion, node_sparsity None, edge 0.78: seed 7 exact (all 7 GT edges, none outside);
  seed 42 the same 6 edges as above (the 7th sits at the bisection threshold).
- reverse, paper lr 0.03 / lambda 0.001 with steps cut to 1500: gates do not move (sparsity 0).
  lr 0.1, lambda 0.01, 1500 steps: overshoots to 0.91-0.93 with KL 0.12 (targets 1.02 and 0.88).
  The full 6000-step paper run did not finish in 25 min on the (shared, loaded) 2-core machine.

`SETTINGS` is what edgeprune uses (`edgeprune.train(prog.model, f"tracr-{name}", **SETTINGS[name])`);
it starts as the paper's values. Whoever tunes them for the recovery tests records the change and
why here, keeping them fixed per model (not per seed).
"""
from __future__ import annotations

PAPER: dict[str, dict] = {
    "reverse": {
        "edge_sparsity": 1.02,
        "node_sparsity": None,   # --disable_node_loss (paper's node target 0.1 unused)
        "lr": 0.03,
        "node_lr": 0.03,
        "lambda_lr": 0.001,
        "steps": 6000,
        "warmup_steps": 1500,
        "ramp_steps": 5900,
        "batch_size": 16,
        "eval_every": 64,
        "log_every": 4,
        "ablation": "zero",
        "embedding_nodes": 2,
    },
    "xproportion": {
        "edge_sparsity": 0.92,
        "node_sparsity": 0.4,    # node loss on
        "lr": 1.0,
        "node_lr": 1.0,
        "lambda_lr": 1e-4,
        "steps": 720,
        "warmup_steps": 96,
        "ramp_steps": 640,
        "batch_size": 16,
        "eval_every": 8,
        "log_every": 4,
        "ablation": "zero",
        "embedding_nodes": 2,
    },
}

# What edgeprune uses: short runs on the whole dataset as one batch, zero ablation, no node term.
# xproportion: recovered exactly (the 7 ground-truth edges, accuracy 1.0) for seeds 0 and 1, and
# 15 of 16 seeds in a sweep (lr 0.5, lambda_lr 1e-7, 400 steps). The target 0.78 sits just below
# the ground truth's 0.781, so the multipliers barely act and the KL holds every needed edge.
# reverse: recovered (the 11 needed edges, accuracy 1.0, nothing outside the ground truth) for 7 of
# seeds 0-9 (0, 1, 4, 5, 6, 8, 9); the paper's own settings (PAPER, 6,000 steps) recover seed 0 but
# not seed 1. The failures drop a0 -> m0, the edge that carries the sequence length. Its KL is a
# cliff (measured with every other ground-truth edge open): 0 for a gate value z >= 0.875 and 0.09
# (6 of the 39 inputs reversed wrongly) for z <= 0.85, flat on both sides, because
# m0 is a lookup table that reads the numeric 1/length. A pathwise gradient sees the cliff only
# when a sample lands in that narrow band; a gate pushed below it gets no gradient back. The
# multiplier learning rate is therefore tiny: Adam normalises each log-alpha's step, so even this
# small pressure prunes the edges whose KL gradient is exactly zero (a writer's output and a
# reader's input in disjoint residual dimensions) while leaving the cliff edge alone in most runs.
# Larger multiplier rates (1e-8 at 1,500 steps: 3/8 seeds; 1e-7 at 1,000 steps, no clipping: 1/5)
# prune it more often; smaller ones (3e-9) keep edges outside the ground truth. Neighbours over
# seeds 0-9 (the rest as below): lr 0.15 0/10 (edges outside the ground truth kept), lr 0.25 4/10,
# warmup 100 steps 6/10, batch 20 7/10.
SETTINGS: dict[str, dict] = {
    "reverse": {
        "edge_sparsity": 0.88, "node_sparsity": None, "lr": 0.2, "lambda_lr": 8e-9, "steps": 1000,
        "warmup_steps": 20, "ramp_steps": 700, "batch_size": 39, "eval_every": 0, "log_every": 100,
        "ablation": "zero", "embedding_nodes": 2,
    },
    "xproportion": {
        "edge_sparsity": 0.78, "node_sparsity": None, "lr": 0.5, "lambda_lr": 1e-7, "steps": 400,
        "warmup_steps": 20, "ramp_steps": 250, "batch_size": 256, "eval_every": 0, "log_every": 100,
        "ablation": "zero", "embedding_nodes": 2,
    },
}
