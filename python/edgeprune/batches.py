"""A run's data on the device, and what is computed once per example rather than per step.

The full model's target distributions and, under interchange ablation, the corrupted run's writer
records are computed once for every example while they fit `cache_bytes` (IOI trains on 200
examples for 3,000 steps); otherwise they are recomputed per batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .models import PrunableModel, WriterRecord, record_bytes


@dataclass
class StepBatch:
    """What one step's gated forward and loss read."""
    clean: torch.Tensor
    attention_mask: torch.Tensor
    positions: torch.Tensor
    position_mask: torch.Tensor
    record: WriterRecord | None
    targets: torch.Tensor           # the full model's log-probabilities at the loss positions
    answers: torch.Tensor | None = None      # (B,) answer and counterfactual answer tokens, -1 where none
    distractors: torch.Tensor | None = None


class TrainingData:
    def __init__(self, pm: PrunableModel, dataset, device, *, batch_size: int, pad_to: int | None = None,
                 cache_bytes: int):
        self.pm, self.task, self.batch_size = pm, dataset.task, batch_size
        batch = dataset.batch(list(range(len(dataset))), pad_to=pad_to)
        self.clean, self.corrupted = batch.clean.to(device), batch.corrupted.to(device)
        self.attention_mask, self.positions = batch.attention_mask.to(device), batch.positions.to(device)
        self.position_mask = batch.position_mask.to(device)
        self.answers, self.distractors = batch.answers.to(device), batch.distractors.to(device)
        self.targets = self._cached(self._targets_for, self._target_bytes(), cache_bytes)
        if pm.ablation_per_example:
            self.records = self._cached(self._record_for, self._record_bytes(), cache_bytes)
            self.fixed_record = None
        else:
            self.records = None
            self.fixed_record = pm.ablation_record(seq_len=self.clean.shape[1])

    def __len__(self) -> int:
        return self.clean.shape[0]

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor held between steps: the data and the caches (for memory accounting)."""
        out = [self.clean, self.corrupted, self.attention_mask, self.positions, self.position_mask]
        out += [t for t in (self.targets,) if t is not None]
        for record in (self.records, self.fixed_record):
            out += record.tensors() if record is not None else []
        return out

    def batch(self, idx: torch.Tensor) -> StepBatch:
        if self.pm.ablation_per_example:
            record = self.records.select(idx) if self.records is not None else self._record_for(idx)
        elif self.pm.kind.learned:  # rebuilt from the learned constants: each step's gradient reaches them
            record = self.pm.ablation_record(seq_len=self.clean.shape[1])
        else:
            record = self.fixed_record
        targets = self.targets[idx] if self.targets is not None else self._targets_for(idx)
        return StepBatch(self.clean[idx], self.attention_mask[idx], self.positions[idx], self.position_mask[idx],
                         record, targets, self.answers[idx], self.distractors[idx])

    @torch.no_grad()
    def _targets_for(self, idx):
        logits = self.pm.full_logits(self.clean[idx], self.attention_mask[idx], self.positions[idx])
        return self.task.log_probs(logits)

    @torch.no_grad()
    def _record_for(self, idx):
        return self.pm.ablation_record(self.corrupted[idx], self.attention_mask[idx])

    def _target_bytes(self) -> int:
        vocab = len(self.task.vocab) if getattr(self.task, "vocab", None) else self.pm.model.config.vocab_size
        return self.positions.numel() * vocab * 4

    def _record_bytes(self) -> int:
        a = self.pm.adapter
        return record_bytes(self.clean.numel(), a.embedding_outputs, a.num_layers, a.num_heads, a.head_dim,
                            a.d_model, a.dtype)

    def _cached(self, fn, nbytes: int, budget: int):
        """All examples' values computed once, if they fit the budget; else None (recompute per batch)."""
        if nbytes > budget:
            return None
        n = len(self)
        parts = [fn(torch.arange(i, min(n, i + self.batch_size), device=self.clean.device))
                 for i in range(0, n, self.batch_size)]
        return WriterRecord.cat(parts) if isinstance(parts[0], WriterRecord) else torch.cat(parts)


class BatchOrder:
    """Shuffled epochs, last partial batch kept (the HF Trainer's order); a pure function of the step.

    An epoch's order is drawn on the host from the seed and moved to the device once: a step's
    indices are a slice of it, with no copy that would wait for the device.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device):
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self._epoch: tuple[int, torch.Tensor] | None = None   # (epoch, its order on the device)

    def __call__(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, math.ceil(self.n / self.batch_size))
        if self._epoch is None or self._epoch[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch = (epoch, torch.randperm(self.n, generator=g).to(self.device))
        return self._epoch[1][k * self.batch_size:(k + 1) * self.batch_size]
