"""The shipped IOI model (tests/fixtures/ioi-gpt2) still does what the scientific tests rely on.

Accuracy and logit difference are read with a plain transformers forward, independent of
edgeprune's; the every-edge-pruned figures come from edgeprune's interchange ablation. Thresholds
leave margin under what scripts/train_ioi_fixture.py measured on the 1000-example test split (see
tests/fixtures/ioi-gpt2/train_log.jsonl).
"""
import pytest
import torch

import edgeprune
from helpers.fixtures import ioi_gpt2

N = 200
# Measured by the training script on the 1000 test examples: mean logit difference 12.5 (smallest
# 6.8); every edge pruned: accuracy 0.0, KL 10.3 (the corrupted prompt never contains the IO).
LOGIT_DIFFERENCE = 8.0
PRUNED_ACCURACY = 0.05
PRUNED_KL = 5.0


@pytest.fixture(scope="module")
def fixture():
    model, tokenizer = ioi_gpt2()
    data = edgeprune.tasks.get("ioi", tokenizer, split="test", n=N)
    return model, tokenizer, data, edgeprune.prunable(model)


def test_shape_vocabulary_and_graph(fixture):
    model, tokenizer, data, pm = fixture
    cfg = model.config
    assert (cfg.model_type, cfg.n_layer, cfg.n_head, cfg.n_embd) == ("gpt2", 6, 8, 128)
    assert pm.graph.num_edges == edgeprune.num_edges(6, 8, 2) == len(pm.graph.edges)
    # every generated word is in the vocabulary, and every pair kept (names are single tokens)
    assert data.dropped == 0 and len(data) == N
    seen = {t for e in data for t in e.clean + e.corrupted + [e.answer, e.distractor]}
    assert tokenizer.unk_token_id not in seen
    assert [tokenizer.decode([e.answer]) for e in data[:5]] == [e.label["io"] for e in data[:5]]


@torch.no_grad()
def test_solves_ioi(fixture):
    model, tokenizer, data, pm = fixture
    batch = data.batch(range(len(data)))
    last = batch.positions[:, 0]
    logits = model(batch.clean, attention_mask=batch.attention_mask).logits[torch.arange(len(data)), last]
    rows = torch.arange(len(data))
    difference = logits[rows, batch.answers] - logits[rows, batch.distractors]
    assert (logits.argmax(-1) == batch.answers).all()
    assert difference.mean() > LOGIT_DIFFERENCE


def test_every_edge_pruned_loses_the_task(fixture):
    model, tokenizer, data, pm = fixture
    empty = edgeprune.Circuit(graph=pm.graph, edges=[], nodes=list(pm.graph.writers))
    pruned = edgeprune.evaluate(pm, empty, data, tokenizer=tokenizer, batch_size=N)
    assert pruned["accuracy"] < PRUNED_ACCURACY
    assert pruned["kl"] > PRUNED_KL
