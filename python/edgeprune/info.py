"""`python -m edgeprune.info`: versions (with a warning for any known not to work), and which
backend can run each op here and why not."""
from __future__ import annotations

import importlib.metadata
import platform

import torch

from . import _ext
from ._versions import MINIMUMS, PYTHON, release
from .ops import backends, choose


def installed_versions() -> dict[str, str | None]:
    """python and each package edgeprune needs: its version, None when it is not installed."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in MINIMUMS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def known_problems(versions: dict[str, str | None]) -> list[str]:
    """One warning per version known not to work or never tested, with how to fix it.

    versions: as installed_versions() gives them. Python and each package are checked against the
    oldest versions a test run has passed (edgeprune/_versions.py, setup.py's minimums).
    Triton's interpreter before 3.7 with numpy 2.4 or newer (triton-lang/triton#9171) is no longer
    one: epkernels works around it for its own kernels.
    """
    problems = []
    for name, minimum in {"python": PYTHON, **MINIMUMS}.items():
        version = versions.get(name)
        if version is None:
            problems.append(f"{name} is not installed: pip install '{name}>={minimum}'")
            continue
        parsed = release(version)
        if parsed is None:
            problems.append(f"{name} {version}: not a version edgeprune can read, so it is untested")
        elif parsed < release(minimum):
            fix = (f"use Python {minimum} or newer" if name == "python"
                   else f"pip install '{name}>={minimum}'")
            problems.append(f"{name} {version} is older than the oldest tested ({minimum}): {fix}")
    return problems


def _versions() -> list[str]:
    versions = installed_versions()
    lines = [f"python {versions['python']}, torch {torch.__version__} (CUDA build: {torch.version.cuda})",
             ", ".join(f"{name} {versions[name] or 'not installed'}" for name in ("triton", "numpy", "transformers"))]
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
    for problem in known_problems(installed_versions()):
        print(f"WARNING: {problem}")
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
