"""Ops tests: Triton kernels run in the interpreter on CPU unless TRITON_INTERPRET=0 is set
(benchmarks/gpu/kernels_check.py does that on a GPU, where they run compiled on CUDA tensors)."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports epkernels
