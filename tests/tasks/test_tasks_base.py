"""Batching, padding, the loss distribution and the metric helpers."""
import math
from collections import Counter
from itertools import combinations

import pytest
import torch

from helpers.tokenizers import word_level

import edgeprune.tasks as tasks
from edgeprune.tasks import metrics as M
from edgeprune.tasks.base import Example, Task, TaskDataset
from edgeprune.tasks.encoding import Encoder
from edgeprune.tasks.greater_than import GreaterThanTask, probability_difference

TEXTS = ["the cat sat on the mat", "a dog ran", "the dog sat"]


def _dataset():
    examples = [
        Example(clean=[5, 6, 7], corrupted=[5, 8, 7], positions=[2], answer=9, distractor=4, label="a", text="x"),
        Example(clean=[5, 6, 7, 8, 9], corrupted=[5, 6, 7, 8, 3], positions=[2, 3], answer=1, text="y"),
    ]
    return TaskDataset(Task(), examples, pad_id=0)


def test_batch_pads_right_to_the_longest_example():
    batch = _dataset().batch([1, 0])
    assert batch.clean.tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]]
    assert batch.corrupted.tolist() == [[5, 6, 7, 8, 3], [5, 8, 7, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch.positions.tolist() == [[2, 3], [2, 0]]
    assert batch.position_mask.tolist() == [[True, True], [True, False]]
    assert batch.answers.tolist() == [1, 9] and batch.distractors.tolist() == [-1, 4]
    assert batch.labels == [None, "a"] and batch.indices == [1, 0]
    assert all(t.dtype == torch.long for t in (batch.clean, batch.corrupted, batch.attention_mask, batch.positions))
    assert batch.position_mask.dtype == torch.bool
    moved = batch.to("cpu")
    assert moved.labels == batch.labels and torch.equal(moved.clean, batch.clean)


def test_batch_pads_to_a_fixed_length_and_names_a_too_long_example():
    data = _dataset()
    assert data.batch([0, 1], pad_to=8).clean.shape == (2, 8)
    with pytest.raises(ValueError, match="example 1 has 5 tokens, more than pad_to=4: 'y'"):
        data.batch([0, 1], pad_to=4)


def test_unequal_lengths_are_refused_naming_the_example():
    bad = Example(clean=[1, 2, 3], corrupted=[1, 2], positions=[2], text="the bad one")
    with pytest.raises(ValueError, match="example 1: the clean input has 3 tokens .* 'the bad one'"):
        TaskDataset(Task(), [_dataset()[0], bad])


def test_pad_id_is_the_pad_token_else_eos():
    gpt2_like = word_level(TEXTS)
    assert gpt2_like.pad_token_id is None
    assert Encoder(gpt2_like).pad_id == gpt2_like.eos_token_id
    padded = word_level(TEXTS, pad=True)
    assert Encoder(padded).pad_id == padded.pad_token_id != padded.eos_token_id


def test_log_probs_full_vocabulary_and_restricted():
    logits = torch.randn(2, 3, 11)
    torch.testing.assert_close(Task().log_probs(logits), torch.log_softmax(logits, -1))
    task = Task()
    task.vocab = [3, 1, 7]
    torch.testing.assert_close(task.log_probs(logits), torch.log_softmax(logits[..., [3, 1, 7]], -1))


def test_kl_matches_torch_and_reduces_over_valid_positions():
    circuit = torch.log_softmax(torch.randn(3, 2, 7), -1)
    full = torch.log_softmax(torch.randn(3, 2, 7), -1)
    mask = torch.tensor([[True, True], [True, False], [False, False]])
    per_position = torch.nn.functional.kl_div(circuit, full, reduction="none", log_target=True).sum(-1)
    mean = M.kl_per_example(circuit, full, mask, "mean")
    total = M.kl_per_example(circuit, full, mask, "sum")
    torch.testing.assert_close(mean[0], per_position[0].mean())
    torch.testing.assert_close(mean[1], per_position[1, 0])
    torch.testing.assert_close(total[0], per_position[0].sum())
    assert mean[2] == 0 and total[2] == 0
    # a zero-probability token of the full model contributes nothing, not NaN
    full_with_zero = full.clone()
    full_with_zero[..., 0] = float("-inf")
    assert torch.isfinite(M.kl_per_example(circuit, full_with_zero, mask)).all()
    with pytest.raises(ValueError, match="reduction"):
        M.kl_per_example(circuit, full, mask, "max")


def test_answer_metrics():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])
    answers, distractors = torch.tensor([1, 2]), torch.tensor([2, -1])
    torch.testing.assert_close(M.logit_difference(logits, answers, distractors)[0], torch.tensor(2.0))
    assert torch.isnan(M.logit_difference(logits, answers, distractors)[1])
    assert M.accuracy(logits, answers).tolist() == [1.0, 0.0]
    circuit = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    full = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]])
    assert M.exact_match(circuit, full, torch.tensor([[True, True], [True, True]])).tolist() == [1.0, 0.0]
    assert M.exact_match(circuit, full, torch.tensor([[True, True], [True, False]])).tolist() == [1.0, 1.0]


def _tau_b(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b from its definition: (concordant - discordant) pairs over the square root of
    the pair counts left after removing the pairs tied in x and those tied in y (tie groups)."""
    sign = [(a1 - a2) * (b1 - b2) for (a1, b1), (a2, b2) in combinations(zip(x, y), 2)]
    pairs = len(x) * (len(x) - 1) // 2
    ties_x = sum(t * (t - 1) // 2 for t in Counter(x).values())
    ties_y = sum(t * (t - 1) // 2 for t in Counter(y).values())
    return (sum(s > 0 for s in sign) - sum(s < 0 for s in sign)) / math.sqrt((pairs - ties_x) * (pairs - ties_y))


def test_kendall_tau_is_tau_b():
    # By hand: one discordant pair of three; one tie in x, two concordant pairs: 2 / sqrt(2 * 3).
    assert M.kendall_tau(torch.tensor([[1.0, 2, 3]]), torch.tensor([[1.0, 3, 2]])).item() == pytest.approx(1 / 3)
    assert M.kendall_tau(torch.tensor([[1.0, 1, 2]]), torch.tensor([[1.0, 2, 3]])).item() == pytest.approx(
        2 / math.sqrt(6))
    x, y = torch.rand(4, 100), torch.rand(4, 100)
    y[0] = x[0]
    x[1, :50] = 0.5  # ties
    y[2, ::3] = 0.25
    ours = M.kendall_tau(x, y)
    for row in range(4):
        assert abs(ours[row].item() - _tau_b(x[row].tolist(), y[row].tolist())) < 1e-5


def test_probability_difference_windows_are_clamped():
    probs = torch.zeros(4, 100)
    probs[0, 40] = 1   # YY=30: later, within 10 years
    probs[1, 45] = 1   # YY=30: later, beyond the window
    probs[2, 0] = 1    # YY=5: earlier; the window is clamped at 00, never wraps to 95..99
    probs[3, 99] = 1   # YY=5: 99 is far later, outside the window even though 5 - 10 < 0
    years = torch.tensor([30, 30, 5, 5])
    assert probability_difference(probs, years).tolist() == [1.0, 1.0, -1.0, 1.0]
    assert probability_difference(probs, years, window=10).tolist() == [1.0, 0.0, -1.0, 0.0]


def test_greater_than_metrics_read_the_label_year():
    vocab = list(range(100, 200))
    task = GreaterThanTask(vocab)
    examples = [Example(clean=[1, 2], corrupted=[1, 3], positions=[1], answer=vocab[50], label=50)]
    batch = TaskDataset(task, examples).batch([0])
    logits = torch.full((1, 1, 300), -30.0)
    logits[0, 0, vocab[55]] = 10.0
    out = task.metrics(logits, logits, batch)
    assert out["probability_difference"].item() == pytest.approx(1.0, abs=1e-4)
    assert out["pd10"].item() == pytest.approx(1.0, abs=1e-4)


def test_registering_a_task():
    def factory(tokenizer, split="train", n=None, seed=0):
        example = Example(clean=[1, 2], corrupted=[1, 3], positions=[1], text=f"{split}-{seed}")
        return TaskDataset(Task(), [example] * (n or 1), split=split)

    tasks.register("toy-test-task", factory)
    assert "toy-test-task" in tasks.names()
    data = tasks.get("toy-test-task", None, split="test", n=3, seed=4)
    assert len(data) == 3 and data[0].text == "test-4"
    assert tasks.load("toy-test-task", None, n=2).split == "train"
    tasks.register("toy-test-task", factory)  # the same factory again: a no-op
    with pytest.raises(ValueError, match="already registered"):
        tasks.register("toy-test-task", lambda *a, **k: None)
    tasks.register("toy-test-task", "edgeprune.tasks.ioi:dataset", replace=True)  # lazy "module:function"
    assert tasks.registry.factory("toy-test-task").__name__ == "dataset"


def test_load_returns_a_dataset_as_it_is_and_rejects_other_types():
    data = _dataset()
    assert tasks.load(data, None) is data
    with pytest.raises(TypeError, match="task name"):
        tasks.load(42, None)
    with pytest.raises(ValueError, match="no such file"):
        tasks.load("missing.jsonl", None)
