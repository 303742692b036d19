""""ioi-b", the second fixture's task (tests/fixtures/ioi-b-gpt2-4x4; test_fixture_ioi.py checks the
model solves it): IOI filled from its own templates and names, so a claim checked on both fixtures
does not rest on one model shape or one text distribution."""
import re

import pytest

import edgeprune
from edgeprune.tasks import ioi, words
from helpers.fixtures import ioi_b_gpt2_4x4, ioi_gpt2

N = 200


@pytest.fixture(scope="module")
def fixture():
    model, tokenizer = ioi_b_gpt2_4x4()
    data = edgeprune.tasks.get("ioi-b", tokenizer, split="test", n=N)
    return model, tokenizer, data, edgeprune.prunable(model)


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
