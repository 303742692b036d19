"""`python -m edgeprune.info`: versions, and which backend can run each op here and why not."""
from __future__ import annotations

import platform

import torch

from . import _ext
from .ops import backends, choose


def _versions() -> list[str]:
    lines = [f"python {platform.python_version()}, torch {torch.__version__} (CUDA build: {torch.version.cuda})"]
    try:
        import triton
        lines.append(f"triton {triton.__version__}")
    except ImportError:
        lines.append("triton: not installed")
    if torch.cuda.is_available():
        lines.append(f"device: {torch.cuda.get_device_name()} ({torch.cuda.device_count()} visible)")
    else:
        lines.append("device: no CUDA device")
    if _ext.available():
        lines.append(f"edgeprune._C: loaded, CPU kernels for {_ext.ops().cpu_isa()}, CUDA kernels "
                     f"{'built' if _ext.cuda_built() else 'not built'}")
    else:
        lines.append(f"edgeprune._C: {_ext.reason()}")
    lines.append(f"build: {_ext.build_info()}")
    return lines


def main() -> None:
    for line in _versions():
        print(line)
    dtypes = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        for op in (backends.MIX, backends.HARD_CONCRETE):
            print(f"\n{op} on {device.type} (default: {choose(op, device, torch.float32).name})")
            for name, backend in backends.BACKENDS.items():
                ok = [str(d).removeprefix("torch.") for d in dtypes if not backend.not_supported_reasons(op, device, d)]
                if ok:
                    print(f"  {name:<7} available: {', '.join(ok)}")
                else:
                    reasons = backend.not_supported_reasons(op, device, torch.float32)
                    print(f"  {name:<7} unavailable: {'; '.join(reasons)}")


if __name__ == "__main__":
    main()
