"""Every job that can take minutes shows a progress bar with a time estimate: attribution (per batch,
per edge set for exact), curves (per batch and budget), evaluation (per batch); none when asked not
to, or when stderr is not a terminal."""
import functools
import re

import pytest

import edgeprune
from helpers.data import answer_pairs
from helpers.models import tiny


@functools.lru_cache(maxsize=None)
def _pm():
    return edgeprune.prunable(tiny("gpt2"), embedding_nodes=1)  # loading prints the loader's own bars


def _bar(err: str, desc: str) -> tuple[int, int]:
    """(done, total) of the last update of the bar named `desc`."""
    found = re.findall(rf"{re.escape(desc)}: +\d+%\|[^|]*\| (\d+)/(\d+) \[[^\]]*<[^\]]*\]", err)
    assert found, f"no {desc!r} bar with a time estimate in {err!r}"
    return tuple(map(int, found[-1]))


@pytest.mark.parametrize("method,sets,units", [("eap", None, 1), ("exact", 64, 2)])
def test_attribution_shows_its_batches_and_edge_sets(method, sets, units, capsys):
    pm = _pm()
    assert pm.graph.num_edges == 110  # exact: 2 sets of at most 64 single-edge ablations per batch
    capsys.readouterr()
    edgeprune.attribute(pm, answer_pairs(n=4), method, batch_size=2, exact_sets=sets, progress=True)
    assert _bar(capsys.readouterr().err, method) == (2 * units, 2 * units)


def test_curves_and_evaluation_show_their_batches(capsys):
    pm = _pm()
    capsys.readouterr()
    scored = edgeprune.attribute(pm, answer_pairs(n=4), "eap", batch_size=2, progress=False)
    assert capsys.readouterr().err == ""
    edgeprune.faithfulness(pm, scored, answer_pairs(n=4), budgets=[0.1, 1.0], batch_size=2, label="eap",
                           progress=True)
    assert _bar(capsys.readouterr().err, "curve eap") == (2 * 6, 2 * 6)  # 2 batches x (2 budgets x 2 rankings + 2)
    edgeprune.evaluate(pm, scored.at_edges(10), answer_pairs(n=6), batch_size=4, progress=True)
    assert _bar(capsys.readouterr().err, "evaluating") == (2, 2)


def test_no_bar_off_a_terminal_unless_asked(capsys):
    pm = _pm()
    capsys.readouterr()  # stderr is captured here: not a terminal
    scored = edgeprune.attribute(pm, answer_pairs(n=2), "eap", batch_size=2)
    edgeprune.evaluate(pm, scored.at_edges(10), answer_pairs(n=2), batch_size=2)
    assert capsys.readouterr().err == ""
