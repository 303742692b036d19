"""Shared helpers for edgeprune's benchmarks: timing, peak memory, device naming, tables, result files.

Timing: on CUDA, one pair of CUDA events per step and the median over many steps after warm-up; on
the CPU, time.perf_counter around each step and the median. Peak memory: on CUDA,
torch.cuda.max_memory_allocated() (everything allocated by torch, resident weights included); on
the CPU, a TorchDispatchMode that tracks every storage created while it is active and frees it
through a weakref finaliser on the storage object, so storages kept only by autograd are counted
until they really die (PyObject preservation keeps the storage's Python object alive until then).
"""
from __future__ import annotations

import csv
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import time
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MIB = 2 ** 20
GIB = 2 ** 30
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ device and run info

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


# ------------------------------------------------------------------------------ timing

def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(fn, device, warmup: int = 3, iters: int | None = None, target_s: float = 3.0,
               min_iters: int = 5, max_iters: int = 50) -> dict:
    """Median seconds per call of fn() after `warmup` calls.

    With iters=None the count is chosen from the warm-up cost so the timed part lasts about
    target_s (between min_iters and max_iters).
    """
    device = torch.device(device)
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    synchronize(device)
    if iters is None and warmup == 0:
        iters = min_iters                     # nothing to size it from
    elif iters is None:
        per = (time.perf_counter() - t0) / warmup
        iters = int(min(max_iters, max(min_iters, math.ceil(target_s / max(per, 1e-6)))))
    times = []
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        times = [s.elapsed_time(e) / 1e3 for s, e in events]
    else:
        for _ in range(iters):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    q = statistics.quantiles(times, n=5) if len(times) >= 2 else [times[0]] * 4
    return {"median_s": statistics.median(times), "p20_s": q[0], "p80_s": q[-1], "iters": iters, "warmup": warmup}


def time_interleaved(fns: dict, device, iters: int | None = None, target_s: float = 3.0, min_iters: int = 5,
                     max_iters: int = 50) -> dict:
    """Time several already-warm step functions in round-robin order: per-variant medians.

    On a shared, noisy machine (a CPU with other jobs) the load then hits every variant alike, so
    the ratios stay meaningful. A variant that raises is dropped; its entry holds the exception.
    """
    device = torch.device(device)
    live = dict(fns)
    times = {k: [] for k in fns}
    cpu_times = {k: [] for k in fns}     # process CPU time: less sensitive than wall time to other jobs
    errors = {}
    r = 0
    while live:
        for k, fn in list(live.items()):
            synchronize(device)
            c = time.process_time()
            t = time.perf_counter()
            try:
                fn()
                synchronize(device)
            except Exception as e:  # noqa: BLE001 - recorded for the caller
                errors[k] = e
                del live[k]
                continue
            times[k].append(time.perf_counter() - t)
            cpu_times[k].append(time.process_time() - c)
        r += 1
        if iters is None and r == 1:
            per = sum(v[0] for v in times.values() if v)
            iters = int(min(max_iters, max(min_iters, math.ceil(target_s / max(per, 1e-6)))))
        if r >= (iters or min_iters):
            break
    out = {}
    for k in fns:
        if k in errors:
            out[k] = errors[k]
            continue
        ts = times[k]
        q = statistics.quantiles(ts, n=5) if len(ts) >= 2 else [ts[0]] * 4
        out[k] = {"median_s": statistics.median(ts), "p20_s": q[0], "p80_s": q[-1], "iters": len(ts), "warmup": 0,
                  "cpu_median_s": statistics.median(cpu_times[k])}
    return out


# ------------------------------------------------------------------------------ memory

class CpuMemoryTracker(TorchDispatchMode):
    """Live bytes of every storage created while active; `peak` is their maximum.

    Storages that existed before (weights, inputs) are not counted: add them with
    resident_bytes(). Views of an already-tracked storage are not counted twice.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, weakref.finalize] = {}
        self._preexisting: set[int] = set()

    def ignore(self, *tensors) -> None:
        for t in tensors:
            self._preexisting.add(t.untyped_storage().data_ptr())

    def reset_peak(self) -> None:
        self.peak = self.current

    def _free(self, key: int, nbytes: int) -> None:
        self.current -= nbytes
        self._live.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.is_sparse:
                continue
            try:
                st = t.untyped_storage()
            except (RuntimeError, NotImplementedError):
                continue
            key = id(st)
            nbytes = st.nbytes()
            if key in self._live or nbytes == 0 or st.data_ptr() in self._preexisting:
                continue
            self._live[key] = weakref.finalize(st, self._free, key, nbytes)
            self.current += nbytes
            if self.current > self.peak:
                self.peak = self.current
        return out


def resident_bytes(*objs) -> int:
    """Bytes of the distinct storages behind modules' parameters and buffers, or tensors."""
    seen = {}
    for obj in objs:
        tensors = list(obj.parameters()) + list(obj.buffers()) if isinstance(obj, torch.nn.Module) else [obj]
        for t in tensors:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in msg.lower() or "CUBLAS_STATUS_ALLOC_FAILED" in msg)


def free_memory(device) -> None:
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# ------------------------------------------------------------------------------ output

def fmt_time(s) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.3f} s"


def fmt_bytes(b) -> str:
    if b is None:
        return "-"
    return f"{b / GIB:.2f} GiB" if b >= GIB else f"{b / MIB:.1f} MiB"


def fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """rows: dicts of already formatted values; columns: (key, header) pairs."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(str(r.get(k, "-")) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def append_jsonl(path, record: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record, default=str) + "\n")


def append_csv(path, record: dict) -> None:
    """Append one flat row; nested values are stored as JSON. Writes a header for a new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {k: (json.dumps(v, default=str) if isinstance(v, (dict, list)) else v) for k, v in record.items()}
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(flat))
        if new:
            w.writeheader()
        w.writerow(flat)
