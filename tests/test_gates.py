"""The final circuit's two cuts, each against a small example worked by hand (docs/method.md 3.4, 5.1).

P(z = 0) = sigmoid(beta ln(1/11) - log_alpha) = sigmoid(-1.5986 - log_alpha), so
log_alpha -1 -> 0.3547, 2 -> 0.0266; soft mask sigmoid(1.2 log_alpha): -1 -> 0.2315, 2 -> 0.9168.
"""
import pytest
import torch

from edgeprune.gates import bisect_threshold, zero_smallest
from edgeprune.graph import Segment


@pytest.mark.parametrize("soft,target,kept,bracket", [
    # keep 3 of 5 exactly: any tau in [0.2, 0.5) does; the bisection closes on 0.5 from below
    ([0.0, 0.2, 0.5, 0.9, 1.0], 0.4, [2, 3, 4], (0.49, 0.5)),
    # 2.8 of 4 cannot be kept: 3 (sparsity 0.25) is closer to 0.3 than 2 (0.5), so tau < 0.6
    ([0.3, 0.6, 0.7, 0.95], 0.3, [1, 2, 3], (0.599, 0.6)),
    # everything kept, and nothing kept
    ([0.1, 0.4, 0.8], 0.0, [0, 1, 2], (0.0, 0.1)),
    ([0.1, 0.4, 0.8], 1.0, [], (0.8, 1.0)),
])
def test_bisect_threshold_by_hand(soft, target, kept, bracket):
    soft = torch.tensor(soft)
    tau = bisect_threshold(soft, target)
    assert bracket[0] <= tau < bracket[1]
    assert (soft > tau).nonzero().flatten().tolist() == kept


def test_zero_smallest_by_hand():
    # segment a: P(z=0) 0.3547 * 3 + 0.0266 = 1.09 -> 1 zeroed, the first of the three tied smallest
    # segments b and c: 0.3547 + 0.0266 = 0.38 each -> 0 zeroed (1 if they were counted together)
    log_alpha = torch.tensor([-1.0, -1.0, 2.0, -1.0, -1.0, 2.0, -1.0, 2.0])
    soft = torch.sigmoid(1.2 * log_alpha)
    segments = [Segment("a", 0, 1, 4), Segment("b", 4, 1, 2), Segment("c", 6, 1, 2)]
    out = zero_smallest(soft, log_alpha, segments, eps=1e-6)
    expected = soft.clone()
    expected[0] = 0.0
    assert torch.equal(out, expected)
    assert out[1].item() == pytest.approx(0.2315, abs=1e-4) and out[2].item() == pytest.approx(0.9168, abs=1e-4)
    assert torch.equal(soft, torch.sigmoid(1.2 * log_alpha))  # the input is left as it was


def test_final_circuit_lists_only_edges_of_kept_writers():
    """One layer, one head: 8 edges, all with log alpha 5 (kept); node a0.h0 at log alpha -5 is
    pruned (P(z=0) 0.97 rounds to 1 in its segment), so its two edges leave the circuit's list."""
    from edgeprune.circuit import Circuit
    from edgeprune.graph import Graph
    graph = Graph(1, 1, 1, 1)
    assert graph.writers == ["embeds", "a0.h0", "m0"] and graph.num_edges == 8
    circuit = Circuit.from_log_alphas(graph, torch.full((8,), 5.0), torch.tensor([5.0, -5.0, 5.0]))
    assert circuit.nodes == ["embeds", "m0"]
    assert circuit.raw_edges == 8 and circuit.edge_sparsity == 0
    assert sorted(circuit.edges) == sorted(e for e in graph.edges if e[0] != "a0.h0") and len(circuit.edges) == 6
