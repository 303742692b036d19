"""README.md's two commands are what .ci/run runs, verbatim (it extracts them with .ci/readme_commands.py)."""
import importlib.util
import pathlib

import pytest

from test_end_to_end import model_folder  # noqa: F401  (fixture)

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
    # README's commands take what pip resolves; only the GPU machines' stack after them is pinned.
    readme_part, gpu_stack_part = run.split("\nGPU_STACK=")
    assert "python3 -m venv" in readme_part and "torch==" not in readme_part
    assert 'bash -euo pipefail -c "${COMMANDS[1]}"' in gpu_stack_part


@pytest.mark.parametrize("text", ["# x\n```bash\npip install .\n```\n",
                                  "```bash\npip install .\nedgeprune demo\n```\n```bash\npytest\n```\n"])
def test_extraction_rejects_a_readme_without_two_one_line_commands(text):
    with pytest.raises(SystemExit, match="two ```bash blocks of one line each"):
        R.commands(text)


# ---------------------------------------------------------------------------- README's Python examples

def python_blocks(text: str) -> list[str]:
    import re
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_python_examples_run_as_written(model_folder, tmp_path, monkeypatch):  # noqa: F811
    """Every ```python block of README.md, in order and in one namespace, on a small GPT-2 folder
    with IOI's tokenizer: "gpt2" and the names the text leaves to the reader (model, pm, run_a ...,
    c1 ...) stand for it, and the runs are made short (the examples' own arguments are kept)."""
    import functools

    import edgeprune
    from edgeprune import tasks
    from edgeprune.loading import load_model

    blocks = python_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 3 and "import edgeprune" in blocks[0]
    monkeypatch.chdir(tmp_path)
    model, tokenizer = load_model(model_folder)
    small = dict(n=8, validation=tasks.load("ioi", tokenizer, split="validation", n=8), progress=False)
    short = dict(steps=2, batch_size=8, warmup_steps=1, ramp_steps=2, eval_every=0)

    def quick(name, **defaults):
        real = getattr(edgeprune, name)

        @functools.wraps(real)
        def call(*args, **kwargs):
            return real(*args, **(defaults | kwargs))
        monkeypatch.setattr(edgeprune, name, call)

    quick("train", **small, **short)
    quick("train_budgets", **small, **short, stage_steps=1)
    quick("evaluate", n=8, progress=False)
    quick("faithfulness", n=8, progress=False)
    quick("attribute", n=8, progress=False)
    circuits = [edgeprune.train(model_folder, "ioi", edge_sparsity=0.9, seed=s) for s in range(3)]
    for i, c in enumerate(circuits):
        c.save(f"run-{i}")
    circuits[0].to_mib("eap-ig.json")  # a MIB file to read back
    names = {"model": model_folder, "pm": edgeprune.prunable(model), "run_a": "run-0", "run_b": "run-1",
             "run_c": "run-2", "c1": circuits[0], "c2": circuits[1], "c3": circuits[2]}
    for i, block in enumerate(blocks):
        exec(compile(block.replace('"gpt2"', repr(model_folder)), f"README.md python block {i + 1}", "exec"), names)
    assert isinstance(names["circuit"], edgeprune.Circuit) and names["circuit"].task == "ioi"


def test_readme_command_lines_parse():
    """Every `edgeprune ...` line of README's ```bash blocks is a command the parser accepts (its
    flags exist, its values are legal), and no two prune commands share an output folder (a rerun
    there would be refused as another run's)."""
    import re
    import shlex

    from edgeprune.cli import build_parser
    lines = [line.split("  #")[0].strip() for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(),
                                                                  re.S)
             for line in block.splitlines() if line.strip().startswith("edgeprune ")]
    assert len(lines) >= 10
    outs = []
    for line in lines:
        args = build_parser().parse_args(shlex.split(line)[1:])
        if args.command == "prune":
            outs.append(args.out)
    assert len(outs) == len(set(outs)), outs
