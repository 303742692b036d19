"""Per-example metrics shared by the tasks. Every function returns a (B,) float tensor.

Logits and log-probabilities here are already gathered at the loss positions: shape (B, P, V),
where entry [b, j] belongs to position batch.positions[b, j] and counts only where
position_mask[b, j] is True.
"""
from __future__ import annotations

import torch
from ..errors import UserError


def kl_per_example(circuit_logprobs: torch.Tensor, full_logprobs: torch.Tensor, position_mask: torch.Tensor,
                   reduction: str = "mean") -> torch.Tensor:
    """KL(full || circuit) summed over the vocabulary, then reduced over each example's positions.

    This is the reference's `kl_div(log p_circuit, log p_full, log_target=True)`. Terms where the
    full model gives probability 0 contribute 0 (kl_div itself would give NaN for -inf targets).
    """
    if reduction not in ("mean", "sum"):
        raise UserError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    full_probs = full_logprobs.exp()
    terms = torch.where(full_probs > 0, full_probs * (full_logprobs - circuit_logprobs),
                        torch.zeros_like(full_probs))
    per_position = terms.sum(-1)
    mask = position_mask.to(per_position.dtype)
    total = (per_position * mask).sum(-1)
    if reduction == "sum":
        return total
    return total / mask.sum(-1).clamp(min=1)


def _at(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """logits[b, ids[b]] for (B, V) logits; ids of -1 (no answer) give NaN."""
    safe = ids.clamp(min=0).to(logits.device)
    values = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1).float()
    return torch.where(ids.to(logits.device) >= 0, values, torch.full_like(values, float("nan")))


def logit_difference(logits: torch.Tensor, answers: torch.Tensor, distractors: torch.Tensor) -> torch.Tensor:
    """logit[answer] - logit[distractor] at one position; logits (B, V)."""
    return _at(logits, answers) - _at(logits, distractors)


def accuracy(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """1 where the argmax at one position is the answer token; logits (B, V)."""
    return (logits.argmax(-1) == answers.to(logits.device)).float()


def exact_match(circuit_logits: torch.Tensor, full_logits: torch.Tensor, position_mask: torch.Tensor) -> torch.Tensor:
    """1 where the circuit's argmax equals the full model's at every valid position; (B, P, V)."""
    same = circuit_logits.argmax(-1) == full_logits.argmax(-1)
    return (same | ~position_mask.to(same.device)).all(-1).float()


def sequence_accuracy(logits: torch.Tensor, targets: torch.Tensor, position_mask: torch.Tensor) -> torch.Tensor:
    """1 where the argmax equals the target token at every valid position; targets (B, P)."""
    same = logits.argmax(-1) == targets.to(logits.device)
    return (same | ~position_mask.to(same.device)).all(-1).float()


def kendall_tau(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Kendall's tau-b between the rows of x and y, (B, N) -> (B,); as scipy's kendalltau.

    O(N^2) per row, meant for small N (Greater-Than's 100 digit probabilities).
    """
    dx = torch.sign(x.unsqueeze(-1) - x.unsqueeze(-2)).double()
    dy = torch.sign(y.unsqueeze(-1) - y.unsqueeze(-2)).double()
    upper = torch.ones(x.shape[-1], x.shape[-1], dtype=torch.bool, device=x.device).triu(1)
    concordance = (dx * dy * upper).sum((-1, -2))
    pairs_x = (dx.abs() * upper).sum((-1, -2))
    pairs_y = (dy.abs() * upper).sum((-1, -2))
    return (concordance / (pairs_x * pairs_y).sqrt()).float()
