"""README.md's two commands are what .ci/run runs, verbatim (it extracts them with .ci/readme_commands.py)."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_commands", ROOT / ".ci" / "readme_commands.py")
R = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(R)


def test_readme_opens_with_the_install_and_the_test_command():
    install, test = R.commands((ROOT / "README.md").read_text())
    # The torch that plain pip picks; the extension built against it; the demo fails unless it recovers.
    assert install.startswith("pip install torch ") and "==" not in install
    assert " && pip install --no-build-isolation . && " in install and install.endswith("edgeprune demo --check")
    assert test == 'pip install --no-build-isolation ".[test]" && python -m pytest -q tests'


def test_ci_runs_the_extracted_commands():
    run = (ROOT / ".ci" / "run").read_text()
    assert "$(python .ci/readme_commands.py)" in run and 'bash -euo pipefail -c "${COMMANDS[$i]}"' in run
    assert "python3 -m venv" in run and "torch==" not in run


@pytest.mark.parametrize("text", ["# x\n```bash\npip install .\n```\n",
                                  "```bash\npip install .\nedgeprune demo\n```\n```bash\npytest\n```\n"])
def test_extraction_rejects_a_readme_without_two_one_line_commands(text):
    with pytest.raises(SystemExit, match="two ```bash blocks of one line each"):
        R.commands(text)
