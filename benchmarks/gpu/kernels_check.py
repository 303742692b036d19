"""GPU check of the kernel extension, in one go (run from the repository root on a CUDA machine):

    python benchmarks/gpu/kernels_check.py                 # build, tests, large-shape check, benchmark
    python benchmarks/gpu/kernels_check.py --sweep         # ... and Triton block-size sweep
    python benchmarks/gpu/kernels_check.py --skip-build    # reuse an extension built earlier
    TRITON_INTERPRET=1 python benchmarks/gpu/kernels_check.py --dry-run   # every stage on a CPU

Stages (each reports PASS/FAIL; a failure does not stop the later stages):
  1. build   edgeprune._C in place with its CUDA kernels (TORCH_CUDA_ARCH_LIST defaults to this
             card's architecture; setup.py finds the toolkit from nvcc when CUDA_HOME is unset,
             wrapper scripts included), then edgeprune.info.
  2. tests   pytest tests/ops with TRITON_INTERPRET=0: Triton kernels compiled on CUDA tensors,
             the CUDA C++ backend on CUDA tensors, the C++ backend on CPU.
  3. large   Triton and CUDA C++ against the float64 reference at layer-sized shapes (GPT-2 small
             and CodeLlama-13B readers/writers, fewer tokens), forward, backward, bf16 and fp32.
  4. bench   benchmarks/bench_kernels.py at the full layer shapes (Markdown table: paste it, with the
             card, into benchmarks/RESULTS.md); the design target is Triton >= 0.80 x copy.
Outputs go to --out (default $OUT when set, else benchmarks/gpu/out): log.txt, bench.json, bench.md.

--dry-run runs the same stages on a CPU, so that a GPU run cannot fail on an import or an argument:
the build compiles what this machine can (the CUDA kernels where nvcc and a CUDA torch are found),
the tests run with Triton compiled (its tests skip without CUDA), the large check runs at tiny shapes
on CPU tensors (Triton interpreted when TRITON_INTERPRET=1), the benchmark with --quick.

Expected cost on an H100/H200: build 2-4 min, tests 2-4 min (Triton compiles each kernel variant
once), large shapes under 1 min, benchmark 1-2 min (several more with --sweep). Where one command
may run at most 10 minutes, split it: `--skip-bench`, then `--skip-build --skip-tests` on the same
machine (the built extension stays in python/edgeprune/).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), ROOT,
                                                   os.environ.get("PYTHONPATH", "")]),
           TRITON_INTERPRET="0")


class Log:
    def __init__(self, path):
        self.file = open(path, "w")  # noqa: SIM115  (open for the whole run)

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def run(cmd, log, timeout, env=ENV, tail=60) -> tuple[bool, str]:
    """Runs cmd in the repository root; logs the last `tail` lines; returns (success, stdout)."""
    log("$", " ".join(cmd))
    t = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        log(f"  timed out after {timeout} s")
        return False, ""
    out = (proc.stdout + proc.stderr).strip().splitlines()
    for line in out[-tail:]:
        log("  " + line)
    log(f"  exit {proc.returncode} in {time.time() - t:.0f} s")
    return proc.returncode == 0, proc.stdout


def stage_build(log) -> bool:
    import torch
    env = dict(ENV)
    if "TORCH_CUDA_ARCH_LIST" not in env and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        env["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
    env.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
    log(f"torch {torch.__version__} (CUDA {torch.version.cuda}), CUDA_HOME={env.get('CUDA_HOME')}, "
        f"arch {env.get('TORCH_CUDA_ARCH_LIST')}")
    ok = run([sys.executable, "setup.py", "build_ext", "--inplace"], log, timeout=1200, env=env, tail=15)[0]
    return run([sys.executable, "-m", "edgeprune.info"], log, timeout=120)[0] and ok


def stage_tests(log) -> bool:
    return run([sys.executable, "-m", "pytest", "tests/ops", "-q", "-rs", "-p", "no:cacheprovider"], log,
               timeout=1800, tail=80)[0]


# (name, readers R, writers P, delta rows W, columns N): GPT-2 small's and CodeLlama-13B's last
# layer with fewer tokens; the dry run's keep their structure at a CPU's size.
LARGE_SHAPES = [("gpt2", 37, 158, 160, 4 * 64 * 768), ("codellama", 120, 1600, 1600, 16 * 5120)]
DRY_RUN_SHAPES = [("gpt2-tiny", 5, 12, 14, 96), ("codellama-tiny", 130, 20, 20, 32)]  # 130: two reader groups


def stage_large(log, dry_run: bool = False) -> bool:
    """Layer-sized shapes against float64 (computed on the GPU); errors relative to the output scale.
    dry_run: tiny shapes on the CPU."""
    import torch
    sys.path.insert(0, ROOT)  # epkernels; edgeprune is the installed package (its built extension)
    if importlib.util.find_spec("edgeprune") is None:
        sys.path.insert(0, os.path.join(ROOT, "python"))
    from edgeprune import ops
    from edgeprune.ops import reference as ref
    from edgeprune.ops.backends import BACKENDS
    ok = True
    dev = torch.device("cpu" if dry_run else "cuda")
    shapes = DRY_RUN_SHAPES if dry_run else LARGE_SHAPES
    # bf16 output rounding alone is 2^-9 relative; fp32 allows accumulation-order differences.
    tol = {torch.float32: 1e-4, torch.bfloat16: 8e-3}
    for name, R, P, W, N in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            g = torch.Generator(device=dev).manual_seed(0)
            gates = torch.rand(R, P, device=dev, generator=g)
            gates[:, ::5] = 0
            prefix = torch.randint(P // 2, P + 1, (R,), device=dev, generator=g)
            delta = torch.randn(W, N, device=dev, generator=g).to(dtype)
            masked = torch.where(ref._prefix_mask(gates, prefix), gates, 0)
            unread = torch.ones(W, dtype=torch.bool, device=dev)
            unread[:P] = ~(masked != 0).any(0)
            delta[unread] = float("nan")
            base = torch.randn(N, device=dev, generator=g).to(dtype)
            grad_out = torch.randn(R, N, device=dev, generator=g).to(dtype)
            d64 = delta.double()
            out64 = ref.mix_reference(gates.double(), d64, base.double(), prefix)
            gg64, rows64 = ref.mix_backward_reference(grad_out.double(), gates.double(), d64, prefix)
            del d64
            for backend in ("triton", "cuda"):
                reasons = BACKENDS[backend].not_supported_reasons("mix", dev, dtype)
                if reasons:
                    log(f"  large {name} {str(dtype).removeprefix('torch.')} {backend}: SKIP ({'; '.join(reasons)})")
                    continue
                out = ops.mix(gates, delta, base, prefix, backend=backend)
                gd = torch.zeros_like(delta)
                gg = ops.mix_backward_(grad_out, gates, delta, gd, prefix, backend=backend)
                errs = {
                    "out": ((out.double() - out64).abs().max() / out64.abs().max()).item(),
                    "grad_gates": ((gg.double() - gg64).abs().max() / gg64.abs().max()).item(),
                    "grad_delta": ((gd[:P].double() - rows64).abs().max() / rows64.abs().max()).item(),
                }
                good = all(e <= tol[dtype] for e in errs.values()) and bool(torch.isfinite(gd[:P][~unread[:P]]).all())
                good &= bool((gd[unread] == 0).all())
                ok &= good
                log(f"  large {name} {str(dtype).removeprefix('torch.')} {backend}: "
                    + ", ".join(f"{k} {v:.2e}" for k, v in errs.items()) + (" PASS" if good else " FAIL"))
            del delta, grad_out
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return ok


def stage_bench(log, out_dir, sweep, dry_run=False) -> bool:
    cmd = [sys.executable, "benchmarks/bench_kernels.py", "--markdown", "--json", os.path.join(out_dir, "bench.json")]
    if sweep:
        cmd.append("--sweep")
    if dry_run:
        cmd.append("--quick")
    ok, stdout = run(cmd, log, timeout=3000, tail=400)
    with open(os.path.join(out_dir, "bench.md"), "w") as f:
        f.write(stdout)
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "benchmarks", "gpu", "out"))
    p.add_argument("--stages", default="build,tests,large,bench", help="comma list of the stages to run, in order")
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--skip-bench", action="store_true")
    p.add_argument("--sweep", action="store_true", help="also sweep Triton block sizes in the benchmark")
    p.add_argument("--dry-run", action="store_true", help="every stage on a CPU, at tiny shapes (see above)")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log = Log(os.path.join(args.out, "log.txt"))
    import torch
    if args.dry_run:
        log(f"dry run on the CPU, torch {torch.__version__}, TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')}")
    elif not torch.cuda.is_available():
        log("no CUDA device: this script is for a GPU machine (CPU tests: pytest tests/ops; on a CPU, --dry-run "
            "checks that its stages run)")
        sys.exit(2)
    else:
        log(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    results = {}
    stages = [("build", lambda: stage_build(log), args.skip_build),
              ("tests", lambda: stage_tests(log), args.skip_tests),
              ("large", lambda: stage_large(log, args.dry_run), False),
              ("bench", lambda: stage_bench(log, args.out, args.sweep, args.dry_run), args.skip_bench)]
    chosen = args.stages.split(",")
    unknown = set(chosen) - {name for name, _, _ in stages}
    if unknown:
        p.error(f"unknown stage(s) {sorted(unknown)}; choose from build, tests, large, bench")
    for name, fn, skip in stages:
        if skip or name not in chosen:
            continue
        log(f"== {name}")
        t = time.time()
        try:
            results[name] = fn()
        except Exception as e:  # noqa: BLE001  (report and go on to the next stage)
            log(f"  {type(e).__name__}: {e}")
            results[name] = False
        log(f"== {name}: {'PASS' if results[name] else 'FAIL'} ({time.time() - t:.0f} s)")
    log("summary: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in results.items()))
    sys.exit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
