"""The second shipped IOI model (tests/fixtures/ioi-b-gpt2-4x4) solves "ioi-b", IOI on other text.

"ioi-b" fills its own templates with its own names, so a claim checked on both fixtures does not
rest on one model shape or one text distribution. Accuracy and logit difference are read with a
plain transformers forward, independent of edgeprune's; thresholds leave margin under what
scripts/train_ioi_fixture.py measured on the 1000-example test split (see the fixture's
train_log.jsonl).
"""
import re

import pytest
import torch

import edgeprune
from edgeprune.tasks import ioi, words
from helpers.fixtures import ioi_b_gpt2_4x4, ioi_gpt2

N = 200
# Measured by the training script on the 1000 test examples: accuracy 1.0, mean logit difference
# 9.2 (smallest 4.8); every edge pruned: accuracy 0.0, KL 9.8 (the corrupted prompt never contains the IO).
LOGIT_DIFFERENCE = 6.0
PRUNED_ACCURACY = 0.05
PRUNED_KL = 5.0


@pytest.fixture(scope="module")
def fixture():
    model, tokenizer = ioi_b_gpt2_4x4()
    data = edgeprune.tasks.get("ioi-b", tokenizer, split="test", n=N)
    return model, tokenizer, data, edgeprune.prunable(model)


def test_shape_vocabulary_and_graph(fixture):
    model, tokenizer, data, pm = fixture
    cfg = model.config
    assert (cfg.model_type, cfg.n_layer, cfg.n_head, cfg.n_embd) == ("gpt2", 4, 4, 128)
    assert pm.graph.num_edges == edgeprune.num_edges(4, 4, 2) == len(pm.graph.edges)
    assert data.dropped == 0 and len(data) == N
    seen = {t for e in data for t in e.clean + e.corrupted + [e.answer, e.distractor]}
    assert tokenizer.unk_token_id not in seen
    assert [tokenizer.decode([e.answer]) for e in data[:5]] == [e.label["io"] for e in data[:5]]


@torch.no_grad()
def test_solves_ioi_b(fixture):
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


def _pattern(template: str) -> re.Pattern:
    """A regex matching every prompt the template can produce, whatever fills it."""
    return re.compile(re.sub(r"\\\{[A-Z]+\\\}", r"\\w+", re.escape(template)) + r"\Z")


def test_ioi_and_ioi_b_share_no_template_and_no_name(fixture):
    model, tokenizer, data, pm = fixture
    assert not set(words.NAMES) & set(words.NAMES_B)
    ioi_patterns = [_pattern(t) for t in ioi.TEMPLATES]
    b_patterns = [_pattern(t) for t in ioi.TEMPLATES_B]
    for e in data:
        for text, kind in ((e.text, "clean"), (e.corrupted_text, "corrupted")):
            assert not any(p.match(text) for p in ioi_patterns), f"{kind} ioi-b prompt fits an ioi template: {text}"
            assert sum(bool(p.match(text)) for p in b_patterns) == 1
            names = [w for w in re.findall(r"\w+", text) if w[0].isupper()]
            assert not set(names) & set(words.NAMES)
    # the first fixture's task, read the same way, never produces an ioi-b prompt
    for e in edgeprune.tasks.get("ioi", ioi_gpt2()[1], split="test", n=N):
        assert not any(p.match(e.text) for p in b_patterns)


def test_ioi_b_pairs_are_ioi_pairs(fixture):
    """IO once and S twice in the clean prompt; three other ioi-b names (ABC) in the corrupted one."""
    model, tokenizer, data, pm = fixture
    for e in data:
        clean = [w for w in re.findall(r"\w+", e.text) if w in words.NAMES_B]
        corrupted = [w for w in re.findall(r"\w+", e.corrupted_text) if w in words.NAMES_B]
        io, s = e.label["io"], e.label["s"]
        assert sorted(clean) == sorted([io, s, s]) and clean[-1] == s
        assert len(set(corrupted)) == 3 and not set(corrupted) & {io, s}
        assert tokenizer.decode([e.distractor]).strip() == s
    splits = [edgeprune.tasks.get("ioi-b", tokenizer, split=split, n=150) for split in ("train", "validation")]
    train, validation, test = ({e.text for e in d} for d in splits + [data])
    assert not train & validation and not train & test and not validation & test
