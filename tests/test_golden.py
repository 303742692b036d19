"""A fixed training run whose result is recorded: refactors must not change what training computes.

The backend, the project's CPU instruction set and the thread count are pinned, but torch's own
matrix products still take each CPU's fastest path: an Intel AVX-512 machine and an AMD AVX2 machine
differ in the last bits (about 1e-5 in log alpha after 30 steps). So each kind of machine has its
own recording, `train_{family}.{machine}.pt`, and a run matches its own kind's bitwise; on a kind
with no recording it matches the others' to 1e-4, edges and nodes exactly. Only a change that is
meant to change behaviour may re-record the files, in a commit of its own (on every kind you can):

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
            "lambdas": torch.stack([trainer.pressure.multipliers[k].detach() for k in ("edge1", "edge2", "node1", "node2")]),
            "losses": torch.tensor(losses, dtype=torch.float64),
            "edges": circuit.edges, "nodes": circuit.nodes}


def machine() -> str:
    """The kind of CPU a recording belongs to: its vendor and torch's instruction set on it."""
    with open("/proc/cpuinfo") as f:
        vendor = next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), "unknown")
    return f"{vendor}-{torch.backends.cpu.get_cpu_capability()}"


def recordings(family: str) -> dict[str, dict]:
    """{machine: recorded run} for a family. A machine may be a vendor alone (AuthenticAMD: the first
    recording, made on an AMD EPYC), which then stands for each of its instruction sets."""
    prefix = f"train_{family}."
    return {name[len(prefix):-len(".pt")]: torch.load(os.path.join(GOLDEN, name), weights_only=True)
            for name in sorted(os.listdir(GOLDEN)) if name.startswith(prefix) and name.endswith(".pt")}


def _supported() -> bool:
    try:
        return bool(torch.backends.cpu.get_cpu_capability()) and "avx2" in open("/proc/cpuinfo").read()
    except OSError:
        return False


@pytest.mark.skipif(not _supported(), reason="the golden run pins the AVX2 kernels")
@pytest.mark.parametrize("family", FAMILIES)
def test_training_matches_golden(family):
    recorded = recordings(family)
    assert recorded, f"no recording of the {family} golden run in {GOLDEN}"
    got = run(family)
    for kind, want in recorded.items():
        assert got["edges"] == [tuple(e) for e in want["edges"]], kind
        assert got["nodes"] == want["nodes"], kind
        # The gates moved (the run is not trivially saturated) ...
        assert (want["edge_log_alpha"] - 1).abs().mean() > 0.05
        for key in ("edge_log_alpha", "node_log_alpha", "lambdas", "losses"):
            if machine().startswith(kind):  # ... and bitwise the same on the kind of machine that recorded it
                assert torch.equal(got[key], want[key]), (kind, key)
            else:
                torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-4, msg=f"{kind}: {key}")


if __name__ == "__main__" and "--record" in sys.argv:
    os.makedirs(GOLDEN, exist_ok=True)
    for family in FAMILIES:
        result = run(family)
        result["edges"] = [list(e) for e in result["edges"]]
        torch.save(result, os.path.join(GOLDEN, f"train_{family}.{machine()}.pt"))
        print(family, len(result["edges"]), "edges, losses", result["losses"][[0, -1]].tolist())
