"""What a benchmark ran on, recorded with its figures: the card or CPU, the versions, the commit."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from _memory import GIB

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        return f"{props.name} ({props.total_memory / GIB:.0f} GiB)"
    return f"{cpu_model()} ({os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads)"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() or "unknown"
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_info(device) -> dict:
    info = {"card": device_name(device), "device": str(device), "torch": torch.__version__,
            "git_commit": git_commit(), "python": platform.python_version(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if torch.device(device).type == "cuda":
        info["cuda"] = torch.version.cuda
    return info
