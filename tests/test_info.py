"""`python -m edgeprune.info`: the versions it prints, and its warnings for versions known not to work
(a pure function of the version strings)."""
import edgeprune.info as info
from edgeprune._versions import MINIMUMS, PYTHON, release

# The GPU machines' stack: Triton 3.6's interpreter with numpy 2.5 fails without epkernels'
# workaround (triton-lang/triton#9171); with it, nothing is known to fail.
GPU_STACK = {"python": "3.12.3", "torch": "2.11.0+cu130", "triton": "3.6.0", "numpy": "2.5.2",
             "transformers": "5.17.0"}


def test_release_reads_the_leading_numbers():
    assert release("2.11.0+cu130") == (2, 11, 0)
    assert release("4.57") == (4, 57, 0)
    assert release("2.5.0rc1") == (2, 5, 0)
    assert release("main") is None


def test_no_warning_at_the_minimums_or_on_the_gpu_stack():
    assert info.known_problems({"python": PYTHON, **MINIMUMS}) == []
    assert info.known_problems(GPU_STACK) == []
    assert info.known_problems({**GPU_STACK, "torch": "2.14.1", "triton": "3.8.0", "numpy": "2.4.6"}) == []


def test_each_version_below_its_minimum_is_named_with_the_fix():
    problems = info.known_problems({**GPU_STACK, "torch": "2.10.1+cu128", "transformers": "4.56.2"})
    assert problems == [f"torch 2.10.1+cu128 is older than the oldest tested ({MINIMUMS['torch']}): "
                        f"pip install 'torch>={MINIMUMS['torch']}'",
                        f"transformers 4.56.2 is older than the oldest tested ({MINIMUMS['transformers']}): "
                        f"pip install 'transformers>={MINIMUMS['transformers']}'"]
    (python,) = info.known_problems({**GPU_STACK, "python": "3.9.18"})
    assert python.startswith("python 3.9.18 is older") and f"use Python {PYTHON} or newer" in python


def test_missing_and_unreadable_versions_are_warned():
    problems = info.known_problems({**GPU_STACK, "numpy": None, "triton": "main"})
    assert problems == ["triton main: not a version edgeprune can read, so it is untested",
                        f"numpy is not installed: pip install 'numpy>={MINIMUMS['numpy']}'"]


def test_the_versions_printed_include_numpy_and_transformers():
    versions = info.installed_versions()
    assert set(versions) == {"python", *MINIMUMS}
    lines = "\n".join(info._versions())
    for name in ("python", "torch", "triton", "numpy", "transformers"):
        assert f"{name} {versions[name]}" in lines
