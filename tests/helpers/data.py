"""Synthetic clean/corrupted token pairs for trainer tests (no tokenizer needed)."""
import torch

from edgeprune.tasks.base import AnswerTask, Example, Task, TaskDataset


def random_pairs(n: int = 8, seq: int = 6, vocab: int = 61, seed: int = 0, positions=None) -> TaskDataset:
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        clean = torch.randint(2, vocab, (seq,), generator=g).tolist()
        corrupted = torch.randint(2, vocab, (seq,), generator=g).tolist()
        examples.append(Example(clean, corrupted, positions or [seq - 1]))
    return TaskDataset(Task(), examples, pad_id=1)


def answer_pairs(n: int = 8, seq: int = 6, vocab: int = 61, seed: int = 0) -> TaskDataset:
    """random_pairs with an answer and a counterfactual answer token per example (for the logit difference)."""
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        clean = torch.randint(2, vocab, (seq,), generator=g).tolist()
        corrupted = torch.randint(2, vocab, (seq,), generator=g).tolist()
        answer, distractor = torch.randperm(vocab - 2, generator=g)[:2].add(2).tolist()
        examples.append(Example(clean, corrupted, [seq - 1], answer, distractor))
    return TaskDataset(AnswerTask(), examples, pad_id=1)
