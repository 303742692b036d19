"""A run's folder: its checkpoint (written atomically) and metrics log, continued only by the same run."""
from __future__ import annotations

import json
import os
import pickle

import torch

from .errors import RunError, UserError
from .identity import differences

FILE = "checkpoint.pt"
LOG = "metrics.jsonl"


class RunFinished(RunError):
    """The checkpoint folder holds a finished run of these settings."""


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
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:  # a truncated or foreign file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot read the checkpoint {path} ({first_line}); use another checkpoint folder, or "
                        "pass overwrite=True (--overwrite) to start the run afresh there") from error


def check(state: dict, identity: dict, folder: str, finished_ok: bool = False) -> None:
    """Refuse a checkpoint of another run, naming each difference, or of a finished one (unless finished_ok)."""
    ways_out = ("use another checkpoint folder, or pass overwrite=True (--overwrite) to start this run afresh "
                f"in {folder}")
    if "identity" not in state:
        raise UserError(f"the checkpoint in {folder} does not say which run it belongs to (an older edgeprune "
                        f"wrote it); {ways_out}")
    diffs = differences(state["identity"], identity)
    if diffs:
        raise UserError(f"the checkpoint in {folder} belongs to another run: {'; '.join(diffs)}. To keep it, "
                        f"{ways_out}")
    steps = identity["settings"]["steps"]
    if state["step"] >= steps and not finished_ok:
        raise RunFinished(f"the run in {folder} has finished ({state['step']} of {steps} steps); its circuit was "
                          f"returned when it ended. To train again, {ways_out}")


def clear(folder: str) -> None:
    """Remove a run's checkpoint and metrics log (overwrite=True)."""
    for name in (FILE, LOG):
        if os.path.exists(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))


def trim_log(path: str, step: int) -> None:
    """Keep the log's rows up to `step`: a resumed run logs the later steps again, each once."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    if lines and not lines[-1].endswith("\n"):  # a row cut off when the run was killed
        lines.pop()
    rows = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    with open(path + ".tmp", "w") as f:
        f.writelines(rows)
    os.replace(path + ".tmp", path)


class RunLog:
    """The run's logged rows, kept in memory and appended to its metrics log (by rank 0 only: write)."""

    def __init__(self, path: str | None, write: bool = True):
        self.path, self.write, self.rows = path, write, []

    def __call__(self, row: dict) -> None:
        self.rows.append(row)
        if self.path and self.write:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
