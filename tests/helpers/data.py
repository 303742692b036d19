"""Synthetic clean/corrupted token pairs for trainer tests (no tokenizer needed)."""
import torch

from edgeprune.tasks.base import Example, Task, TaskDataset


def random_pairs(n: int = 8, seq: int = 6, vocab: int = 61, seed: int = 0, positions=None) -> TaskDataset:
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        clean = torch.randint(2, vocab, (seq,), generator=g).tolist()
        corrupted = torch.randint(2, vocab, (seq,), generator=g).tolist()
        examples.append(Example(clean, corrupted, positions or [seq - 1]))
    return TaskDataset(Task(), examples, pad_id=1)
