"""Mixing-kernel throughput: achieved bandwidth of every backend, against a copy and an einsum.

    edgeprune bench kernels                 # GPT-2 small and CodeLlama-13B layer shapes
    edgeprune bench kernels --quick         # fewer repetitions, smaller CPU shapes
    edgeprune bench kernels --sweep         # GPU: also try Triton block configurations
    edgeprune bench kernels --markdown      # the table as Markdown (benchmarks/RESULTS.md)

(`python benchmarks/bench_kernels.py` in a source checkout runs the same.)

Bytes counted per pass (the traffic a perfect kernel needs; the same figure for every backend):
    forward:  delta rows actually read (writers with a nonzero gate) + base + outputs written
    backward: grad_out read + delta rows read + grad_delta rows read and written
Triton is also timed with its faster dot settings, triton[tf32x3] and triton[tf32] (see
epkernels/mix.py; the ops default is exact-float32 "ieee" dots and split bf16 gates).
Baselines measured in the same run on the same device: a device copy (half read, half written,
the same bytes up to 4 GiB; "x copy" is achieved bandwidth over copy bandwidth), and the plain
PyTorch formulation with torch.einsum over the
valid prefix (forward: einsum + base; backward: the two einsums, accumulated into grad_delta).
"x reference" is the speed-up over the readable PyTorch reference backend (ops/reference.py).
Ratios above 1 are faster than the baseline; "x copy" is the fraction of copy bandwidth reached.
On CPU the shapes keep the layer's readers, writers and width but fewer tokens (memory, time),
and by default each call is timed by the CPU time of one thread (`--threads 1 --clock cpu`): on a
shared development machine wall time mostly measures the scheduler. Use --clock wall for wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass

import torch

from . import ops
from .ops.backends import BACKENDS


@dataclass
class Case:
    name: str
    readers: int
    writers: int
    tokens: int  # batch * sequence
    width: int
    dtype: torch.dtype
    zero_frac: float = 0.0  # fraction of writers whose gate column is all zero (skipped)

    @property
    def n(self) -> int:
        return self.tokens * self.width


def cases(device: torch.device, quick: bool) -> list[Case]:
    if device.type == "cuda":
        gpt2_tokens, llama_tokens = 32 * 64, 512
    else:  # same R, P and width, fewer tokens
        gpt2_tokens, llama_tokens = (32 if quick else 128), (2 if quick else 8)
    return [
        Case("gpt2-small L11 attn (B32 S64)", 37, 158, gpt2_tokens, 768, torch.float32),
        Case("gpt2-small L11 attn, 90% unread", 37, 158, gpt2_tokens, 768, torch.float32, 0.9),
        Case("codellama-13b L39 attn (B1 S512)", 120, 1600, llama_tokens, 5120, torch.bfloat16),
    ]


# ----------------------------------------------------------------------------------- timing

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


def timeit(fns: dict, device: torch.device, reps: int, clock: str = "wall") -> dict[str, float]:
    """Seconds per call (GPU: median, L2 flushed; CPU: best of interleaved repetitions)."""
    if device.type == "cuda":
        import triton.testing
        return {k: triton.testing.do_bench(f, warmup=10, rep=max(20, 10 * reps), return_mode="median") / 1e3
                for k, f in fns.items()}
    now = CLOCK[clock]
    best = {k: float("inf") for k in fns}
    for f in fns.values():
        f()
    for _ in range(reps):
        for k, f in fns.items():
            t = now()
            f()
            best[k] = min(best[k], now() - t)
    return best


# ------------------------------------------------------------------------------------ inputs

def make_inputs(case: Case, device: torch.device):
    g = torch.Generator().manual_seed(0)
    R, P, N = case.readers, case.writers, case.n
    gates = torch.rand(R, P, generator=g) + 0.01
    n_zero = round(case.zero_frac * P)
    if n_zero:
        gates[:, torch.randperm(P, generator=g)[:n_zero]] = 0
    gates = gates.to(device)
    delta = torch.randn(P, N, device=device, dtype=case.dtype)
    base = torch.randn(N, device=device, dtype=case.dtype)
    grad_out = torch.randn(R, N, device=device, dtype=case.dtype)
    grad_delta = torch.zeros_like(delta)
    active = P - n_zero
    return gates, delta, base, grad_out, grad_delta, active


def traffic(case: Case, active: int) -> tuple[int, int]:
    e = torch.empty((), dtype=case.dtype).element_size()
    fwd = (active + 1 + case.readers) * case.n * e
    bwd = (case.readers + 3 * active) * case.n * e
    return fwd, bwd


COPY_CAP = 1 << 31  # bytes per copy buffer: copy bandwidth does not depend on size beyond this


def run_case(case: Case, device: torch.device, backends: list[str], reps: int, sweep: bool, clock: str) -> list[dict]:
    gates, delta, base, grad_out, grad_delta, active = make_inputs(case, device)
    fwd_bytes, bwd_bytes = traffic(case, active)
    rows = []
    for pass_name, nbytes in (("forward", fwd_bytes), ("backward", bwd_bytes)):
        elems = min(nbytes // 2, COPY_CAP) // delta.element_size()
        src = torch.empty(elems, device=device, dtype=delta.dtype).normal_()
        dst = torch.empty_like(src)
        copy_bytes = 2 * elems * delta.element_size()
        z = gates.to(delta.dtype)
        fns = {"copy": lambda src=src, dst=dst: dst.copy_(src)}
        if pass_name == "forward":
            fns["einsum"] = lambda z=z: torch.einsum("rw,wn->rn", z, delta) + base
            for b in backends:
                fns[b] = (lambda b=b: ops.mix(gates, delta, base, backend=b))
        else:
            def einsum_backward(z=z):
                torch.einsum("rn,wn->rw", grad_out, delta)
                grad_delta.add_(torch.einsum("rw,rn->wn", z, grad_out))
            fns["einsum"] = einsum_backward
            for b in backends:
                fns[b] = (lambda b=b: ops.mix_backward_(grad_out, gates, delta, grad_delta, backend=b))
        if device.type == "cuda" and "triton" in backends:
            fns.update(triton_precisions(pass_name, gates, delta, base, grad_out, grad_delta))
        with torch.no_grad():
            if device.type == "cpu":
                times = timeit(fns, device, reps, clock)  # interleaved repetitions
            else:
                times = {}
                for name, f in fns.items():  # one at a time: an out-of-memory baseline skips only itself
                    try:
                        times.update(timeit({name: f}, device, reps, clock))
                    except torch.OutOfMemoryError:
                        print(f"  {name}: out of memory, skipped", file=sys.stderr)
                        torch.cuda.empty_cache()
            if sweep and "triton" in backends:
                times.update(sweep_triton(pass_name, gates, delta, base, grad_out, grad_delta, device, reps))
        copy_bw = copy_bytes / times["copy"]
        for name, t in times.items():
            bw = (copy_bytes if name == "copy" else nbytes) / t
            rows.append({"case": case.name, "pass_": pass_name, "backend": name, "ms": t * 1e3, "gbps": bw / 1e9,
                             "vs_copy": bw / copy_bw,
                             "vs_einsum": times["einsum"] / t if "einsum" in times else float("nan"),
                             "vs_reference": times["torch"] / t if "torch" in times else float("nan")})
    return rows


def triton_precisions(pass_name, gates, delta, base, grad_out, grad_delta) -> dict:
    """The faster dot settings (ops default: ieee float32 dots, gates split into two halves)."""
    from epkernels import mix as k
    fns = {}
    for precision in ("tf32x3", "tf32"):
        if pass_name == "forward":
            fns[f"triton[{precision}]"] = lambda p=precision: k.mix_forward(gates, delta, base, precision=p)
        else:
            fns[f"triton[{precision}]"] = lambda p=precision: k.mix_backward(grad_out, gates, delta, None, grad_delta,
                                                                           True, precision=p)
    return fns


def sweep_triton(pass_name, gates, delta, base, grad_out, grad_delta, device, reps) -> dict[str, float]:
    """A few Triton block configurations (GPU only): the defaults live in epkernels/mix.py."""
    from epkernels import mix as k
    fns = {}
    for bn in (64, 128, 256):
        for bw in (16, 32, 64):
            for warps in (4, 8):
                label = f"triton[n{bn} w{bw} warps{warps}]"
                if pass_name == "forward":
                    for skip in (False, True):
                        fns[label[:-1] + (" skip]" if skip else "]")] = (
                            lambda bn=bn, bw=bw, warps=warps, skip=skip: k.mix_forward(
                                gates, delta, base, block_n=bn, block_w=bw, num_warps=warps, skip_empty=skip))
                else:
                    fns[label] = (lambda bn=bn, bw=bw, warps=warps: k.mix_backward(
                        grad_out, gates, delta, None, grad_delta, True, block_n=min(bn, 128), block_w=bw,
                        num_warps=warps))
    out = {}
    for label, f in fns.items():
        try:
            out.update(timeit({label: f}, device, reps))
        except Exception as e:  # noqa: BLE001  (a configuration that does not fit: shared memory, registers)
            print(f"  skipped {label}: {type(e).__name__}", file=sys.stderr)
    return out


# ------------------------------------------------------------------------------------ output

def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu} ({os.cpu_count()} cores), {torch.get_num_threads()} thread(s), torch {torch.__version__}"


def print_results(rows, markdown: bool):
    head = ["case", "pass", "backend", "ms", "GB/s", "x copy", "x einsum", "x reference"]
    fmt = [lambda r: r["case"], lambda r: r["pass_"], lambda r: r["backend"], lambda r: f"{r['ms']:.3f}",
           lambda r: f"{r['gbps']:.1f}", lambda r: f"{r['vs_copy']:.2f}", lambda r: f"{r['vs_einsum']:.2f}",
           lambda r: f"{r['vs_reference']:.2f}"]
    print_table(head, [[f(r) for f in fmt] for r in rows], markdown)


def print_table(head: list[str], table: list[list[str]], markdown: bool) -> None:
    """Rows of strings as a markdown table (for RESULTS.md) or as aligned columns (for a terminal)."""
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for line in table:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(h), *(len(line[i]) for line in table)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)))


def main(argv=None, prog=None):
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (and smaller CPU shapes)")
    p.add_argument("--sweep", action="store_true", help="also time Triton block configurations (GPU)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--clock", choices=sorted(CLOCK), default="cpu", help="CPU timing clock (default: cpu time)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
        if args.clock == "cpu" and args.threads != 1:
            p.error("--clock cpu sums the CPU time of all threads: use it with --threads 1")
    backends = [name for name, b in BACKENDS.items() if not b.not_supported_reasons("mix", device, torch.float32)]
    if device.type == "cpu":
        backends = [b for b in backends if b != "triton"]  # the interpreter is for tests, not speed
    reps = 3 if args.quick else 5
    clock = "" if device.type == "cuda" else f", {args.clock} time"
    print(f"# mixing kernels on {machine(device)}{clock}; backends: {', '.join(backends)}")
    rows = []
    for case in cases(device, args.quick):
        if any(BACKENDS[b].not_supported_reasons("mix", device, case.dtype) for b in backends):
            continue
        print(f"# {case.name}: R={case.readers} P={case.writers} N={case.n} ({case.tokens} tokens x {case.width}) "
              f"{str(case.dtype).removeprefix('torch.')}, {case.zero_frac:.0%} of writers unread", flush=True)
        rows += run_case(case, device, backends, reps, args.sweep, args.clock)
    print_results(rows, args.markdown)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
