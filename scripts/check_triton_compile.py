#!/usr/bin/env python
"""Compile every Triton kernel configuration the launchers pick, ahead of time and without a GPU,
for sm_80 and sm_90; fail on a compile error, a register spill or too much shared memory.

    python scripts/check_triton_compile.py                   # sm_80 and sm_90, exit status 1 on failure
    python scripts/check_triton_compile.py --arch 90 --markdown
    python scripts/check_triton_compile.py --unaligned       # the no-alignment specialisation
    python scripts/check_triton_compile.py --kernel hard_concrete   # some kernels only

The list is epkernels.default_launches(): the launchers themselves, run on meta tensors with
launching switched off, so it cannot drift from them (block sizes a caller passes explicitly are
the caller's to check). Each configuration is compiled with triton.compile(ASTSource(...),
target=GPUTarget("cuda", arch, 32)) in a fresh cache, so Triton runs ptxas on it; registers,
spills and stack come from that ptxas run's own `-v` log (the compile metadata fills them only
when a driver loads the cubin), shared memory from the compile metadata.

Specialisation: Triton also compiles on argument values (16-byte aligned pointers, integers
divisible by 16). By default every pointer and every integer the kernel lets Triton specialise
is taken as aligned, as at layer shapes (N = B*S*D a multiple of 16); --unaligned takes none.
The interpreter cannot catch what only the compiler rejects (tl.dot shape and dtype rules,
float64 dots, resource limits): this check is where those surface.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import io
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# The largest shared memory one block may use on every architecture the project builds for
# (8.0, 8.6, 8.9, 9.0): 99 KB = 101,376 bytes on 8.6 and 8.9 (CUDA C++ Programming Guide,
# "Technical Specifications per Compute Capability": maximum shared memory per thread block;
# CCCL's arch_traits: 100 KiB per SM less 1 KiB reserved per block). 8.0: 163 KB, 9.0: 227 KB.
SMEM_LIMIT = 101_376

_REGS = re.compile(r"Used (\d+) registers")
_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")

CONFIGS: list = []  # filled in main(); the forked workers inherit it


def _prepare_environment(cache_dir: str) -> None:
    """Before Triton is imported: compile (not interpret), a fresh cache so that ptxas runs for
    every configuration, and ptxas's -v log printed on stdout for us to read."""
    os.environ["TRITON_INTERPRET"] = "0"
    os.environ["TRITON_CACHE_DIR"] = cache_dir
    os.environ["TRITON_DUMP_PTXAS_LOG"] = "1"
    sys.path.insert(0, ROOT)


def _attrs(kernel, signature: dict, aligned: bool, backend) -> dict:
    """Triton's divisibility attributes: pointers and the integers it may specialise, if aligned."""
    if not aligned:
        return {}
    names = kernel.arg_names
    return {(names.index(name),): backend.parse_attr("D") for name, ty in signature.items()
            if ty != "constexpr" and (ty.startswith("*") or ty in ("i32", "i64"))
            and not kernel.params[names.index(name)].do_not_specialize}


def compile_one(index: int, arch: int, aligned: bool) -> dict:
    """Compiles CONFIGS[index] for sm_<arch>; returns registers, spills, stack, shared memory or the error."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler.compiler import make_backend

    cfg = CONFIGS[index]
    target = GPUTarget("cuda", arch, 32)
    signature = dict(cfg.signature) | {name: "constexpr" for name, _ in cfg.constexprs}
    signature = {name: signature[name] for name in cfg.kernel.arg_names}
    src = ASTSource(cfg.kernel, signature, dict(cfg.constexprs), _attrs(cfg.kernel, signature, aligned,
                                                                         make_backend(target)))
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            kernel = triton.compile(src, target=target,
                                    options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})
    except Exception as e:  # noqa: BLE001  (any compile failure is a result to report)
        first = str(e).strip().splitlines()
        return {"error": f"{type(e).__name__}: {first[-1] if first else ''}"[:300]}
    text = log.getvalue()
    regs, spills = _REGS.search(text), _SPILLS.search(text)
    if not (regs and spills):
        return {"error": "no ptxas -v report in the compile's output (TRITON_DUMP_PTXAS_LOG unsupported?)"}
    return {"regs": int(regs.group(1)), "stack": int(spills.group(1)), "spill_stores": int(spills.group(2)),
            "spill_loads": int(spills.group(3)), "smem": kernel.metadata.shared}


# ------------------------------------------------------------------------------------ report

def describe(cfg) -> tuple[str, str]:
    """(dtypes, configuration) for the table: the data pointers' types, then the constexprs,
    warps and stages, and any scalar that is not a plain 32-bit integer."""
    data = [ty[1:] for name, ty in cfg.signature if ty.startswith("*") and name not in
            ("gates_ptr", "prefix_ptr", "partial_ptr")]
    dtypes = "/".join(dict.fromkeys(data))
    c = dict(cfg.constexprs)
    parts = []
    if "BLOCK_R" in c:
        parts.append(f"R{c['BLOCK_R']} W{c['BLOCK_W']} N{c['BLOCK_N']}")
    elif "BLOCK" in c:
        parts.append(f"BLOCK {c['BLOCK']}")
    parts.append(f"w{cfg.num_warps} s{cfg.num_stages}")
    if "DOT_MODE" in c:
        parts.append(f"dot{c['DOT_MODE']}" + (f" {c['PRECISION']}" if c["DOT_MODE"] == 0 else ""))
    parts += [k for k in ("SKIP_EMPTY", "NEED_GD") if c.get(k)]
    parts += [f"{name} {ty}" for name, ty in cfg.signature if not ty.startswith("*") and ty != "i32"
              and name != "eps"]
    return dtypes, " ".join(parts)


def problems(res: dict) -> list[str]:
    if "error" in res:
        return [res["error"]]
    out = []
    if res["spill_stores"] or res["spill_loads"]:
        out.append(f"spills {res['spill_stores']} B stored, {res['spill_loads']} B loaded")
    if res["smem"] > SMEM_LIMIT:
        out.append(f"shared memory {res['smem']} B > {SMEM_LIMIT} B")
    return out


def print_results(rows, markdown: bool) -> None:
    head = ["kernel", "arch", "dtype", "configuration", "registers", "spill st/ld (B)", "stack (B)", "smem (B)",
            "result"]
    table = []
    for cfg, arch, res in rows:
        dtypes, config = describe(cfg)
        bad = problems(res)
        if "error" in res:
            nums = ["-", "-", "-", "-"]
        else:
            nums = [str(res["regs"]), f"{res['spill_stores']}/{res['spill_loads']}", str(res["stack"]),
                    str(res["smem"])]
        table.append([cfg.name.strip("_").removesuffix("_kernel"), f"sm_{arch}", dtypes, config, *nums,
                      "; ".join(bad) if bad else "ok"])
    from edgeprune.bench_kernels import print_table  # after _prepare_environment: it imports Triton
    print_table(head, table, markdown)


def toolchain(archs) -> str:
    """Triton's version and the ptxas it runs for each architecture (3.9 takes a newer one for sm_90)."""
    import triton
    from triton.backends.nvidia import compiler as nvidia
    tools = []
    for arch in archs:
        try:
            ptxas = nvidia.get_ptxas(arch).path
            out = subprocess.run([ptxas, "--version"], capture_output=True, text=True, check=True).stdout
            release = re.search(r"release ([\d.]+)", out)
            tools.append(f"sm_{arch}: ptxas {release.group(1) if release else '?'} ({ptxas})")
        except Exception:  # noqa: BLE001  (the version line is information, never a failure)
            tools.append(f"sm_{arch}: ptxas ?")
    return f"triton {triton.__version__}; " + "; ".join(tools)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="80,90", help="comma-separated compute capabilities (default 80,90)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiles (default: all cores)")
    p.add_argument("--unaligned", action="store_true", help="compile without alignment or divisibility hints (odd N)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--kernel", default="", help="only kernels whose name contains this (default: all)")
    args = p.parse_args(argv)
    try:
        archs = [int(a) for a in args.arch.split(",") if a.strip()]
    except ValueError:
        p.error(f"--arch takes comma-separated integers such as 80,90, got {args.arch!r}")
    if not archs or any(a < 80 for a in archs):
        p.error(f"--arch: the kernels target compute capability 8.0 and newer, got {args.arch!r}")

    cache_dir = tempfile.mkdtemp(prefix="edgeprune-triton-aot-")
    _prepare_environment(cache_dir)
    t0 = time.perf_counter()
    try:
        import epkernels
        CONFIGS[:] = [c for c in epkernels.default_launches() if args.kernel in c.name]
        if not CONFIGS:
            p.error(f"--kernel {args.kernel!r} matches no kernel of epkernels.default_launches()")
        print(f"{len(CONFIGS)} configurations x {len(archs)} architectures, {toolchain(archs)}, "
              f"{'no alignment hints' if args.unaligned else 'aligned pointers and strides'}", flush=True)
        tasks = [(i, arch) for arch in archs for i in range(len(CONFIGS))]
        # fork: workers inherit CONFIGS and the environment; nothing here has touched a GPU driver.
        with cf.ProcessPoolExecutor(max_workers=max(1, args.jobs),
                                    mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(compile_one, *zip(*tasks), [not args.unaligned] * len(tasks)))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    rows = [(CONFIGS[i], arch, res) for (i, arch), res in zip(tasks, results)]
    print_results(rows, args.markdown)
    failed = [(cfg, arch, problems(res)) for cfg, arch, res in rows if problems(res)]
    print(f"\n{len(rows)} compiles in {time.perf_counter() - t0:.0f} s: "
          f"{len(rows) - len(failed)} ok, {len(failed)} failed (spills, compile errors, shared memory over "
          f"{SMEM_LIMIT} B)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
