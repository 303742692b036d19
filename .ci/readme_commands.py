"""Prints README.md's two commands (its first two ```bash blocks), one per line, for .ci/run to run
verbatim: the first installs edgeprune and runs the demo, the second installs what the tests need
and runs them. tests/test_readme_commands.py checks that README still has them in that shape."""
from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def commands(text: str) -> list[str]:
    """The first two ```bash blocks of a Markdown text, each a single command line."""
    blocks = [b.strip() for b in re.findall(r"^```bash\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)[:2]]
    if len(blocks) != 2 or any("\n" in b for b in blocks):
        raise SystemExit("README.md must open with two ```bash blocks of one line each: the install-and-demo "
                         f"command and the test command (found: {blocks})")
    return blocks


if __name__ == "__main__":
    print("\n".join(commands(README.read_text())))
