"""Backend choice: defaults, forcing by argument or EDGEPRUNE_BACKEND, and the reasons given."""
import subprocess
import sys

import pytest
import torch
from edgeprune import _ext, ops
from edgeprune.ops import backends

CPU = torch.device("cpu")


def test_default_on_cpu_is_cpp_when_built(monkeypatch):
    monkeypatch.delenv("EDGEPRUNE_BACKEND", raising=False)
    expected = "cpp" if _ext.available() else "torch"
    assert ops.choose("mix", CPU, torch.float32).name == expected
    assert ops.choose("mix", CPU, torch.float16).name == "torch"  # cpp has no fp16


def test_env_var_forces_and_argument_wins(monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_BACKEND", "torch")
    assert ops.choose("mix", CPU, torch.float32).name == "torch"
    assert ops.choose("mix", CPU, torch.float32, "auto").name != "torch" or not _ext.available()
    if _ext.available():
        assert ops.choose("mix", CPU, torch.float32, "cpp").name == "cpp"


def test_unknown_backend_names_the_choices(monkeypatch):
    with pytest.raises(ValueError, match="cpp, torch or auto"):
        ops.choose("mix", CPU, torch.float32, "fast")
    monkeypatch.setenv("EDGEPRUNE_BACKEND", "nope")
    with pytest.raises(ValueError, match="EDGEPRUNE_BACKEND"):
        ops.mix(torch.ones(1, 1), torch.ones(1, 2), torch.ones(2))


def test_forced_backend_that_cannot_run_explains_why():
    with pytest.raises(NotImplementedError, match="runs on cuda tensors"):
        ops.mix(torch.ones(1, 1), torch.ones(1, 2), torch.ones(2), backend="cuda")
    if _ext.available():
        with pytest.raises(NotImplementedError, match="not float16"):
            ops.mix(torch.ones(1, 1), torch.ones(1, 2).half(), torch.ones(2).half(), backend="cpp")


def test_missing_extension_is_a_stub_not_a_crash(monkeypatch):
    monkeypatch.setattr(_ext, "_state", {"ok": False, "reason": "edgeprune._C failed to load (test)"})
    assert not _ext.available()
    assert ops.choose("mix", CPU, torch.float32).name == "torch"
    with pytest.raises(NotImplementedError, match="failed to load"):
        ops.mix(torch.ones(1, 1), torch.ones(1, 2), torch.ones(2), backend="cpp")
    with pytest.raises(RuntimeError, match="failed to load"):
        _ext.ops()


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setattr(backends.TritonBackend, "interpreted", staticmethod(lambda: False))
    reasons = backends.BACKENDS["triton"].not_supported_reasons("mix", CPU, torch.float32)
    assert any("TRITON_INTERPRET=1" in r for r in reasons)


def test_import_is_light():
    code = "import sys, edgeprune, edgeprune.ops; assert 'triton' not in sys.modules and 'epkernels' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_info_lists_every_backend():
    out = subprocess.run([sys.executable, "-m", "edgeprune.info"], check=True, capture_output=True, text=True).stdout
    for name in ("triton", "cuda", "cpp", "torch"):
        assert f"  {name}" in out
