"""Builds edgeprune and its C++ extension, edgeprune._C.

The CPU kernels (csrc/*.cpp, csrc/cpu/*.cpp) are always built. The CUDA kernels (csrc/cuda/*.cu)
are added when every check below passes; otherwise the extension is built without them and one
line says why and how to get them. A failed CUDA build never fails the install.

  1. EDGEPRUNE_CUDA is not 0.
  2. torch is a CUDA build (torch.version.cuda): a CUDAExtension cannot link against a CPU torch.
  3. nvcc is found: $CUDA_HOME/bin/nvcc (or $CUDA_PATH), else nvcc on the PATH.
  4. nvcc runs and its CUDA major version is torch's.
  5. The toolkit root has libcudart.so. Without CUDA_HOME the root is the one nvcc reports itself
     (the TOP= line of `nvcc --dryrun`), so an nvcc that is a wrapper script in another folder
     still leads to the real toolkit; that root is handed to torch's build as CUDA_HOME.
  6. The sources compile and link (a compiler nvcc does not support, an unknown architecture).

Architectures: TORCH_CUDA_ARCH_LIST when set, else those of the visible GPUs, else DEFAULT_ARCHS.
torch.cuda.is_available() only picks the architectures, never whether to build: build machines
often have no GPU.

EDGEPRUNE_CUDA=0 skips the CUDA kernels; EDGEPRUNE_CUDA=1 makes any failed check an error.
The outcome is written to edgeprune/_build_info.py, which `python -m edgeprune.info` prints.

Install with `pip install --no-build-isolation .` so the extension builds against the torch you
already have (build isolation would fetch another, multi-GB torch).
"""
import glob
import importlib
import os
import re
import runpy
import shutil
import subprocess
import sys

import setuptools
from setuptools import setup


def _wheels_buildable() -> bool:
    """setuptools 70.1 and newer have bdist_wheel; older ones need the wheel package for it."""
    for module in ("setuptools.command.bdist_wheel", "wheel.bdist_wheel"):
        try:
            importlib.import_module(module)
            return True
        except ImportError:
            pass
    return False


# pip builds a wheel (dist_info, then bdist_wheel) with the setuptools already installed when
# --no-build-isolation is given. A new venv of Python 3.10 or 3.11 has setuptools 65, without
# bdist_wheel, and torch 2.11 keeps it: pip would stop at "invalid command 'bdist_wheel'".
if {"bdist_wheel", "dist_info", "editable_wheel"} & set(sys.argv[1:]) and not _wheels_buildable():
    raise SystemExit(f"edgeprune: setuptools {setuptools.__version__} cannot build a wheel: "
                     "`pip install -U 'setuptools>=70.1'`, then `pip install --no-build-isolation .` again")

try:
    import torch
except ImportError:
    raise SystemExit("edgeprune: torch is not installed in this Python: `pip install torch`, then "
                     "`pip install --no-build-isolation .`") from None

# sm_80 code also runs on 8.6 and 8.9 (same major version); PTX for 9.0 is compiled by the driver
# for newer GPUs. Measured with nvcc 13.0 on 2 busy cores: csrc/cuda/mix_cuda.cu took 48 s for
# sm_80 alone and 62 s for sm_80 + sm_90.
DEFAULT_ARCHS = "8.0;9.0+PTX"
REINSTALL = "`pip install --no-build-isolation .`"


class NoCuda(Exception):
    """A failed check: the message says what is wrong and how to fix it."""


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    return proc.stdout + proc.stderr


def _toolkit() -> tuple[str, str, str]:
    """(root, library folder with libcudart.so, nvcc's CUDA version) or raises NoCuda."""
    variable = "CUDA_HOME" if os.environ.get("CUDA_HOME") else "CUDA_PATH"
    root = os.environ.get(variable)
    if root:
        nvcc = os.path.join(root, "bin", "nvcc")
        if not os.path.isfile(nvcc):
            raise NoCuda(f"{variable}={root} has no bin/nvcc: set it to the CUDA toolkit's root")
    else:
        nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
        if not os.path.isfile(nvcc):
            raise NoCuda(f"nvcc was not found: install the CUDA {torch.version.cuda} toolkit and put its nvcc "
                         "on the PATH or set CUDA_HOME")
    try:
        version = re.search(r"release (\d+\.\d+)", _run([nvcc, "--version"]))
        top = re.search(r"^#\$ TOP=(.+)$", _run([nvcc, "--dryrun", "-x", "cu", "-c", "probe.cu", "-o", "probe.o"]),
                        re.MULTILINE)
    except (OSError, subprocess.SubprocessError) as error:
        raise NoCuda(f"{nvcc} does not run ({error}): fix the CUDA toolkit or set CUDA_HOME to a working one") from None
    if version is None:
        raise NoCuda(f"`{nvcc} --version` prints no CUDA release: set CUDA_HOME to a CUDA toolkit's root")
    if version.group(1).split(".")[0] != torch.version.cuda.split(".")[0]:
        raise NoCuda(f"nvcc ({nvcc}) is CUDA {version.group(1)} but torch {torch.__version__} is built for CUDA "
                     f"{torch.version.cuda}: set CUDA_HOME to a CUDA {torch.version.cuda.split('.')[0]}.x toolkit")
    if not root:
        root = os.path.realpath(top.group(1).strip() if top else os.path.join(os.path.dirname(nvcc), ".."))
    for libdir in [os.path.join(root, "lib64"), os.path.join(root, "lib"), *glob.glob(f"{root}/targets/*/lib")]:
        if os.path.exists(os.path.join(libdir, "libcudart.so")):
            return root, libdir, version.group(1)
    raise NoCuda(f"the CUDA toolkit at {root} (found from {nvcc}) has no libcudart.so in lib64/, lib/ or "
                 "targets/*/lib/: set CUDA_HOME to the toolkit's root")


def _archs() -> tuple[str, str]:
    """(TORCH_CUDA_ARCH_LIST, where it came from)."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"], "from TORCH_CUDA_ARCH_LIST"
    if torch.cuda.is_available():
        caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
        return ";".join(f"{major}.{minor}" for major, minor in caps), "the visible GPUs'"
    return DEFAULT_ARCHS, "the default, as no GPU is visible and TORCH_CUDA_ARCH_LIST is unset"


def _mode() -> str:
    mode = os.environ.get("EDGEPRUNE_CUDA", "")
    if mode not in ("", "0", "1"):
        raise SystemExit(f"edgeprune: EDGEPRUNE_CUDA={mode!r} is not understood: use 0 (no CUDA kernels), "
                         "1 (CUDA kernels or fail) or leave it unset (CUDA kernels when they can be built)")
    return mode


def _plan() -> dict:
    """What to build: {"cuda": bool, "summary": one line for edgeprune.info, "libdir": ...}."""
    try:
        if MODE == "0":
            raise NoCuda(f"EDGEPRUNE_CUDA=0 was set: unset it and reinstall with {REINSTALL} to build them")
        if torch.version.cuda is None:
            raise NoCuda(f"torch {torch.__version__} is not a CUDA build: install a CUDA build of torch, then "
                         f"reinstall with {REINSTALL}")
        root, libdir, version = _toolkit()
    except NoCuda as why:
        return _skipped(str(why))
    archs, source = _archs()
    # torch's build machinery reads both when it compiles: the toolkit found here, not the folder
    # of whatever nvcc is first on the PATH, and an explicit architecture list.
    os.environ["CUDA_HOME"] = root
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    return {"cuda": True, "libdir": libdir,
            "summary": f"CUDA kernels built for {archs} ({source}; nvcc {version} at {root})"}


def _skipped(why: str) -> dict:
    if MODE == "1":
        raise SystemExit(f"edgeprune: EDGEPRUNE_CUDA=1 but the CUDA kernels cannot be built: {why}")
    print(f"edgeprune: CUDA kernels skipped: {why}", flush=True)
    return {"cuda": False, "libdir": None, "summary": f"CUDA kernels skipped: {why}"}


MODE = _mode()
PLAN = _plan()
# The oldest versions a test run has passed (python/edgeprune/_versions.py, also read by
# `python -m edgeprune.info`).
TESTED = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "python", "edgeprune", "_versions.py"))

from torch.utils import cpp_extension  # noqa: E402  (reads CUDA_HOME when imported: after _plan())

# csrc/*.cpp: op schemas and CPU host code; csrc/cpu/*.cpp: inner loops, one file per ISA (each
# selects its own instruction set with #pragma GCC target; chosen at run time).
CPU_SOURCES = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
CXX = ["-O3", "-std=c++20", "-fopenmp"]


def _extension(cuda: bool):
    if not cuda:
        return cpp_extension.CppExtension("edgeprune._C", CPU_SOURCES, extra_compile_args={"cxx": CXX},
                                          extra_link_args=["-fopenmp"])
    # No nvcc --threads: ninja already compiles the .cu files in parallel, and on 2 cores
    # `--threads 2` made mix_cuda.cu slower (70 s against 62 s for sm_80 + sm_90).
    nvcc = ["-O3", "-lineinfo", "-std=c++20", "-DEDGEPRUNE_WITH_CUDA"]
    return cpp_extension.CUDAExtension(
        "edgeprune._C", CPU_SOURCES + sorted(glob.glob("csrc/cuda/*.cu")), library_dirs=[PLAN["libdir"]],
        extra_compile_args={"cxx": CXX + ["-DEDGEPRUNE_WITH_CUDA"], "nvcc": nvcc}, extra_link_args=["-fopenmp"])


class BuildExtension(cpp_extension.BuildExtension):
    """torch's build, falling back to the CPU kernels when the CUDA build fails (unless
    EDGEPRUNE_CUDA=1), then recording the outcome in edgeprune/_build_info.py."""

    def run(self):
        inplace = self.inplace  # setuptools clears it while building and restores it only on success
        try:
            super().run()
        except Exception as error:  # noqa: BLE001  (compiler, linker, or torch's own checks)
            if not PLAN["cuda"] or MODE == "1":
                raise
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            PLAN.update(_skipped(f"the CUDA build failed ({type(error).__name__}: {first}); reinstall with "
                                 "EDGEPRUNE_CUDA=1 to see why"))
            cpu = _extension(cuda=False)  # the same Extension object, its CUDA parts replaced
            for ext in self.extensions:
                for attr in ("sources", "include_dirs", "library_dirs", "libraries", "extra_compile_args"):
                    setattr(ext, attr, getattr(cpu, attr))
            self.inplace, self.compiler = inplace, None  # run() makes a fresh compiler from the name
            super().run()
        path = os.path.join(os.path.dirname(self.get_ext_fullpath("edgeprune._C")), "_build_info.py")
        with open(path, "w") as f:
            f.write("# Written by setup.py when edgeprune._C was built; printed by `python -m edgeprune.info`.\n"
                    f"CUDA_KERNELS = {PLAN['summary']!r}\n")


setup(
    name="edgeprune",
    version="0.1.0",
    description="Edge Pruning (Bhaskar et al., NeurIPS 2024): circuit discovery with fused kernels",
    package_dir={"edgeprune": "python/edgeprune", "epkernels": "epkernels"},
    packages=["edgeprune", "edgeprune.ops", "edgeprune.models", "edgeprune.tasks", "edgeprune.tracr",
              "epkernels"],
    package_data={"edgeprune.tracr": ["data/*"]},
    ext_modules=[_extension(PLAN["cuda"])],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    python_requires=f">={TESTED['PYTHON']}",
    install_requires=[f"{name}>={version}" for name, version in TESTED["MINIMUMS"].items()] + ["tqdm", "safetensors"],
    # Drawing needs Graphviz's `dot` program, not a Python package. tracr-pypi (with jax, about
    # 650 MB) lets the test that recompiles the shipped Tracr programs run.
    extras_require={"tracr": ["tracr-pypi"], "plot": ["matplotlib"], "test": ["pytest", "tracr-pypi"]},
    entry_points={"console_scripts": ["edgeprune=edgeprune.cli:main"]},
)
