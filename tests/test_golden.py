"""A fixed training run whose result is recorded: refactors must not change what training computes.

The backend, the CPU instruction set and the thread count are pinned, so the run is bitwise
repeatable on any x86-64 machine with AVX2. Only a change that is meant to change behaviour may
re-record the files, in a commit of its own:

    python tests/test_golden.py --record
"""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

import edgeprune  # noqa: E402
from edgeprune.training import TrainConfig, Trainer  # noqa: E402
from helpers.data import random_pairs  # noqa: E402
from helpers.models import tiny  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
FAMILIES = ("gpt2", "llama")


def run(family: str) -> dict:
    os.environ["EDGEPRUNE_CPU_ISA"] = "avx2"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pm = edgeprune.prunable(tiny(family), backend="cpp")
        with torch.no_grad():  # gates that can move from the first step (log alpha ~ N(1, 1))
            g = torch.Generator().manual_seed(1)
            for p in pm.gates.parameters():
                p.copy_(torch.randn(p.shape, generator=g) + 1.0)
        config = TrainConfig(edge_sparsity=0.6, node_sparsity=0.3, steps=30, batch_size=4, warmup_steps=4,
                             ramp_steps=20, eval_every=0, checkpoint_every=0, seed=0, backend="cpp")
        trainer = Trainer(pm, random_pairs(n=8, seq=7), config)
        losses = [float(trainer.step()["loss"]) for _ in range(config.steps)]
        circuit = trainer.circuit()
    finally:
        torch.set_num_threads(threads)
        os.environ.pop("EDGEPRUNE_CPU_ISA", None)
    return {"edge_log_alpha": pm.gates.edge_log_alpha.detach().clone(),
            "node_log_alpha": pm.gates.node_log_alpha.detach().clone(),
            "lambdas": torch.stack([trainer.lagrangian.multipliers[k].detach() for k in ("edge1", "edge2", "node1", "node2")]),
            "losses": torch.tensor(losses, dtype=torch.float64),
            "edges": circuit.edges, "nodes": circuit.nodes}


def _supported() -> bool:
    try:
        return bool(torch.backends.cpu.get_cpu_capability()) and "avx2" in open("/proc/cpuinfo").read()
    except OSError:
        return False


@pytest.mark.skipif(not _supported(), reason="the golden run pins the AVX2 kernels")
@pytest.mark.parametrize("family", FAMILIES)
def test_training_matches_golden(family):
    want = torch.load(os.path.join(GOLDEN, f"train_{family}.pt"), weights_only=True)
    got = run(family)
    assert got["edges"] == [tuple(e) for e in want["edges"]]
    assert got["nodes"] == want["nodes"]
    # The gates moved (the run is not trivially saturated) ...
    assert (want["edge_log_alpha"] - 1).abs().mean() > 0.05
    # ... and bitwise the same.
    for key in ("edge_log_alpha", "node_log_alpha", "lambdas", "losses"):
        assert torch.equal(got[key], want[key]), key


if __name__ == "__main__" and "--record" in sys.argv:
    os.makedirs(GOLDEN, exist_ok=True)
    for family in FAMILIES:
        result = run(family)
        result["edges"] = [list(e) for e in result["edges"]]
        torch.save(result, os.path.join(GOLDEN, f"train_{family}.pt"))
        print(family, len(result["edges"]), "edges, losses", result["losses"][[0, -1]].tolist())
