"""Inputs shared by the FSDP test and its torchrun worker, so both sides build the same run."""
import torch
from helpers.data import random_pairs
from helpers.models import VOCAB

# 9 examples in batches of 4: every epoch ends with a one-example batch, so one rank has no example
# of its own (it runs one with weight 0). Checkpointing on: FSDP's hooks and recomputation compose.
TRAIN_KW = {"edge_sparsity": 0.5, "steps": 6, "batch_size": 4, "warmup_steps": 2, "ramp_steps": 4, "eval_every": 0,
                "log_every": 1, "checkpoint_every": 3, "progress": False, "checkpointing": True, "seed": 3}

FROM_PATH = ("llama", "gpt2")  # families trained from a saved folder (weights read on rank 0 only)


def trainer_for(pm, dist=None, **overrides):
    """A Trainer whose gates start unsaturated (log alpha ~ N(0, 1)), so the KL term moves them.

    (train() starts them at 10, where almost every sampled gate is clamped at 1 for many steps.)
    """
    from edgeprune.recomputation import checkpointed
    from edgeprune.training import TrainConfig, Trainer
    with torch.no_grad():
        for p in pm.gates.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    kw = {k: v for k, v in TRAIN_KW.items() if k != "progress"} | overrides
    if kw["checkpointing"]:   # as training.prepare sets it up
        pm.set_layer_runner(checkpointed(pm.layer_runner))
    return Trainer(pm, train_data(), TrainConfig(**kw), dist=dist)


def train_data():
    return random_pairs(n=9, seq=6, seed=5)


def hook_inputs(pm):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, VOCAB, (2, 7), generator=g)
    record_ids = torch.randint(2, VOCAB, (2, 7), generator=g)
    edges = torch.rand(pm.graph.num_edges, generator=g).requires_grad_()
    nodes = torch.rand(pm.graph.num_writers, generator=g).requires_grad_()
    weights = torch.randn(2, 7, VOCAB, generator=g)
    return ids, record_ids, edges, nodes, weights
