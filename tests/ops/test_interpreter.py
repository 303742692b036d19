"""epkernels._interpreter: the Triton interpreter's loop-bound bug (Triton <= 3.6 with numpy >= 2.4)
is worked around around every launch, and only where the installed Triton has it."""
import numpy as np
import pytest
import torch
import triton
import triton.language as tl


@triton.jit
def _chunks_below_max_kernel(lim_ptr, out_ptr, n, BLOCK: tl.constexpr, STEP: tl.constexpr):
    """out = the number of STEP-wide chunks below max(lim[:n]): a loop bound known only at run time."""
    offs = tl.arange(0, BLOCK)
    top = tl.max(tl.load(lim_ptr + offs, mask=offs < n, other=0), axis=0)
    count = 0
    for _ in range(0, top, STEP):
        count += 1
    tl.store(out_ptr, count)


def test_release_reads_the_leading_numbers():
    from epkernels._interpreter import release
    assert release("3.6.0") == (3, 6, 0)
    assert release("3.7.0+git1a2b3c") == (3, 7, 0)
    assert release("2.5") == (2, 5, 0)
    assert release("2.5.0rc1") == (2, 5, 0)
    with pytest.raises(ValueError, match="not a version"):
        release("main")


def test_only_triton_before_3_7_needs_the_fix():
    from epkernels._interpreter import needs_index_fix
    assert needs_index_fix("3.6.0") and needs_index_fix("3.5.1")
    assert not needs_index_fix("3.7.0") and not needs_index_fix("3.8.0") and not needs_index_fix("4.0.0")


@pytest.mark.parametrize("emulated", [False, True], ids=["as_installed", "triton_3_6_emulated"])
def test_runtime_loop_bound_under_the_interpreter(monkeypatch, emulated):
    """A loop whose bound is a reduction's result runs through launch(): with the installed
    Triton as it is, and with Triton 3.6's conversion put back and the workaround forced on (so the
    newest stack checks the workaround too); the interpreter is restored after each launch."""
    from epkernels import _interpreter
    from epkernels._utils import INTERPRETED, launch
    if not INTERPRETED:
        pytest.skip("the workaround is for the interpreter (TRITON_INTERPRET=1)")
    from triton.runtime import interpreter
    lim = torch.tensor([3, 9, 4, 100], dtype=torch.int32)
    out = torch.zeros(1, dtype=torch.int32)
    args, constexprs = {"lim_ptr": lim, "out_ptr": out, "n": 3}, {"BLOCK": 4, "STEP": 2}
    if emulated:
        installed = interpreter._patch_lang_tensor

        def triton_3_6(tensor, scope):
            installed(tensor, scope)
            scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data))

        monkeypatch.setattr(interpreter, "_patch_lang_tensor", triton_3_6)
        monkeypatch.setattr(_interpreter, "needs_index_fix", lambda version: True)
        if _interpreter.release(np.__version__) >= (2, 4, 0):  # the bug itself, without the workaround
            with pytest.raises(Exception, match="0-dimensional"):
                _chunks_below_max_kernel[(1,)](**args, **constexprs)
    before = interpreter._patch_lang_tensor
    launch(_chunks_below_max_kernel, (1,), args, constexprs, 4, 1)
    assert out.item() == len(range(0, 9, 2))  # max of the first three, 100 masked off
    assert interpreter._patch_lang_tensor is before
