"""The oldest version of Python and of each package edgeprune needs that a test run has passed.

setup.py declares them as the minimums (python_requires, install_requires) and
`python -m edgeprune.info` warns below them. Standard library only: setup.py reads this file before
edgeprune is installed. A minimum moves only with a test run at the new value (docs/design.md,
"The stacks the tests run on").
"""
from __future__ import annotations

import re

PYTHON = "3.10"
MINIMUMS = {"torch": "2.11", "triton": "3.6", "transformers": "5.17", "numpy": "1.26"}


def release(version: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a version such as "2.11.0+cu130", "4.57" or "2.5.0rc1"; None when
    it does not start with a number."""
    numbers = re.match(r"\d+(?:\.\d+)*", version)
    if numbers is None:
        return None
    parts = tuple(int(p) for p in numbers.group(0).split("."))
    return (parts + (0, 0, 0))[:3]
