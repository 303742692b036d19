"""Timing a benchmark's steps: on CUDA, one pair of CUDA events per step and the median over many
steps after warm-up; on the CPU, time.perf_counter around each step and the median."""
from __future__ import annotations

import math
import statistics
import time

import torch


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
