"""Break the method on purpose, one breakage at a time, and check that a named test catches each.

    python scripts/mutation_check.py                    # every breakage; rewrites tests/MUTATIONS.md
    python scripts/mutation_check.py --only kl-reversed --no-write

Each breakage edits one committed source file in a copy of HEAD (git archive, plus the built
extension) in a temporary folder, then runs its named tests there. It counts as caught only when
the whole suite still collects and a named test fails on an assertion (AssertionError, or pytest's
own failure, e.g. "DID NOT RAISE"); a crash with another exception does not count. The unbroken
copy must pass every named test first. Outside CI: it takes minutes.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = "python/edgeprune/"
GOLDEN, PLANTED = "tests/test_golden.py", "tests/test_planted_circuit.py::test_learning_from_gates_that_move"

# name, file, text, replacement, tests
BREAKAGES = [
    ("path exit at the first step in", PKG + "path.py",
     "        self.last_in.masked_fill_(now, step)",
     "        self.last_in.masked_fill_(now & (self.last_in < 0), step)",
     ["tests/test_path.py"]),
    ("path ranks the earliest exit first", PKG + "path.py",
     "    order = order[torch.sort(last_in[order], descending=True, stable=True).indices]",
     "    order = order[torch.sort(last_in[order], descending=False, stable=True).indices]",
     ["tests/test_path.py"]),
    ("path steering reversed", PKG + "path.py",
     "        sign = (now > want).float() * 2 - 1",
     "        sign = 1 - (now > want).float() * 2",
     ["tests/test_path.py"]),
    ("connected cuts blind to the input side", PKG + "mib.py",
     "        key = torch.minimum(torch.minimum(reach[:, None], s), out[self.feeds][None, :]).reshape(-1)",
     "        key = torch.minimum(s, out[self.feeds][None, :]).reshape(-1)",
     ["tests/test_path.py"]),
    ("connected warm start ignored", PKG + "warmstart.py",
     '    if ranking == "connected":',
     '    if ranking == "never":',
     ["tests/test_path.py"]),
    ("threshold fixed at 0", PKG + "gates.py",
     "    return lo if abs(sparsity(lo) - target) <= abs(sparsity(hi) - target) else hi",
     "    return 0.0",
     ["tests/test_gates.py", "tests/test_train.py::test_final_circuit_threshold_matches_soft_sparsity"]),
    ("no k-smallest zeroing", PKG + "gates.py",
     "        if k > 0:",
     "        if False:",
     ["tests/test_gates.py"]),
    ("KL reversed", PKG + "tasks/metrics.py",
     "full_probs * (full_logprobs - circuit_logprobs)",
     "circuit_logprobs.exp() * (circuit_logprobs - full_logprobs)",
     ["tests/tasks/test_tasks_base.py", GOLDEN]),
    ("no target ramp", PKG + "objective.py",
     "        frac = min(1.0, step / c.ramp_steps) if c.ramp_steps > 0 else 1.0",
     "        frac = 1.0",
     ["tests/test_train.py::test_optimiser_semantics", GOLDEN]),
    ("Lagrangian's sign flipped", PKG + "objective.py",
     '        penalty = lam["edge1"] * (s_edge - t_edge) + lam["edge2"] * (s_edge - t_edge) ** 2',
     '        penalty = -(lam["edge1"] * (s_edge - t_edge) + lam["edge2"] * (s_edge - t_edge) ** 2)',
     ["tests/test_train.py::test_multipliers_ascend_and_gates_start_saturated", GOLDEN, PLANTED]),
    ("other hard-concrete constants", PKG + "ops/constants.py",
     "LEFT, RIGHT, BETA = -0.1, 1.1, 2.0 / 3.0",
     "LEFT, RIGHT, BETA = -0.2, 1.2, 0.5",
     ["tests/ops/test_hard_concrete.py", GOLDEN]),
    ("no node filtering at export", PKG + "circuit.py",
     "        keep = raw & keep_nodes[graph.edge_writer_indices()]",
     "        keep = raw",
     ["tests/test_gates.py"]),
    ("corrupted records taken from the clean run", PKG + "batches.py",
     "        return self.pm.ablation_record(self.corrupted[idx], self.attention_mask[idx])",
     "        return self.pm.ablation_record(self.clean[idx], self.attention_mask[idx])",
     [GOLDEN, PLANTED]),
    ("off-by-one in a reader's valid prefix", PKG + "ops/reference.py",
     "    return cols[None, :] < prefix.to(gates.device)[:, None]",
     "    return cols[None, :] <= prefix.to(gates.device)[:, None]",
     ["tests/ops/test_reference.py", "tests/ops/test_mix.py"]),
]

# Records each test's outcome and, for a failure, the exception's type.
PLUGIN = '''
import json, os
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or report.failed:
        kind = call.excinfo.typename if call.excinfo is not None else ""
        with open(os.environ["MUTATION_REPORT"], "a") as f:
            f.write(json.dumps({"test": item.nodeid, "when": report.when, "outcome": report.outcome,
                                "error": kind}) + "\\n")
'''
ASSERTIONS = ("AssertionError", "Failed")


def _copy_head(dest: str) -> str:
    commit = subprocess.check_output(["git", "-C", ROOT, "rev-parse", "HEAD"], text=True).strip()
    archive = subprocess.run(["git", "-C", ROOT, "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    for built in glob.glob(os.path.join(ROOT, PKG, "_C*.so")):
        shutil.copy(built, os.path.join(dest, PKG))
    with open(os.path.join(dest, "mutation_plugin.py"), "w") as f:
        f.write(PLUGIN)
    return commit


def _pytest(tree: str, args: list[str]) -> tuple[int, list[dict]]:
    report = os.path.join(tree, "report.jsonl")
    if os.path.exists(report):
        os.remove(report)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(tree, "python"), tree]),
           "MUTATION_REPORT": report}
    code = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mutation_plugin",
                           *args], cwd=tree, env=env, capture_output=True, text=True).returncode
    rows = [json.loads(line) for line in open(report)] if os.path.exists(report) else []
    return code, rows


def check(tree: str, breakage) -> dict:
    name, path, text, replacement, tests = breakage
    file = os.path.join(tree, path)
    original = open(file).read()
    if original.count(text) != 1:
        raise SystemExit(f"{name}: the text to break occurs {original.count(text)} times in {path}; update BREAKAGES")
    try:
        with open(file, "w") as f:
            f.write(original.replace(text, replacement))
        collects = _pytest(tree, ["--collect-only", "tests"])[0] == 0
        _, rows = _pytest(tree, tests)
    finally:
        with open(file, "w") as f:
            f.write(original)
    caught = sorted({r["test"] for r in rows if r["outcome"] == "failed" and r["error"] in ASSERTIONS})
    crashed = sorted({f"{r['test']} ({r['error']})" for r in rows
                      if r["outcome"] == "failed" and r["error"] not in ASSERTIONS})
    return {"name": name, "path": path, "collects": collects, "caught": caught if collects else [],
            "crashed": crashed}


def _by_test(ids: list[str]) -> list[tuple[str, int]]:
    """Parametrised cases grouped under their test function, with their count."""
    counts: dict[str, int] = {}
    for nodeid in ids:
        name = nodeid.split("[")[0] + ("" if "[" not in nodeid or "(" not in nodeid else " (" + nodeid.split("(")[-1])
        counts[name] = counts.get(name, 0) + 1
    return sorted(counts.items())


def write_table(results: list[dict], commit: str, seconds: float, out: str) -> None:
    lines = ["# Mutation check", "",
             "Deliberate breakages of the core, each applied alone to a copy of the source; a breakage is caught",
             "when the suite still collects and a named test fails on an assertion. Written by",
             "`python scripts/mutation_check.py` (outside CI) at commit "
             f"`{commit[:12]}`, {time.strftime('%Y-%m-%d')}, on {platform.machine()} with "
             f"{os.cpu_count()} CPUs, in {seconds / 60:.1f} min.", "",
             "| breakage | file | caught by (assertion failures) | other failures |",
             "| --- | --- | --- | --- |"]
    for r in results:
        caught = "<br>".join(f"`{t}`" + (f" ({n} cases)" if n > 1 else "") for t, n in _by_test(r["caught"]))
        others = "<br>".join(f"{t}" + (f" ({n} cases)" if n > 1 else "") for t, n in _by_test(r["crashed"]))
        lines.append(f"| {r['name']} | `{r['path']}` | {caught or '**NOT CAUGHT**'} | {others or '-'} |")
    total = sum(bool(r["caught"]) for r in results)
    lines += ["", f"{total} of {len(results)} breakages caught."]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="breakage names (or their first words) to run")
    parser.add_argument("--no-write", action="store_true", help="print the results; leave tests/MUTATIONS.md")
    args = parser.parse_args()
    chosen = [b for b in BREAKAGES if not args.only or any(b[0].startswith(o) for o in args.only)]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="edgeprune-mutations-") as tree:
        commit = _copy_head(tree)
        needed = sorted({t for b in chosen for t in b[4]})
        code, rows = _pytest(tree, needed)
        if code != 0:
            failed = sorted({r["test"] for r in rows if r["outcome"] == "failed"})
            raise SystemExit(f"the unbroken source fails its named tests ({failed}); fix that first")
        results = []
        for breakage in chosen:
            result = check(tree, breakage)
            results.append(result)
            print(f"{result['name']}: {'caught by ' + ', '.join(result['caught']) if result['caught'] else 'NOT CAUGHT'}"
                  f"{'' if result['collects'] else ' (the suite no longer collects)'}", flush=True)
    if not args.no_write:
        write_table(results, commit, time.time() - started, os.path.join(ROOT, "tests", "MUTATIONS.md"))
    return 0 if all(r["caught"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
