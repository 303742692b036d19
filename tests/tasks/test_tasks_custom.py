"""The custom JSONL format: {"clean": "<prompt> <predict>answer</predict>", "corrupted": ..., "split": ...}."""
import json

import pytest
import torch

from helpers.tokenizers import byte_bpe, word_level

import edgeprune.tasks as tasks

ITEMS = [
    {"clean": "The capital of France is <predict>Paris</predict>", "corrupted": "The capital of Italy is",
     "split": "train"},
    {"clean": "The capital of Spain is <predict>Madrid</predict>", "corrupted": "The capital of Japan is",
     "split": "validation"},
    {"clean": "When Mary and John met, John gave a book to <predict>Mary Smith</predict>.",
     "corrupted": "When Anna and Paul met, Mark gave a book to", "split": "test"},
    {"clean": "The capital of Peru is <predict>Lima</predict>", "corrupted": "The capital of Chile is"},
]
CORPUS = [item["clean"].replace("<predict>", "").replace("</predict>", "") for item in ITEMS] + \
         [item["corrupted"] for item in ITEMS]


@pytest.fixture(scope="module", params=["word", "bpe"])
def tok(request):
    return word_level(CORPUS) if request.param == "word" else byte_bpe(CORPUS * 20, vocab_size=400)


def test_positions_cover_the_answer(tok):
    data = tasks.load(ITEMS, tok, split="test")
    assert [e.text for e in data] == [ITEMS[2]["clean"], ITEMS[3]["clean"]]  # its own split + unsplit items
    e = data[0]
    prompt = tok("When Mary and John met, John gave a book to")["input_ids"]
    through = tok("When Mary and John met, John gave a book to Mary Smith")["input_ids"]
    assert e.clean == tok("When Mary and John met, John gave a book to Mary Smith.")["input_ids"]
    assert e.positions == list(range(len(prompt) - 1, len(through) - 1))
    assert len(e.positions) >= 2  # a multi-token answer: one position per answer token
    assert e.answer == through[len(prompt)] and e.label == through[len(prompt):]
    # the corrupted prompt alone, padded with the pad id (EOS here) to the clean length
    corrupted = tok("When Anna and Paul met, Mark gave a book to")["input_ids"]
    assert e.corrupted == corrupted + [tok.eos_token_id] * (len(e.clean) - len(corrupted))
    assert data.task.name == "custom" and data.task.position_reduction == "mean"


def test_split_is_honoured_and_items_without_one_are_in_every_split(tok):
    assert [e.text for e in tasks.load(ITEMS, tok, split="train")] == [ITEMS[0]["clean"], ITEMS[3]["clean"]]
    assert [e.text for e in tasks.load(ITEMS, tok, split="validation")] == [ITEMS[1]["clean"], ITEMS[3]["clean"]]
    unsplit = [{k: v for k, v in item.items() if k != "split"} for item in ITEMS]
    assert len(tasks.load(unsplit, tok, split="train")) == len(tasks.load(unsplit, tok, split="test")) == 4


def test_jsonl_file(tmp_path, tok):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in ITEMS) + "\n\n")
    from_file = tasks.load(str(path), tok, split="train")
    from_list = tasks.load(ITEMS, tok, split="train")
    assert [e.clean for e in from_file] == [e.clean for e in from_list]
    assert len(tasks.load(path, tok, split="train", n=1)) == 1  # a pathlib.Path works too
    with pytest.raises(ValueError, match="n=3 is more than the 2 'train' examples"):
        tasks.load(str(path), tok, split="train", n=3)


def test_mismatched_lengths_name_the_line(tmp_path, tok):
    items = ITEMS[:1] + [{"clean": "The capital of France is <predict>Paris</predict>",
                          "corrupted": "The big capital city of Italy is"}]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in items))
    with pytest.raises(ValueError, match=r"bad.jsonl, example 1 \(line 2\): the clean prompt has \d+ tokens but "
                                         r"the corrupted prompt has \d+.*The big capital city of Italy is"):
        tasks.load(str(path), tok)
    with pytest.raises(ValueError, match="custom data, example 1: the clean prompt has"):
        tasks.load(items, tok)


def test_malformed_items_are_explained(tok):
    with pytest.raises(ValueError, match="example 0: 'clean' must contain one <predict>answer</predict> span"):
        tasks.load([{"clean": "no tags here", "corrupted": "no tags here"}], tok)
    with pytest.raises(ValueError, match="string fields 'clean' and 'corrupted'"):
        tasks.load([{"clean": "The capital of France is <predict>Paris</predict>"}], tok)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        tasks.load([dict(ITEMS[0], split="dev")], tok)
    with pytest.raises(ValueError, match="corrupted prompt only"):
        tasks.load([dict(ITEMS[0], corrupted="The capital of Italy is <predict>Rome</predict>")], tok)
    with pytest.raises(ValueError, match="has no 'test' examples"):
        tasks.load(ITEMS[:2], tok, split="test")


def test_custom_metrics(tok):
    data = tasks.load(ITEMS, tok, split="test")
    batch = data.batch([0, 1])
    P = batch.positions.shape[1]
    logits = torch.randn(2, P, len(tok))
    for row, targets in enumerate(batch.labels):  # make the clean answer the argmax everywhere
        for j, token in enumerate(targets):
            logits[row, j, token] += 50
    out = data.task.metrics(logits, logits.clone(), batch)
    assert out["accuracy"].tolist() == [1.0, 1.0] and out["exact_match"].tolist() == [1.0, 1.0]
    torch.testing.assert_close(out["kl"], torch.zeros(2), atol=1e-5, rtol=0)


def test_a_bad_validation_line_is_reported_not_dropped(tmp_path, tok):
    """Only a missing validation split is optional; a malformed validation item is an error."""
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(ITEMS[0]) + "\n" + json.dumps({"clean": "no tags", "corrupted": "x",
                                                              "split": "validation"}) + "\n")
    assert tasks.load_split(str(path), tok, "test") is None
    with pytest.raises(ValueError, match=r"pairs\.jsonl, example 1 \(line 2\): 'clean' must contain one <predict>"):
        tasks.load_split(str(path), tok, "validation")


def test_counterfactual_answer_is_the_logit_differences_distractor(tok):
    items = [dict(ITEMS[0], counterfactual=" Rome"), dict(ITEMS[3])]
    data = tasks.load(items, tok, split="train")
    through = tok("The capital of France is Rome")["input_ids"]
    prompt = tok("The capital of France is")["input_ids"]
    assert data[0].distractor == through[len(prompt)] != data[0].answer
    assert data[1].distractor is None
    batch = data.batch([0])
    logits = torch.zeros(1, batch.positions.shape[1], len(tok))
    logits[0, 0, data[0].answer], logits[0, 0, data[0].distractor] = 3.0, 1.0
    assert data.task.metrics(logits, logits, batch)["logit_difference"].tolist() == [2.0]
