"""A run's checkpoint file: written atomically, read back only by a run with the same settings."""
from __future__ import annotations

import os

import torch
from .errors import UserError

FILE = "checkpoint.pt"
# Settings that do not change what a run computes, and may differ on resume.
NOT_COMPARED = ("steps", "eval_every", "log_every", "checkpoint_every", "cache_bytes", "checkpointing", "cpu_offload",
                "threads")


def save(path: str, state: dict) -> None:
    """Write `state` to path atomically: a killed run never leaves half a checkpoint."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def load(folder: str | None, device) -> dict | None:
    """The checkpoint in `folder`, or None when there is none."""
    path = os.path.join(folder or "", FILE)
    if not folder or not os.path.exists(path):
        return None
    return torch.load(path, map_location=device, weights_only=True)


def check_settings(state: dict, config: dict, folder: str) -> None:
    """Refuse a checkpoint made with other settings, naming each difference."""
    saved = {k: v for k, v in state["config"].items() if k not in NOT_COMPARED}
    mine = {k: v for k, v in config.items() if k in saved}
    if saved != mine:
        diff = {k: (saved[k], mine[k]) for k in saved if saved[k] != mine[k]}
        raise UserError(f"the checkpoint in {folder} was made with other settings {diff} "
                        "(saved, now); use another checkpoint_dir or the same settings")
