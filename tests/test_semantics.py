"""What the objective and the evaluation mean, checked on the trained IOI fixture against hand
computations from plain transformers forwards:

- the training loss is KL(full || circuit) at the task's answer position, not over the prompt;
- a pruned edge carries the writer's value on the corrupted prompt, not the clean one: with no edge
  kept (and GPT-2's embeddings among the writers, docs/method.md 1.1) the circuit is the model run
  on the corrupted prompt (docs/method.md 2.3), in evaluate and in the faithfulness curves.
"""
import copy

import pytest
import torch

import edgeprune
from edgeprune import curves
from edgeprune.training import TrainConfig, Trainer
from helpers.fixtures import ioi_gpt2

N = 12


@pytest.fixture(scope="module")
def ioi():
    model, tokenizer = ioi_gpt2()
    data = edgeprune.tasks.get("ioi", tokenizer, split="test", n=N)
    batch = data.batch(range(N))
    # IOI's answer follows the prompt: the last prompt token is where it is predicted (prompts are
    # right-padded). Read from the examples themselves, not from the task's positions.
    last = torch.tensor([len(e.clean) - 1 for e in data])
    assert (batch.attention_mask.sum(-1) == last + 1).all()
    return model, tokenizer, data, batch, last


def _kl(full_logits, circuit_logits):
    """KL(full || circuit) over the vocabulary, in float64, per leading index."""
    p, q = full_logits.double().log_softmax(-1), circuit_logits.double().log_softmax(-1)
    return (p.exp() * (p - q)).sum(-1)


@torch.no_grad()
def _logits(model, ids, mask):
    return model(ids, attention_mask=mask).logits


def test_the_training_loss_is_the_kl_at_the_answer_position(ioi):
    """The first step's logged KL equals the mean over examples of KL(full || circuit) at each
    prompt's last token, under that step's sampled gates and the corrupted run's writers; the KL
    averaged over every prompt position is far from it."""
    model, tokenizer, data, batch, last = ioi
    pm = edgeprune.prunable(model)
    trainer = Trainer(pm, data, TrainConfig(edge_sparsity=0.5, steps=10, batch_size=N, warmup_steps=1, ramp_steps=5,
                                            compile="off"))
    with torch.no_grad():  # gates strictly between 0 and 1 for many edges: a circuit unlike the model
        pm.gates.edge_log_alpha.normal_(0, 1, generator=torch.Generator().manual_seed(1))
    gates = copy.deepcopy(pm.gates)                 # as the first step samples them, before its update
    logged = float(trainer.step()["kl"])

    edges, nodes = gates.sample(trainer.config.seed, 0)
    rows = torch.arange(N)
    with torch.no_grad():
        record = pm.record(batch.corrupted, batch.attention_mask)
        circuit = pm(batch.clean, batch.attention_mask, edges=edges, nodes=nodes, record=record)   # every position
    per_position = _kl(_logits(model, batch.clean, batch.attention_mask), circuit)             # (N, S)
    at_answer = float(per_position[rows, last].mean())
    mask = batch.attention_mask.double()
    everywhere = float(((per_position * mask).sum(-1) / mask.sum(-1)).mean())

    assert logged == pytest.approx(at_answer, rel=1e-4, abs=1e-6)
    assert at_answer > 0.05
    assert abs(everywhere - at_answer) > 0.2 * at_answer, (everywhere, at_answer)


def test_evaluation_ablates_pruned_edges_with_the_corrupted_run(ioi):
    """The empty circuit's KL, logit difference and accuracy are those of the model run on the
    corrupted prompt; ablating with the clean run instead would give the full model (KL 0)."""
    model, tokenizer, data, batch, last = ioi
    rows = torch.arange(N)
    full = _logits(model, batch.clean, batch.attention_mask)[rows, last]
    corrupted = _logits(model, batch.corrupted, batch.attention_mask)[rows, last]
    want_kl = float(_kl(full, corrupted).mean())
    want_difference = float((corrupted[rows, batch.answers] - corrupted[rows, batch.distractors]).mean())
    want_accuracy = float((corrupted.argmax(-1) == batch.answers).double().mean())

    pm = edgeprune.prunable(model)           # GPT-2: the token and position embeddings are writers (E=2)
    empty = edgeprune.Circuit(graph=pm.graph, edges=[], nodes=list(pm.graph.writers))
    got = edgeprune.evaluate(pm, empty, data, tokenizer=tokenizer, batch_size=N)
    assert got["kl"] == pytest.approx(want_kl, rel=1e-4)
    assert got["logit_difference"] == pytest.approx(want_difference, rel=1e-4, abs=1e-4)
    assert got["accuracy"] == want_accuracy

    # What a clean-run ablation would give: the full model, nothing like the figures above.
    edges, nodes = pm.circuit_gates([])
    with torch.no_grad():
        clean_ablated = pm(batch.clean, batch.attention_mask, batch.positions, edges=edges, nodes=nodes,
                           record=pm.record(batch.clean, batch.attention_mask))[:, 0]
    assert float(_kl(full, clean_ablated).mean()) < 1e-6 < 1.0 < want_kl


def test_faithfulness_is_normalised_by_the_corrupted_run(ioi):
    """circuit_faithfulness = (m(C) - m(empty)) / (m(full) - m(empty)) with m the logit difference,
    m(full) the clean run's and m(empty) the corrupted run's, both from plain transformers forwards."""
    model, tokenizer, data, batch, last = ioi
    rows = torch.arange(N)
    pm = edgeprune.prunable(model)
    # half the edges; a reader's two embedding edges kept together (MIB's graph, which the curves
    # score in, has one input node for both)
    draw = torch.rand(pm.graph.num_edges, generator=torch.Generator().manual_seed(0)).tolist()
    kept = dict(zip(pm.graph.edges, draw))
    edges = [(w, r) for w, r in pm.graph.edges if kept[("tok_embeds" if w == "pos_embeds" else w, r)] < 0.5]
    circuit = edgeprune.Circuit(graph=pm.graph, edges=edges, nodes=list(pm.graph.writers))

    def m(logits):
        return float((logits[rows, batch.answers] - logits[rows, batch.distractors]).mean())
    m_full = m(_logits(model, batch.clean, batch.attention_mask)[rows, last])
    m_empty = m(_logits(model, batch.corrupted, batch.attention_mask)[rows, last])
    edges, nodes = pm.circuit_gates(circuit.edges)
    with torch.no_grad():
        m_circuit = m(pm(batch.clean, batch.attention_mask, batch.positions, edges=edges, nodes=nodes,
                         record=pm.record(batch.corrupted, batch.attention_mask))[:, 0])

    got = curves.circuit_faithfulness(pm, circuit, data, metric="logit_diff", tokenizer=tokenizer, batch_size=N)
    assert got == pytest.approx((m_circuit - m_empty) / (m_full - m_empty), rel=1e-4)
    assert abs(m_full - m_empty) > 1.0
