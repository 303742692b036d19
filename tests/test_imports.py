"""The package's imports run one way, through declared layers, with no cycle.

Every import statement of python/edgeprune counts, at module level or inside a function. A module
may import modules of its own layer or below; the graph of modules must be acyclic.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "python"
PACKAGE = ROOT / "edgeprune"

# Bottom to top. A name covers the module and, for a package, everything in it.
LAYERS = [
    ["epkernels", "edgeprune._ext", "edgeprune._C", "edgeprune._build_info", "edgeprune.errors",
     "edgeprune._version", "edgeprune._versions"],
    ["edgeprune.ops"],
    ["edgeprune.graph", "edgeprune.gates", "edgeprune.mib", "edgeprune.circuit", "edgeprune.comparison",
     "edgeprune.draw", "edgeprune.folders", "edgeprune.warmstart", "edgeprune.outputs", "edgeprune.interrupts",
     "edgeprune.progress", "edgeprune.path"],
    ["edgeprune.models", "edgeprune.tasks"],
    ["edgeprune.tracr"],
    ["edgeprune.recomputation", "edgeprune.distributed", "edgeprune.compiling"],
    ["edgeprune.config", "edgeprune.loading", "edgeprune.batches", "edgeprune.objective", "edgeprune.step", "edgeprune.checkpoints",
     "edgeprune.identity", "edgeprune.evaluation", "edgeprune.curves", "edgeprune.plotting",
     "edgeprune.budgets", "edgeprune.training", "edgeprune.planning", "edgeprune.demo", "edgeprune.info",
     "edgeprune.bench_kernels", "edgeprune.attribution", "edgeprune.node_groups", "edgeprune.provenance"],
    ["edgeprune.cli", "edgeprune.__main__", "edgeprune"],
]


def layer_of(module: str) -> int:
    best, level = -1, None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, level = len(name), i
    if level is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_imports.py")
    return level


def modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The edgeprune / epkernels modules `name` imports, relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub when there is one, else names of pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t.split(".")[0] in ("edgeprune", "epkernels") and t != name}
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods) | {"edgeprune._C"}
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_no_upward_import():
    upward = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
              for a, targets in graph().items() for b in targets if layer_of(b) > layer_of(a)]
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


def test_no_cycle():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if state.get(nxt) is None:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if state.get(node) is None:
            visit(node, [node])


def test_the_checker_sees_a_planted_upward_import(tmp_path):
    """An ops module importing the trainer would be caught."""
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from ..training import train\n")
    found = imports_of("edgeprune.ops.planted", planted, set(modules()))
    assert found == {"edgeprune.training"} and layer_of("edgeprune.training") > layer_of("edgeprune.ops.planted")


def test_exported_functions_are_not_also_modules():
    """`edgeprune.train` must stay the function: a submodule of the same name would replace it once imported."""
    import edgeprune
    for name, (_, attribute) in edgeprune._EXPORTS.items():
        if attribute is not None:
            assert not (PACKAGE / f"{name}.py").exists() and not (PACKAGE / name).is_dir(), name


def test_scripts_put_the_checkout_first_only_when_edgeprune_is_not_installed():
    """A benchmark or script that puts python/ first on sys.path shadows the installed edgeprune with
    a copy that has no built extension (tests import benchmarks, and children inherit sys.path)."""
    repo = ROOT.parent
    unguarded = []
    for path in sorted([*(repo / "benchmarks").rglob("*.py"), *(repo / "scripts").rglob("*.py")]):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "sys.path" in line and '"python"' in line:
                guard = next((prev for prev in reversed(lines[:i]) if prev.strip()), "")
                if 'find_spec("edgeprune") is None' not in guard:
                    unguarded.append(f"{path.relative_to(repo)}:{i + 1}")
    assert not unguarded, "add python/ to sys.path only under `if importlib.util.find_spec(\"edgeprune\") is None:`: " \
                          + ", ".join(unguarded)
