import os
import sys

# Triton kernels run in the interpreter on CPU; the flag is read when @triton.jit runs, so it
# must be set before anything imports epkernels.
os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
