"""The Triton launchers' configurations: every launch they make at default settings is one that
scripts/check_triton_compile.py compiles (epkernels.default_launches()), and the recorded
signature types are Triton's own. Block sizes passed explicitly are the caller's choice, not the
launchers', and are not in the list (the benchmark sweep passes them)."""
import itertools

import pytest
import torch
from edgeprune.ops import reference as ref
from ops_cases import mix_inputs, require

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
# 1 and 129 readers: the smallest group and a second group of one reader after a full one;
# 36: GPT-2 small's attention readers.
READERS = (1, 36, 129)


def _close(actual, expected, dtype):
    tol = {torch.float64: 1e-10, torch.float32: 1e-4}.get(dtype, 5e-2)
    torch.testing.assert_close(actual.double().cpu(), expected.double().cpu(), rtol=tol, atol=tol)


def test_every_default_launch_is_in_the_compiled_list():
    require("triton", "mix", torch.float32)
    import epkernels
    from epkernels import hard_concrete as hc
    from epkernels import mix as k
    from epkernels._utils import record_launches

    listed = set(epkernels.default_launches())
    P, N = 7, 24
    with record_launches() as launches:
        for dtype in DTYPES:
            precisions = ("ieee", "tf32x3", "tf32") if dtype == torch.float32 else ("ieee",)
            for R, precision in itertools.product(READERS, precisions):
                for prefix, base_rows in (("random", False), (None, True)):
                    gates, delta, base, pre, unread = mix_inputs(R, P, P + 1, N, dtype, torch.device("cpu"),
                                                                 prefix=prefix, base_rows=base_rows)
                    out = k.mix_forward(gates, delta, base, pre, precision=precision)
                    _close(out, ref.mix_reference(gates.double(), delta.double(), base.double(), pre), dtype)
                    grad_out = torch.randn(R, N).to(dtype)
                    want_gg, want_rows = ref.mix_backward_reference(grad_out.double(), gates.double(),
                                                                    delta.double(), pre)
                    _close(k.mix_backward(grad_out, gates, delta, pre, precision=precision), want_gg, dtype)
                    for accumulate in (False, True):
                        gd = torch.zeros_like(delta)
                        _close(k.mix_backward(grad_out, gates, delta, pre, gd, accumulate, precision=precision),
                               want_gg, dtype)
                        _close(gd[:P][~unread[:P]], want_rows[~unread[:P]], dtype)
        for dtype in (torch.float32, torch.float64):
            for seed, offset in ((3, 0), (2**40, 2**33 + 5)):
                la = torch.randn(40, dtype=dtype)
                hc.hard_concrete_backward(torch.ones_like(la), la, seed, offset)
                hc.hard_concrete_forward(la, seed, offset)
    assert len(launches) >= len(DTYPES) * len(READERS) * 2 * 4
    missing = {f"{c.name} {dict(c.constexprs)} warps {c.num_warps} stages {c.num_stages} {c.signature}"
               for c in launches if c not in listed}
    assert not missing, "launches not in epkernels.default_launches():\n" + "\n".join(sorted(missing))


def test_reader_groups_follow_the_tile_tables():
    """129 readers: groups of 128 and 1 (each with its own tiles); "tf32x3" backward: 64, 64, 1.
    Later groups accumulate into the delta gradient the first one wrote."""
    require("triton", "mix", torch.float32)
    from epkernels import mix as k
    from epkernels._utils import record_launches

    R, P, N = 129, 5, 20
    gates, delta, base, pre, unread = mix_inputs(R, P, P, N, torch.float32, torch.device("cpu"), prefix="random")
    grad_out = torch.randn(R, N)
    want_gg, want_rows = ref.mix_backward_reference(grad_out.double(), gates.double(), delta.double(), pre)
    for precision, blocks in (("ieee", [128, 16]), ("tf32x3", [64, 64, 16])):
        gd = torch.full_like(delta, 3.0)
        with record_launches() as launches:
            gg = k.mix_backward(grad_out, gates, delta, pre, gd, accumulate=False, precision=precision)
        assert [dict(c.constexprs)["BLOCK_R"] for c in launches] == blocks
        assert [c.signature for c in launches] == [launches[0].signature] * len(blocks)
        _close(gg, want_gg, torch.float32)
        _close(gd[~unread], want_rows[~unread], torch.float32)
        assert (gd[unread] == 0).all(), "overwrite: unread writers' rows become exact zeros"
    with record_launches() as launches:
        k.mix_forward(gates, delta, base, pre)
    assert [dict(c.constexprs)["BLOCK_R"] for c in launches] == [128, 16]
    last, one = dict(launches[1].constexprs), k.default_forward_blocks(1, torch.float32)
    assert (last["BLOCK_W"], last["BLOCK_N"], launches[1].num_warps) == (one["block_w"], one["block_n"], one["num_warps"])


def test_explicit_blocks_are_not_the_launchers_choice():
    """A launch with caller-given blocks is recorded as it ran, outside the default list."""
    require("triton", "mix", torch.float32)
    import epkernels
    from epkernels import mix as k
    from epkernels._utils import record_launches

    gates, delta, base, pre, _ = mix_inputs(5, 6, 6, 20, torch.float32, torch.device("cpu"))
    with record_launches() as launches:
        k.mix_forward(gates, delta, base, pre, block_w=16, block_n=16)
    assert len(launches) == 1 and dict(launches[0].constexprs)["BLOCK_N"] == 16
    assert launches[0] not in set(epkernels.default_launches())


def test_dry_run_records_without_launching():
    """Meta tensors have no data: launching them fails, recording them without launching does not."""
    require("triton", "mix", torch.float32)
    from epkernels import mix as k
    from epkernels._utils import record_launches

    gates, delta, base = torch.empty(3, 4, device="meta"), torch.empty(4, 8, device="meta"), torch.empty(8, device="meta")
    with record_launches(dry_run=True) as launches:
        out = k.mix_forward(gates, delta, base)
    assert len(launches) == 1 and out.shape == (3, 8)
    with pytest.raises(Exception), record_launches() as launches:  # noqa: B017  (whatever the interpreter raises)
        k.mix_forward(gates, delta, base)
    assert len(launches) == 1


@pytest.mark.parametrize("value", [torch.empty(2), torch.empty(2, dtype=torch.bfloat16),
                                   torch.empty(2, dtype=torch.float16), torch.empty(2, dtype=torch.float64),
                                   torch.empty(2, dtype=torch.int64), torch.empty(2, dtype=torch.int32),
                                   torch.empty(2, dtype=torch.bool), torch.empty(2, dtype=torch.uint8),
                                   0, 1, -5, 2**31 - 1, 2**31, 2**40, 2**63, 0.5, True], ids=repr)
def test_signature_types_are_tritons(value):
    """epkernels records the types Triton's own launcher derives (its mangle_type, 3.6 to 3.9)."""
    from epkernels._utils import triton_type
    jit = pytest.importorskip("triton.runtime.jit")
    if not hasattr(jit, "mangle_type"):
        pytest.skip("this Triton has no triton.runtime.jit.mangle_type")
    assert triton_type(value) == jit.mangle_type(value)


@pytest.mark.slow
def test_compile_check_runs_without_a_gpu_or_the_interpreter():
    """scripts/check_triton_compile.py compiles for sm_90 in its own process, even when the caller
    (like this suite) has TRITON_INTERPRET=1 set, and reports ptxas's registers and spills."""
    import os
    import subprocess
    import sys
    pytest.importorskip("triton.backends.nvidia.compiler")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, os.path.join(root, "scripts", "check_triton_compile.py"), "--arch", "90",
                           "--kernel", "hard_concrete_fwd", "--jobs", "1"], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("hard_concrete_fwd")]
    assert len(rows) == 8 and all(row[1] == "sm_90" and row[-1] == "ok" for row in rows)
    for row in rows:  # ... registers, spill stores/loads, stack, shared memory, result
        spills = next(i for i, token in enumerate(row) if "/" in token)
        assert 0 < int(row[spills - 1]) <= 255 and row[spills] == "0/0"
    assert "8 compiles" in proc.stdout and "0 failed" in proc.stdout
