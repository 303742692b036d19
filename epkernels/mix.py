"""Masked mixing over the delta stack: Triton kernels and their launchers.

    out[r] = base + sum_{w < prefix[r]} gates[r, w] * delta[w]          (forward)
    grad_gates[r, w] = <grad_out[r], delta[w]>       for w < prefix[r]  (backward, a reduction over N)
    grad_delta[w]  (+)= sum_r gates[r, w] * grad_out[r]                  (backward, rows < P)

Memory-bound skinny GEMMs (R readers x P writers x N = B*S*D columns). Design choices:
- Forward: one program per BLOCK_N columns holds every reader of the group (padded to BLOCK_R) and
  loops over writer chunks, so each delta row is read from memory once.
- A writer whose gate column (after prefix masking) is all zero is never read: the delta load is
  masked per row, and a chunk with no active writer skips its load and dot entirely. Rows >= P
  are never addressed. NaN in those rows therefore cannot reach the results.
- Backward: one program per (writer chunk, N split). It reduces grad_out . delta over its N range
  into a partial (split, R, P) buffer summed on the host (deterministic, no atomics) and, in the
  same pass over grad_out, writes or accumulates the delta gradient of its writer rows. The writer
  chunk is the fastest grid axis, so the programs sharing an N range (and its grad_out tile, kept
  in L2 with evict_last) run together; delta and its gradient stream through with evict_first.
- Accumulation is float32 (float64 for float64 inputs). float32 dots use input_precision="ieee"
  unless asked otherwise ("tf32x3": tensor cores at about float32 accuracy; "tf32"). With bf16/fp16
  delta the float32 gates are split into a high and a low half-precision part (two tensor-core
  dots), which keeps about 16 bits of each gate; precision="tf32" rounds them instead (one dot).
- Reader groups larger than the largest BLOCK_R are handled by the launcher, one launch each.
"""
from __future__ import annotations

import functools
import itertools

import torch
import triton
import triton.language as tl

from ._utils import (INTERPRETED, acc_dtype, check_device, launch, pow2_at_least, record_launches, target_programs,
                     unique)

# Never specialised on their values (Triton compiles another variant for an integer equal to 1 or
# divisible by 16): reader and writer counts, the gates' row stride (P), flags and trip counts vary
# from launch to launch and barely help the code (gate tiles are small), so each configuration
# compiles once, and scripts/check_triton_compile.py checks the variants that actually run.
_NOT_SPECIALIZED = ("has_prefix", "R", "P", "stride_g")
_TL_DTYPE = {torch.float32: tl.float32, torch.float64: tl.float64}


# ---------------------------------------------------------------------------------- helpers

@triton.jit
def _reader_limits(prefix_ptr, has_prefix, offs_r, R, P):
    """Each reader's valid writer count, clamped to [0, P]; P without a prefix; 0 for padding readers.

    has_prefix is 0 or 1 (without a prefix nothing is loaded); flags enter masks as bounds
    (offs < R * flag), which every Triton interpreter from 3.6 to 3.9 accepts.
    """
    lim = tl.load(prefix_ptr + offs_r, mask=offs_r < R * has_prefix, other=P).to(tl.int32)
    return tl.where(offs_r < R, tl.minimum(tl.maximum(lim, 0), P), 0)


@triton.jit
def _gate_tile(gates_ptr, stride_g, offs_r, offs_w, limit, ACC: tl.constexpr):
    """Gates (readers x writers), zero (and not loaded) past each reader's prefix."""
    valid = offs_w[None, :] < limit[:, None]
    z = tl.load(gates_ptr + offs_r[:, None].to(tl.int64) * stride_g + offs_w[None, :], mask=valid, other=0.0)
    return z.to(ACC)


@triton.jit
def _gates_dot(z, x, acc, DOT_MODE: tl.constexpr, PRECISION: tl.constexpr):
    """acc += z @ x, z in the accumulation type, x in the storage type.

    DOT_MODE 0: float32; 1: float64; 2: half types, z split into hi + lo halves; 3: the same
    split with every operand widened to float32 first (the interpreter's bf16 dot is wrong);
    4: half types, z rounded to the half type (one dot: the "tf32" speed setting).
    """
    if DOT_MODE == 0:
        acc = tl.dot(z, x, acc, input_precision=PRECISION)
    elif DOT_MODE == 1:
        acc = tl.dot(z, x, acc, input_precision="ieee", out_dtype=tl.float64)
    elif DOT_MODE == 2:
        z_hi = z.to(x.dtype)
        z_lo = (z - z_hi.to(tl.float32)).to(x.dtype)
        acc = tl.dot(z_hi, x, acc)
        acc = tl.dot(z_lo, x, acc)
    elif DOT_MODE == 4:
        acc = tl.dot(z.to(x.dtype), x, acc)
    else:
        z_hi = z.to(x.dtype).to(tl.float32)
        z_lo = (z - z_hi).to(x.dtype).to(tl.float32)
        x = x.to(tl.float32)
        acc = tl.dot(z_hi, x, acc, input_precision="ieee")
        acc = tl.dot(z_lo, x, acc, input_precision="ieee")
    return acc


@triton.jit
def _data_dot(a, b, acc, DOT_MODE: tl.constexpr, PRECISION: tl.constexpr):
    """acc += a @ b, both in the storage type (half products are exact in float32)."""
    if DOT_MODE == 0:
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    elif DOT_MODE == 1:
        acc = tl.dot(a, b, acc, input_precision="ieee", out_dtype=tl.float64)
    elif DOT_MODE == 2 or DOT_MODE == 4:
        acc = tl.dot(a, b, acc)
    else:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return acc


# ---------------------------------------------------------------------------------- forward

@triton.jit(do_not_specialize=_NOT_SPECIALIZED)
def _mix_fwd_kernel(gates_ptr, delta_ptr, base_ptr, prefix_ptr, out_ptr, has_prefix,
                    R, P, N, stride_g, stride_d, stride_b, stride_o,
                    DOT_MODE: tl.constexpr, PRECISION: tl.constexpr, ACC: tl.constexpr, SKIP_EMPTY: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_n = tl.program_id(0)
    offs_r = tl.arange(0, BLOCK_R)
    offs_n = pid_n.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    r_ok = offs_r < R
    n_ok = offs_n < N
    limit = _reader_limits(prefix_ptr, has_prefix, offs_r, R, P)
    top = tl.max(limit, axis=0)  # no reader looks past this writer

    acc = tl.zeros((BLOCK_R, BLOCK_N), dtype=ACC)
    for w0 in range(0, top, BLOCK_W):
        offs_w = w0 + tl.arange(0, BLOCK_W)
        z = _gate_tile(gates_ptr, stride_g, offs_r, offs_w, limit, ACC)
        active = tl.sum((z != 0).to(tl.int32), axis=0) > 0
        if SKIP_EMPTY:  # a branch saves the dot of an all-zero chunk but may stop load pipelining
            if tl.sum(active.to(tl.int32), axis=0) > 0:
                d = tl.load(delta_ptr + offs_w[:, None].to(tl.int64) * stride_d + offs_n[None, :],
                            mask=active[:, None] & n_ok[None, :], other=0.0,
                            eviction_policy="evict_first")
                acc = _gates_dot(z, d, acc, DOT_MODE, PRECISION)
        else:
            d = tl.load(delta_ptr + offs_w[:, None].to(tl.int64) * stride_d + offs_n[None, :],
                        mask=active[:, None] & n_ok[None, :], other=0.0,
                        eviction_policy="evict_first")
            acc = _gates_dot(z, d, acc, DOT_MODE, PRECISION)

    # stride_b 0: every reader adds the same base row (cache hits after the first).
    b = tl.load(base_ptr + offs_r[:, None].to(tl.int64) * stride_b + offs_n[None, :],
                mask=r_ok[:, None] & n_ok[None, :], other=0.0)
    out = acc + b.to(ACC)
    tl.store(out_ptr + offs_r[:, None].to(tl.int64) * stride_o + offs_n[None, :],
             out.to(out_ptr.dtype.element_ty), mask=r_ok[:, None] & n_ok[None, :])


# --------------------------------------------------------------------------------- backward

@triton.jit(do_not_specialize=_NOT_SPECIALIZED + ("accumulate", "tiles_per_split"))
def _mix_bwd_kernel(grad_out_ptr, gates_ptr, delta_ptr, grad_delta_ptr, prefix_ptr, partial_ptr, has_prefix,
                    accumulate, R, P, N, stride_go, stride_g, stride_d, stride_gd, tiles_per_split,
                    NEED_GD: tl.constexpr, DOT_MODE: tl.constexpr, PRECISION: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_w = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_r = tl.arange(0, BLOCK_R)
    offs_w = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)
    r_ok = offs_r < R
    w_ok = offs_w < P
    limit = _reader_limits(prefix_ptr, has_prefix, offs_r, R, P)
    z = _gate_tile(gates_ptr, stride_g, offs_r, offs_w, limit, ACC)
    active = tl.sum((z != 0).to(tl.int32), axis=0) > 0
    n_active = tl.sum(active.to(tl.int32), axis=0)

    # A chunk with no active writer has nothing to compute, unless it must write zero gradients.
    n_tiles = tl.where(n_active > 0, tiles_per_split, 0)
    if NEED_GD:
        n_tiles = tl.where(accumulate != 0, n_tiles, tiles_per_split)
    zt = tl.trans(z)
    dz = tl.zeros((BLOCK_R, BLOCK_W), dtype=ACC)
    for t in range(n_tiles):
        offs_n = (pid_s * tiles_per_split + t).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        g = tl.load(grad_out_ptr + offs_r[:, None].to(tl.int64) * stride_go + offs_n[None, :],
                    mask=r_ok[:, None] & n_ok[None, :], other=0.0, eviction_policy="evict_last")
        d = tl.load(delta_ptr + offs_w[:, None].to(tl.int64) * stride_d + offs_n[None, :],
                    mask=active[:, None] & n_ok[None, :], other=0.0,
                        eviction_policy="evict_first")
        dz = _data_dot(g, tl.trans(d), dz, DOT_MODE, PRECISION)
        if NEED_GD:
            gd = _gates_dot(zt, g, tl.zeros((BLOCK_W, BLOCK_N), dtype=ACC), DOT_MODE, PRECISION)
            # accumulate (0 or 1): add into active writers' rows only; else overwrite every row < P
            # (zeros for inactive writers, whose delta is never read).
            ptrs = grad_delta_ptr + offs_w[:, None].to(tl.int64) * stride_gd + offs_n[None, :]
            added = active & (offs_w < P * accumulate)
            written = active | (offs_w < P * (1 - accumulate))
            old = tl.load(ptrs, mask=added[:, None] & n_ok[None, :], other=0.0, eviction_policy="evict_first")
            gd = tl.where(active[:, None], old.to(ACC) + gd, 0.0)
            tl.store(ptrs, gd.to(grad_delta_ptr.dtype.element_ty), mask=written[:, None] & n_ok[None, :])

    dz = tl.where((offs_w[None, :] < limit[:, None]) & active[None, :], dz, 0.0)
    p_ptrs = partial_ptr + (pid_s * R + offs_r[:, None]).to(tl.int64) * P + offs_w[None, :]
    tl.store(p_ptrs, dz, mask=r_ok[:, None] & w_ok[None, :])


# -------------------------------------------------------------------------------- launchers

PRECISIONS = ("ieee", "tf32x3", "tf32")


def _dot_mode(dtype: torch.dtype, precision: str) -> int:
    """precision: float32 dots' input_precision; "tf32" also rounds gates to bf16/fp16 for half data."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if dtype == torch.float32:
        return 0
    if dtype == torch.float64:
        return 1
    if dtype in (torch.bfloat16, torch.float16):
        return 3 if INTERPRETED else (4 if precision == "tf32" else 2)
    raise TypeError(f"epkernels.mix: unsupported delta dtype {dtype}")


def _dot_constexprs(dtype: torch.dtype, precision: str) -> dict:
    """DOT_MODE and PRECISION; PRECISION is "ieee" wherever it does not change the code (one compile)."""
    mode = _dot_mode(dtype, precision)
    return {"DOT_MODE": mode, "PRECISION": precision if mode == 0 else "ieee"}


@functools.lru_cache(maxsize=None)
def _no_prefix(device: torch.device) -> torch.Tensor:
    """The prefix pointer of launches without a prefix: never read (has_prefix is 0), int64 like a
    real prefix so that both compile to the same variant."""
    return torch.empty(1, dtype=torch.int64, device=device)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """A 2-D tensor whose rows are contiguous (any row stride); copies only if needed."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _reader_groups(R: int, group: int):
    return [(r0, min(R, r0 + group)) for r0 in range(0, R, group)]


# Launch tiles by dot family and BLOCK_R: (BLOCK_W, BLOCK_N, num_warps, num_stages). Picked with
# scripts/check_triton_compile.py so that none spills registers or needs more than 99 KB of
# shared memory on sm_80 or sm_90 (the ptxas -v figures are in benchmarks/RESULTS.md), keeping
# rows of at least 64 bytes and, in the forward, BLOCK_N large against BLOCK_R (every program
# re-reads the group's gates: R * 4 bytes per BLOCK_N delta columns). The largest BLOCK_R of a
# family is its reader group size.
_FORWARD_TILES = {
    "fp32": {16: (32, 128, 4, 3), 32: (32, 128, 8, 3), 64: (32, 128, 8, 2), 128: (16, 64, 8, 3)},
    # Half the writer chunk where more stays live per chunk: "tf32x3" splits both operands in
    # two, and the skip_empty branch keeps the whole tile around the dot.
    "fp32 narrow": {16: (16, 128, 4, 3), 32: (16, 128, 4, 3), 64: (16, 128, 8, 3), 128: (16, 64, 8, 3)},
    "fp64": {16: (16, 128, 4, 3), 32: (16, 128, 4, 3), 64: (16, 64, 8, 3), 128: (16, 32, 8, 3)},
    "half": {16: (32, 128, 4, 3), 32: (32, 128, 4, 3), 64: (16, 128, 8, 3), 128: (16, 128, 8, 3)},
    "half skip": {16: (32, 128, 4, 3), 32: (32, 128, 4, 3), 64: (32, 64, 8, 3), 128: (32, 64, 8, 3)},
}

# The backward holds two dots' operands per tile. Triton lowers float32 "ieee" dots to FMAs and
# loads a thread's whole K slice of both operands before the first FMA (so the PTX shows; K is
# BLOCK_N for the gate gradient, BLOCK_R for the delta gradient): those tiles stay at 32 x 32,
# and at 128 readers 32 x 16.
# "tf32x3" splits every operand in two and spilled at 128 readers in every tile tried: its
# groups hold 64 readers.
_BACKWARD_TILES = {
    "fp32": {16: (32, 32, 4, 2), 32: (32, 32, 4, 3), 64: (32, 32, 8, 2), 128: (32, 16, 4, 2)},
    "tf32x3": {16: (16, 32, 4, 2), 32: (16, 32, 4, 2), 64: (32, 16, 4, 2)},
    "tf32": {16: (32, 32, 4, 2), 32: (32, 32, 4, 2), 64: (32, 32, 4, 2), 128: (32, 32, 4, 2)},
    "fp64": {16: (16, 16, 4, 2), 32: (16, 16, 4, 2), 64: (16, 16, 4, 2), 128: (16, 16, 4, 2)},
    "half": {16: (32, 64, 8, 2), 32: (32, 64, 8, 2), 64: (32, 64, 8, 2), 128: (32, 64, 8, 2)},
}


def _family(dtype: torch.dtype, precision: str) -> str:
    if dtype == torch.float64:
        return "fp64"
    if dtype in (torch.bfloat16, torch.float16):
        return "half"
    _dot_mode(dtype, precision)  # validates both
    return "fp32" if precision == "ieee" else precision


def _tile(tiles: dict, R: int) -> dict:
    block_r = pow2_at_least(min(R, max(tiles)))
    block_w, block_n, num_warps, num_stages = tiles[block_r]
    return {"block_r": block_r, "block_w": block_w, "block_n": block_n, "num_warps": num_warps,
            "num_stages": num_stages}


def default_forward_blocks(R: int, dtype: torch.dtype, precision: str = "ieee", skip_empty: bool = False) -> dict:
    """The forward's launch configuration for a group of R readers (block_r: the group size for more)."""
    family = _family(dtype, precision)
    if family == "half":
        key = "half skip" if skip_empty else "half"
    elif family == "fp64":
        key = "fp64"
    else:
        key = "fp32 narrow" if skip_empty or family == "tf32x3" else "fp32"
    return _tile(_FORWARD_TILES[key], R)


def default_backward_blocks(R: int, dtype: torch.dtype, precision: str = "ieee") -> dict:
    """The backward's launch configuration for a group of R readers (block_r: the group size for more)."""
    return _tile(_BACKWARD_TILES[_family(dtype, precision)], R)


def _blocks(defaults: dict, given: dict) -> dict:
    out = dict(defaults)
    out.update({k: v for k, v in given.items() if v is not None})
    return out


def mix_forward(gates: torch.Tensor, delta: torch.Tensor, base: torch.Tensor,
                prefix: torch.Tensor | None = None, *, precision: str = "ieee",
                block_r: int | None = None, block_w: int | None = None, block_n: int | None = None,
                num_warps: int | None = None, num_stages: int | None = None,
                skip_empty: bool = False) -> torch.Tensor:
    """out (R, N) in delta's dtype = base + gates (masked to each prefix) @ delta[:P].

    skip_empty: branch around writer chunks with no active writer (their rows are never loaded
    either way; the branch also skips the dot, at the risk of defeating load pipelining).
    Block sizes, warps and stages left None take the defaults of each reader group's size
    (default_forward_blocks); only those are compile-checked (scripts/check_triton_compile.py).
    """
    check_device(gates, delta, base, prefix)
    R, P = gates.shape
    N = delta.shape[1]
    # One pointer type per argument and delta dtype (no copies for the documented dtypes).
    delta = _rows(delta)
    gates, base = _rows(gates.to(acc_dtype(delta.dtype))), _rows(base.to(delta.dtype))
    prefix = prefix.to(torch.int64) if prefix is not None else None
    out = torch.empty(R, N, dtype=delta.dtype, device=delta.device)
    if R == 0 or N == 0:
        return out
    given = {"block_r": block_r, "block_w": block_w, "block_n": block_n, "num_warps": num_warps,
             "num_stages": num_stages}
    acc = _TL_DTYPE[acc_dtype(delta.dtype)]
    base_rows = base.dim() == 2
    group = block_r or default_forward_blocks(R, delta.dtype, precision, skip_empty)["block_r"]
    for r0, r1 in _reader_groups(R, group):
        cfg = _blocks(default_forward_blocks(r1 - r0, delta.dtype, precision, skip_empty), given)
        args = {"gates_ptr": gates[r0:r1], "delta_ptr": delta, "base_ptr": base[r0:r1] if base_rows else base,
                "prefix_ptr": prefix[r0:r1] if prefix is not None else _no_prefix(delta.device),
                "out_ptr": out[r0:r1], "has_prefix": int(prefix is not None), "R": r1 - r0, "P": P, "N": N,
                "stride_g": gates.stride(0), "stride_d": delta.stride(0),
                "stride_b": base.stride(0) if base_rows else 0, "stride_o": out.stride(0)}
        constexprs = {**_dot_constexprs(delta.dtype, precision), "ACC": acc, "SKIP_EMPTY": skip_empty,
                      "BLOCK_R": pow2_at_least(min(r1 - r0, cfg["block_r"])), "BLOCK_W": cfg["block_w"],
                      "BLOCK_N": cfg["block_n"]}
        launch(_mix_fwd_kernel, (triton.cdiv(N, cfg["block_n"]),), args, constexprs, cfg["num_warps"],
               cfg["num_stages"])
    return out


def mix_backward(grad_out: torch.Tensor, gates: torch.Tensor, delta: torch.Tensor,
                 prefix: torch.Tensor | None = None, grad_delta: torch.Tensor | None = None,
                 accumulate: bool = True, *, precision: str = "ieee", splits: int | None = None,
                 block_r: int | None = None, block_w: int | None = None, block_n: int | None = None,
                 num_warps: int | None = None, num_stages: int | None = None) -> torch.Tensor:
    """Gate gradient (R, P) in the accumulation dtype; the delta gradient into grad_delta[:P].

    grad_delta None: not computed. accumulate=True adds into the rows of active writers only;
    accumulate=False overwrites rows < P (inactive writers get exact zeros, their delta unread).
    splits: how many N ranges the gate reduction is cut into (default: enough to fill the device).
    Block sizes as in mix_forward (defaults: default_backward_blocks of each reader group's size).
    """
    check_device(grad_out, gates, delta, grad_delta, prefix)
    R, P = gates.shape
    N = delta.shape[1]
    acc_t = acc_dtype(delta.dtype)
    grad_out, gates, delta = _rows(grad_out.to(delta.dtype)), _rows(gates.to(acc_t)), _rows(delta)
    prefix = prefix.to(torch.int64) if prefix is not None else None
    if grad_delta is not None and grad_delta.stride(-1) != 1:
        raise ValueError("epkernels.mix_backward: grad_delta rows must be contiguous (it is updated in place)")
    if R == 0 or P == 0 or N == 0:
        if grad_delta is not None and not accumulate:
            grad_delta[:P].zero_()
        return torch.zeros(R, P, dtype=acc_t, device=gates.device)
    given = {"block_r": block_r, "block_w": block_w, "block_n": block_n, "num_warps": num_warps,
             "num_stages": num_stages}
    grad_gates = torch.empty(R, P, dtype=acc_t, device=gates.device)
    gd = grad_delta if grad_delta is not None else delta  # placeholder pointer when unused
    group = block_r or default_backward_blocks(R, delta.dtype, precision)["block_r"]
    for i, (r0, r1) in enumerate(_reader_groups(R, group)):
        cfg = _blocks(default_backward_blocks(r1 - r0, delta.dtype, precision), given)
        w_chunks = triton.cdiv(P, cfg["block_w"])
        n_tiles = triton.cdiv(N, cfg["block_n"])
        want = splits if splits is not None else triton.cdiv(target_programs(delta.device), w_chunks)
        tiles_per_split = triton.cdiv(n_tiles, max(1, min(want, n_tiles)))
        n_splits = triton.cdiv(n_tiles, tiles_per_split)
        partial = torch.empty(n_splits, r1 - r0, P, dtype=acc_t, device=gates.device)
        args = {"grad_out_ptr": grad_out[r0:r1], "gates_ptr": gates[r0:r1], "delta_ptr": delta,
                "grad_delta_ptr": gd, "prefix_ptr": prefix[r0:r1] if prefix is not None else _no_prefix(delta.device),
                "partial_ptr": partial, "has_prefix": int(prefix is not None),
                # later groups add to what the first wrote
                "accumulate": int(accumulate or i > 0), "R": r1 - r0, "P": P, "N": N, "stride_go": grad_out.stride(0),
                "stride_g": gates.stride(0), "stride_d": delta.stride(0), "stride_gd": gd.stride(0),
                "tiles_per_split": tiles_per_split}
        constexprs = {"NEED_GD": grad_delta is not None, **_dot_constexprs(delta.dtype, precision),
                      "ACC": _TL_DTYPE[acc_t], "BLOCK_R": pow2_at_least(min(r1 - r0, cfg["block_r"])),
                      "BLOCK_W": cfg["block_w"], "BLOCK_N": cfg["block_n"]}
        launch(_mix_bwd_kernel, (w_chunks, n_splits), args, constexprs, cfg["num_warps"], cfg["num_stages"])
        grad_gates[r0:r1] = partial.sum(dim=0)  # fixed order: deterministic
    return grad_gates


# ------------------------------------------------------------------ what the launchers can pick

def default_launches() -> list:
    """Every LaunchConfig the launchers pick when no block size is given, without a device.

    Runs mix_forward and mix_backward themselves on meta tensors with launching switched off, so
    the list cannot drift from the launchers: every delta dtype, precision and skip_empty, prefix
    or not, shared or per-reader base, each backward use (no delta gradient, overwrite, accumulate;
    a float32 gradient buffer for half delta), and every reader count up to one full group and
    one more reader (the configuration of a group depends only on its own size).
    """
    meta = {"device": "meta"}
    P, N = 3, 5
    largest_group = max(max(tiles) for tiles in (*_FORWARD_TILES.values(), *_BACKWARD_TILES.values()))
    with record_launches(dry_run=True) as rec:
        for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
            grad_dtypes = {dtype, torch.float32} if dtype in (torch.bfloat16, torch.float16) else {dtype}
            for R in range(1, largest_group + 2):
                gates = torch.empty(R, P, **meta)
                delta = torch.empty(P, N, dtype=dtype, **meta)
                grad_out = torch.empty(R, N, dtype=dtype, **meta)
                for prefix, precision in itertools.product((None, torch.empty(R, dtype=torch.int64, **meta)),
                                                           PRECISIONS):
                    for base, skip_empty in itertools.product((torch.empty(N, dtype=dtype, **meta),
                                                               torch.empty(R, N, dtype=dtype, **meta)), (False, True)):
                        mix_forward(gates, delta, base, prefix, precision=precision, skip_empty=skip_empty)
                    mix_backward(grad_out, gates, delta, prefix, None, precision=precision)
                    for grad_dtype, accumulate in itertools.product(grad_dtypes, (False, True)):
                        mix_backward(grad_out, gates, delta, prefix, torch.empty(P, N, dtype=grad_dtype, **meta),
                                     accumulate, precision=precision)
            rec[:] = unique(rec)
    return rec
