"""The generated tasks against locally built tokenizers: shapes of the pairs, answers, splits, seeds."""
import pytest
import torch

from helpers.task_tokenizers import tokenizer_for
from helpers.tokenizers import byte_bpe

import edgeprune.tasks as tasks
from edgeprune.tasks import boolean_expressions, words

GENERATED = ["ioi", "ioi-t1", "greater-than", "gendered-pronoun", "boolean-expressions", "boolean-expressions-instr"]
DEFAULT_SIZES = {"ioi": (200, 200), "ioi-t1": (200, 200), "greater-than": (150, 150),
                 "gendered-pronoun": (150, 150), "boolean-expressions": (8000, 200),
                 "boolean-expressions-instr": (8000, 200)}


def test_names_lists_every_task():
    assert set(GENERATED) <= set(tasks.names())


@pytest.mark.parametrize("kind", ["word", "bpe"])
@pytest.mark.parametrize("name", GENERATED)
def test_pairs_line_up_and_answers_are_right(name, kind):
    tok = tokenizer_for(name, kind)
    data = tasks.get(name, tok, split="validation", n=60, seed=3)
    assert len(data) == 60 and data.split == "validation" and data.task.name == name
    for e in data:
        assert len(e.clean) == len(e.corrupted)
        assert e.clean != e.corrupted
        assert e.positions == [len(e.clean) - 1]  # the last prompt token predicts the answer
        assert e.clean == tok(e.text)["input_ids"] and e.corrupted == tok(e.corrupted_text)["input_ids"]
        _check_answer(name, tok, e)


def _check_answer(name, tok, e):
    answer = tok.decode([e.answer]).strip()
    if name.startswith("ioi"):
        assert answer == e.label["io"] and tok.decode([e.distractor]).strip() == e.label["s"]
        assert e.label["order"] in ("ABBA", "BABA")
        clean_names = [w for w in tok.decode(e.clean).replace(",", " ").replace(".", " ").split() if w in words.NAMES]
        corrupt_names = [w for w in tok.decode(e.corrupted).replace(",", " ").replace(".", " ").split()
                         if w in words.NAMES]
        assert len(clean_names) == 3 and len(set(clean_names)) == 2
        assert len(corrupt_names) == 3 and len(set(corrupt_names)) == 3  # ABC
        assert not set(corrupt_names) & set(clean_names)
        expected = [e.label["io"], e.label["s"], e.label["s"]] if e.label["order"] == "ABBA" \
            else [e.label["s"], e.label["io"], e.label["s"]]
        assert clean_names == expected
    elif name == "greater-than":
        assert answer == f"{e.label:02d}" and 2 <= e.label <= 98
        assert f"17{e.label:02d}" in e.text and "1701" in tok.decode(e.corrupted).replace(" ", "")
    elif name == "gendered-pronoun":
        assert answer == e.label and tok.decode([e.distractor]).strip() == ("she" if e.label == "he" else "he")
        clean_name = [w for w in tok.decode(e.clean).replace(",", " ").split() if w in words.NAMES]
        corrupt_name = [w for w in tok.decode(e.corrupted).replace(",", " ").split() if w in words.NAMES]
        male = words.MALE_NAMES
        assert (clean_name[0] in male) == (e.label == "he") and (corrupt_name[0] in male) != (e.label == "he")
    else:
        assert answer == str(e.label) and tok.decode([e.distractor]).strip() == str(not e.label)
        expression = _expression(name, e.text)
        corrupted = _expression(name, e.corrupted_text)
        assert boolean_expressions.evaluate(expression) == e.label
        assert boolean_expressions.evaluate(corrupted) != e.label


def _expression(name, text):
    if name == "boolean-expressions":
        return text.split("\n")[-1].removesuffix(" is")
    return text.split("<</SYS>>\n\n")[-1].removesuffix(" [/INST] '")


@pytest.mark.parametrize("name", GENERATED)
def test_default_split_sizes_and_no_overlap(name):
    tok = tokenizer_for(name, "bpe")
    train_size, validation_size = DEFAULT_SIZES[name]
    if train_size > 1000:  # keep the test fast: the split function is shared, sizes are checked below
        train = tasks.get(name, tok, split="train", n=300)
    else:
        train = tasks.get(name, tok, split="train")
        assert len(train) == train_size
    validation = tasks.get(name, tok, split="validation")
    test = tasks.get(name, tok, split="test")
    assert len(validation) == validation_size
    assert len(test) == 1000
    texts = [set(e.text for e in d) for d in (train, validation, test)]
    assert all(len(t) == len(d) for t, d in zip(texts, (train, validation, test)))  # distinct prompts
    assert not texts[0] & texts[1] and not texts[0] & texts[2] and not texts[1] & texts[2]
    assert train.dropped == validation.dropped == test.dropped == 0


def test_boolean_default_train_size_is_the_papers():
    assert boolean_expressions.SIZES == {"train": 8000, "validation": 200, "test": 1000}


def test_splits_stay_disjoint_across_seeds():
    tok = tokenizer_for("gendered-pronoun", "word")
    train = {e.text for seed in range(3) for e in tasks.get("gendered-pronoun", tok, "train", seed=seed)}
    test = {e.text for e in tasks.get("gendered-pronoun", tok, "test", seed=7)}
    assert not train & test


@pytest.mark.parametrize("name", GENERATED)
def test_reproducible_by_seed(name):
    tok = tokenizer_for(name, "word")
    a = tasks.get(name, tok, split="train", n=40, seed=1)
    b = tasks.get(name, tok, split="train", n=40, seed=1)
    c = tasks.get(name, tok, split="train", n=40, seed=2)
    assert [(e.clean, e.corrupted, e.answer) for e in a] == [(e.clean, e.corrupted, e.answer) for e in b]
    assert [e.clean for e in a] != [e.clean for e in c]


def test_bos_is_kept_like_llama():
    tok = tokenizer_for("boolean-expressions-instr", "word-bos")
    data = tasks.get("boolean-expressions-instr", tok, split="test", n=10)
    for e in data:
        assert e.clean[0] == e.corrupted[0] == tok.bos_token_id
        assert e.clean == tok(e.text, add_special_tokens=True)["input_ids"]
        assert tok.decode([e.answer]) in ("True", "False")


def test_boolean_formats():
    tok = tokenizer_for("boolean-expressions", "bpe")
    few_shot = tasks.get("boolean-expressions", tok, "test", n=5)[0].text
    lines = few_shot.split("\n")
    assert lines[:3] == boolean_expressions.DEMOS and lines[3].endswith(" is") and len(lines) == 4
    instr = tasks.get("boolean-expressions-instr", tok, "test", n=5)[0].text
    assert instr.startswith("[INST] <<SYS>>\nEvaluate the following boolean expression as either 'True' or 'False'.")
    assert instr.endswith(" [/INST] '") and " is " not in instr.split("<</SYS>>")[1]
    # both formats draw the same expressions
    assert _expression("boolean-expressions", few_shot) == _expression("boolean-expressions-instr", instr)


def test_greater_than_restricts_the_distribution_to_the_digits():
    tok = tokenizer_for("greater-than", "bpe")
    data = tasks.get("greater-than", tok, "validation", n=8)
    vocab = data.task.vocab
    assert len(vocab) == 100 and len(set(vocab)) == 100
    assert [tok.decode([t]) for t in vocab] == [f"{i:02d}" for i in range(100)]
    logits = torch.randn(8, 1, len(tok))
    logp = data.task.log_probs(logits)
    assert logp.shape == (8, 1, 100)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(8, 1))
    torch.testing.assert_close(logp, torch.log_softmax(logits[..., vocab], -1))


def test_greater_than_rejects_a_tokenizer_that_keeps_years_whole():
    from helpers.task_tokenizers import task_texts
    whole_years = byte_bpe(task_texts("greater-than"), vocab_size=1500)  # learns " 1732" as one token
    with pytest.raises(ValueError, match="does not split into '17' \\+ two digits"):
        tasks.get("greater-than", whole_years, "train")


def test_a_tokenizer_that_splits_every_name_is_refused():
    from helpers.task_tokenizers import task_texts
    tiny = byte_bpe(task_texts("ioi"), vocab_size=300)  # hardly any merges: every name splits
    with pytest.raises(ValueError, match="not a single token") as error:
        tasks.get("ioi", tiny, "train")
    assert "cannot express the task" in str(error.value)


def test_pairs_with_split_names_are_dropped_and_counted():
    from helpers.task_tokenizers import task_texts
    rare = {"Sarah", "John", "Michael", "Emma", "Kate", "Tom"}
    texts = [t for t in task_texts("ioi") if not any(name in t for name in rare)]
    tok = byte_bpe(texts, vocab_size=1500, min_frequency=2)
    assert len(tok(" Sarah", add_special_tokens=False)["input_ids"]) > 1
    data = tasks.get("ioi", tok, "train", n=100)
    assert len(data) == 100 and data.dropped > 0 and sum(data.drop_reasons.values()) == data.dropped
    assert not any(name in e.text for e in data for name in rare)


def test_n_larger_than_the_task_can_produce():
    tok = tokenizer_for("greater-than", "word")
    with pytest.raises(ValueError, match="could only build .* n=5000"):
        tasks.get("greater-than", tok, "test", n=5000)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown task 'ioii'.*greater-than.*ioi"):
        tasks.get("ioii", None)
    with pytest.raises(ValueError, match="unknown split"):
        tasks.get("ioi", tokenizer_for("ioi", "word"), split="dev")


@pytest.mark.parametrize("name", ["ioi", "greater-than", "gendered-pronoun", "boolean-expressions"])
def test_metrics_of_a_perfect_circuit(name):
    tok = tokenizer_for(name, "word")
    data = tasks.get(name, tok, "test", n=6)
    batch = data.batch(range(6))
    logits = torch.randn(6, batch.positions.shape[1], len(tok))
    logits[torch.arange(6), 0, batch.answers] += 20  # the answer wins
    out = data.task.metrics(logits, logits.clone(), batch)
    assert set(out) >= {"kl", "exact_match"} and all(v.shape == (6,) for v in out.values())
    torch.testing.assert_close(out["kl"], torch.zeros(6), atol=1e-5, rtol=0)
    assert out["exact_match"].eq(1).all()
    if name == "greater-than":
        assert set(out) >= {"probability_difference", "pd10", "kendall_tau"}
        torch.testing.assert_close(out["kendall_tau"], torch.ones(6))
    else:
        assert out["accuracy"].eq(1).all() and (out["logit_difference"] > 10).all()
