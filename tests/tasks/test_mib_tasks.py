"""MIB's tasks from MIB's own data files (edgeprune.tasks.mib): small files written here in MIB's schema
(the columns MIB_circuit_track/dataset.py reads, nested as the hub's rows are), read back as MIB's
circuit track pairs them; and the fixture's IOI examples written in MIB's IOI schema give the same
faithfulness curve as the built-in task on the same examples."""
import json
import sys
import types

import pytest
import torch

import edgeprune
from edgeprune.tasks import mib
from edgeprune.tasks.words import NAMES
from helpers.fixtures import ioi_gpt2
from helpers.tokenizers import word_level


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def ioi_row(prompt, corrupted, io, s, c="Carl"):
    flip = {"prompt": corrupted, "choices": [s, io], "answerKey": 0, "metadata": {"indirect_object": s, "subject": io}}
    return {"prompt": prompt, "choices": [io, s], "answerKey": 0, "template": "t",
            "metadata": {"indirect_object": io, "subject": s, "random_c": c},
            "s2_io_flip_counterfactual": flip, "abc_counterfactual": {"prompt": "x y z", "choices": ["q"], "answerKey": 0}}


def choice_row(prompt, labels, key, cf_prompt, cf_key):
    choices = {"label": labels, "text": [f"t{i}" for i in range(len(labels))]}
    return {"prompt": prompt, "choices": choices, "answerKey": key, "question": "q", "idx": 0,
            "symbol_counterfactual": {"prompt": cf_prompt, "choices": choices, "answerKey": cf_key},
            "noun_counterfactual": {"prompt": "wrong", "choices": choices, "answerKey": 0}}


def arithmetic_row(prompt, label, operator, cf_prompt, cf_label):
    return {"prompt": prompt, "label": label, "operator": operator, "num_digit": 2, "idx": 0, "template": "t",
            "random_counterfactual": None if cf_prompt is None else {"prompt": cf_prompt, "label": cf_label}}


@pytest.fixture(scope="module")
def tok():
    words = ["Then Mary and John went home . John gave a book to Anna and Paul Carl Mary-Ann",
             "Question : Answer : A B C D 1 2 3 What is 12 + 30 = 25 - 7 42 18 9 Anna"]
    return word_level(words * 3, split_digit_pairs=True)


def test_each_task_reads_mibs_columns_and_pairs_as_mib_does(tmp_path, tok):
    root = tmp_path / "mib"
    write_jsonl(root / "ioi" / "test.jsonl", [
        ioi_row("Then Mary and John went home . John gave a book to", "Then Anna and Paul went home . Mary gave a book to",
                "Mary", "John"),
        ioi_row("Then Mary and John went home . John gave a book to", "Then John and Mary went home . Mary gave a book to",
                "Mary", "John", c="Mary-Ann"),                                   # random_c of 3 tokens: MIB drops it
        ioi_row("Then Anna and Paul went home . Paul gave a book to", "Then Paul and Anna went home . Anna gave a book to",
                "Anna", "Paul")])
    write_jsonl(root / "copycolors_mcqa" / "4_answer_choices" / "train.jsonl", [
        choice_row("Question : A B C D Answer :", ["A", "B", "C", "D"], 2, "Question : D C B A Answer :", 1)])
    write_jsonl(root / "arithmetic_subtraction" / "data" / "validation-00000-of-00001.jsonl", [
        arithmetic_row("What is 25 - 7 =", 18, "-", "What is 12 - 3 =", 9),
        arithmetic_row("What is 12 + 30 =", 42, "+", "What is 25 + 7 =", 32),        # the other operator
        arithmetic_row("What is 125 - 7 =", 118, "-", "What is 12 - 3 =", 9),        # a two-token label
        arithmetic_row("What is 25 - 7 =", 18, "-", None, None)])                   # no counterfactual
    write_jsonl(root / "arc_easy" / "test.jsonl", [
        choice_row("Question : What is 1 Answer :", ["A", "B"], 1, "Question : What is 2 Answer :", 0),
        choice_row("Question : What is 1 Answer :", ["1", "123"], 0, "Question : What is 2 Answer :", 1)])

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    data = mib.dataset("ioi", tok, split="test", path=root)
    assert data.task.name == "mib-ioi" and len(data) == 2 and data.dropped == 1
    first = data[0]
    assert first.clean == ids("Then Mary and John went home . John gave a book to")
    assert first.corrupted == ids("Then Anna and Paul went home . Mary gave a book to")
    assert (first.answer, first.distractor) == (ids(" Mary")[0], ids(" John")[0])   # IO and S of the clean row
    assert first.positions == [len(first.clean) - 1]
    assert mib.dataset("ioi", tok, split="test", path=root, n=1).examples == data.examples[:1]  # the first n rows

    mcqa = mib.dataset("mcqa", tok, split="train", path=root)
    assert (mcqa[0].answer, mcqa[0].distractor) == (ids("C")[0], ids("B")[0])       # labels, no leading space

    sub = mib.dataset("arithmetic-subtraction", tok, split="validation", path=root)
    assert len(sub) == 1 and sub.dropped == 3 and (sub[0].answer, sub[0].distractor) == (ids("18")[0], ids("9")[0])
    assert set(sub.drop_reasons) == {"an arithmetic row whose operator is not '-' (MIB's filter)",
                                     "an answer that is not one token (MIB's filter)",
                                     "no counterfactual prompt (MIB's filter)"}

    arc = mib.dataset("arc-easy", tok, split="test", path=root)
    assert len(arc) == 1 and arc.drop_reasons == {"answers of unequal token lengths (MIB's filter)": 1}
    assert (arc[0].answer, arc[0].distractor) == (ids("B")[0], ids("A")[0])


def test_the_registered_names_read_the_folder_in_the_environment(tmp_path, tok, monkeypatch):
    assert {f"mib-{t}" for t in mib.TASKS} <= set(edgeprune.tasks.names())
    write_jsonl(tmp_path / "ioi" / "train.jsonl", [ioi_row("Then Mary and John went home . John gave a book to",
                                                           "Then Anna and Paul went home . Mary gave a book to",
                                                           "Mary", "John")])
    monkeypatch.setenv(mib.ENVIRONMENT, str(tmp_path))
    assert len(edgeprune.tasks.load("mib-ioi", tok)) == 1
    assert edgeprune.tasks.load_split("mib-ioi", tok, "validation") is None         # no such file: no split
    with pytest.raises(ValueError, match=r"no MIB dataset folder .*arc_challenge.*huggingface-cli download mib-bench/arc_challenge"):
        edgeprune.tasks.load("mib-arc-challenge", tok)
    monkeypatch.delenv(mib.ENVIRONMENT)
    with pytest.raises(ValueError, match=f"set {mib.ENVIRONMENT} to the folder"):
        edgeprune.tasks.load("mib-ioi", tok)


def test_parquet_shards_are_read_in_order(tmp_path, tok, monkeypatch):
    """The hub's shards data/<split>-0000i-of-0000n.parquet, read with pyarrow (a stand-in here)."""
    folder = tmp_path / "ioi" / "data"
    folder.mkdir(parents=True)
    rows = {"test-00001-of-00002.parquet": [ioi_row("Then Anna and Paul went home . Paul gave a book to",
                                                    "Then Paul and Anna went home . Anna gave a book to", "Anna", "Paul")],
            "test-00000-of-00002.parquet": [ioi_row("Then Mary and John went home . John gave a book to",
                                                    "Then Anna and Paul went home . Mary gave a book to", "Mary", "John")]}
    for name in rows:
        (folder / name).write_bytes(b"PAR1")
    parquet = types.ModuleType("pyarrow.parquet")
    parquet.read_table = lambda path: types.SimpleNamespace(to_pylist=lambda: rows[path.rsplit("/", 1)[-1]])
    monkeypatch.setitem(sys.modules, "pyarrow", types.ModuleType("pyarrow"))
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", parquet)
    data = mib.dataset("ioi", tok, split="test", path=tmp_path)
    assert [e.label["answer"] for e in data] == [" Mary", " Anna"]


def test_the_fixtures_ioi_through_mibs_loader_gives_the_built_in_curve(tmp_path):
    model, tok = ioi_gpt2()
    built_in = edgeprune.tasks.get("ioi", tok, split="test", n=24)
    others = [n for n in NAMES]
    rows = [ioi_row(e.text, e.corrupted_text, e.label["io"], e.label["s"],
                    c=next(n for n in others if n not in (e.label["io"], e.label["s"]))) for e in built_in]
    write_jsonl(tmp_path / "ioi" / "test.jsonl", rows)
    loaded = mib.dataset("ioi", tok, split="test", path=tmp_path)
    assert len(loaded) == len(built_in) == 24
    for a, b in zip(loaded, built_in):
        assert (a.clean, a.corrupted, a.positions, a.answer, a.distractor) == \
            (b.clean, b.corrupted, b.positions, b.answer, b.distractor)
    scores = torch.rand(edgeprune.prunable(model).graph.num_edges, generator=torch.Generator().manual_seed(0))
    budgets = [0.01, 0.05, 0.2, 1.0]
    ours = edgeprune.faithfulness(model, scores, loaded, budgets=budgets, tokenizer=tok)
    theirs = edgeprune.faithfulness(model, scores, built_in, budgets=budgets, tokenizer=tok)
    assert ours.faithfulness == theirs.faithfulness and ours.faithfulness_abs == theirs.faithfulness_abs
    assert (ours.full, ours.empty) == (theirs.full, theirs.empty) and ours.full > ours.empty
