"""Recovering Tracr circuits with the package's fixed settings (issue 6's criterion, demo.recovery):
no edge outside the weight-support ground truth, every used writer present, the pruned model exact."""
import pytest

from edgeprune.demo import recover


@pytest.mark.parametrize("name", ["xproportion", "reverse"])
@pytest.mark.parametrize("seed", [0, 1])
def test_recovered(name, seed):
    circuit, report = recover(name, seed=seed)
    assert report["recovered"], report
    assert not report["extra_edges"] and not report["missing_writers"] and report["exact"]
    assert circuit.metrics["accuracy"] == 1.0
