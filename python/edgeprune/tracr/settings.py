"""Training settings for recovering the Tracr circuits, per program (docs/method.md 4.2, 7).

`edgeprune.train(prog.model, prog.dataset, **SETTINGS[name])`. Both programs train with zero
ablation, the two embedding nodes and no node term, on the whole dataset as one batch. The
paper's own settings (docs/method.md 4.2) ask for sparser circuits than the ground truth (edge
targets 1.02 and 0.92) and run 6,000 and 720 steps; these reach the ground truth in seconds.

- xproportion: target 0.78, just below the ground truth's 7/32 = 0.781, so the multipliers barely
  act and the KL holds every needed edge. Recovered exactly (the 7 ground-truth edges) for 15 of
  16 seeds.
- reverse: target 0.88 (the 11 edges each needed under zero ablation are 0.883). Recovered for 7 of
  seeds 0-9 (0, 1, 4, 5, 6, 8, 9). The failures drop a0 -> m0, which carries the sequence length:
  its KL is a cliff (0 for a gate value z >= 0.875, 0.09 for z <= 0.85, flat on both sides, since
  m0 is a lookup table on the numeric 1 / length), which a pathwise gradient sees only when a sample
  lands in that band. Hence the tiny multiplier learning rate: Adam normalises each log alpha's
  step, so this small pressure still prunes the edges whose KL gradient is exactly zero while
  leaving the cliff edge alone in most runs. docs/method.md 7 records the neighbouring settings
  tried and their recovery rates.
"""
from __future__ import annotations

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
