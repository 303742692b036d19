"""`python benchmarks/bench_kernels.py [options]` from a source checkout: the mixing-kernel benchmark,
which lives in the package as edgeprune.bench_kernels (`edgeprune bench kernels` once installed).

Named bench_kernels.py, not kernels.py: transformers probes for Hugging Face's `kernels` package
by importing a top-level module of that name, and any script run from benchmarks/ would hand it
this file.
"""
import importlib.util
import os
import sys

if importlib.util.find_spec("edgeprune") is None:  # a source checkout that was not installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from edgeprune.bench_kernels import main  # noqa: E402

if __name__ == "__main__":
    main()
