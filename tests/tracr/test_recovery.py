"""Recovering Tracr circuits with the package's fixed settings (demo.recovery's criterion):
no edge outside the weight-support ground truth, every used writer present, the pruned model exact,
for at least two seeds.

Seeds are tried in order until two recover. A run is chaotic in floating point: the same seed can
end differently on another kernel backend or ISA (reverse seed 0 is recovered with the C++ kernels,
AVX-512, AVX2 or generic, but not with EDGEPRUNE_BACKEND=torch). Over seeds 0-9, reverse recovers
7 and xproportion 15 of 16 (edgeprune.tracr.settings), so six tries make a false failure unlikely.
"""
import pytest

from edgeprune.demo import recover

SEEDS = range(6)


@pytest.mark.parametrize("name", ["xproportion", "reverse"])
def test_recovered_for_two_seeds(name):
    recovered, failures = [], []
    for seed in SEEDS:
        circuit, report = recover(name, seed=seed)
        if report["recovered"]:
            assert not report["extra_edges"] and not report["missing_writers"] and report["exact"]
            assert circuit.metrics["accuracy"] == 1.0
            recovered.append(seed)
        else:
            failures.append((seed, report))
        if len(recovered) == 2:
            break
    assert len(recovered) == 2, f"{name}: recovered for seeds {recovered} only; failures: {failures}"
