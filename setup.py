"""Builds edgeprune and its C++ extension, edgeprune._C.

The CPU kernels (csrc/*.cpp) are always built. CUDA kernels (csrc/cuda/*.cu) are added only when
torch itself is a CUDA build and a CUDA toolkit is found: nvcc on the PATH is not enough, since a
CUDAExtension cannot link against a CPU torch. torch.cuda.is_available() is deliberately not
consulted: build machines often have no GPU. Set EDGEPRUNE_SKIP_CUDA_BUILD=1 to force CPU only.

Install with `pip install --no-build-isolation .` so the extension builds against the torch you
already have (build isolation would fetch another, multi-GB torch).
"""
import glob
import os

from setuptools import setup

import torch
from torch.utils import cpp_extension


def _cuda_buildable() -> bool:
    if os.environ.get("EDGEPRUNE_SKIP_CUDA_BUILD", "0") == "1":
        return False
    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


def _extensions():
    # csrc/*.cpp: op schemas and CPU host code; csrc/cpu/*.cpp: inner loops, one file per ISA
    # (each selects its own instruction set with #pragma GCC target; chosen at run time).
    cpu_sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    if not cpu_sources:
        return []
    cxx = ["-O3", "-std=c++20", "-fopenmp"]
    if _cuda_buildable():
        cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
        nvcc = ["-O3", "-std=c++20", "-DEDGEPRUNE_WITH_CUDA", "-lineinfo"]
        return [cpp_extension.CUDAExtension(
            "edgeprune._C", cpu_sources + cuda_sources,
            extra_compile_args={"cxx": cxx + ["-DEDGEPRUNE_WITH_CUDA"], "nvcc": nvcc},
            extra_link_args=["-fopenmp"])]
    return [cpp_extension.CppExtension("edgeprune._C", cpu_sources, extra_compile_args=cxx,
                                       extra_link_args=["-fopenmp"])]


setup(
    name="edgeprune",
    version="0.1.0",
    description="Edge Pruning (Bhaskar et al., NeurIPS 2024): circuit discovery with fused kernels",
    package_dir={"edgeprune": "python/edgeprune", "epkernels": "epkernels"},
    packages=["edgeprune", "edgeprune.ops", "edgeprune.models", "edgeprune.tasks", "edgeprune.tracr",
              "epkernels"],
    package_data={"edgeprune.tracr": ["data/*"]},
    ext_modules=_extensions(),
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.10",
    install_requires=["torch>=2.11", "triton>=3.6", "transformers>=4.57", "numpy", "tqdm", "safetensors"],
    extras_require={"draw": ["graphviz"], "tracr": ["tracr-pypi"], "test": ["pytest"]},
    entry_points={"console_scripts": ["edgeprune=edgeprune.cli:main"]},
)
