"""The error sites of edgeprune, found in its source, and a tracer of the lines a call runs.

The source read is the package that `import edgeprune` runs (installed or on PYTHONPATH), so the
sites and the traced lines name the same files.

A site is a `raise` of a new exception (a bare `raise` passes one on) or a call of an error helper:
a function whose body ends in a `raise` and has no `return`. A site is named by its file, its
enclosing function and a fragment of its source that no other site of that function contains.
"""
from __future__ import annotations

import ast
import contextlib
import pathlib
import sys
from dataclasses import dataclass

import edgeprune

PACKAGE = pathlib.Path(edgeprune.__file__).parent


@dataclass(frozen=True)
class Site:
    path: str          # relative to the package folder
    function: str      # qualified name of the enclosing function ("" at module level)
    first: int
    last: int
    source: str

    def __str__(self):
        return f"{self.path}:{self.first} in {self.function or '<module>'}: {self.source.splitlines()[0].strip()}"


def _error_helpers(tree: ast.AST) -> set[str]:
    helpers = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.body \
                and isinstance(node.body[-1], ast.Raise) \
                and not any(isinstance(n, ast.Return) for n in ast.walk(node)):
            helpers.add(node.name)
    return helpers


def sites_in(text: str, path: str, helpers: set[str] | None = None) -> list[Site]:
    tree = ast.parse(text)
    helpers = _error_helpers(tree) if helpers is None else helpers
    found = []

    def visit(node, qual):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, qual + [child.name])
                continue
            is_raise = isinstance(child, ast.Raise) and child.exc is not None
            is_helper_call = isinstance(child, ast.Call) and getattr(child.func, "id", getattr(child.func, "attr", None)) \
                in helpers
            if is_raise or is_helper_call:
                found.append(Site(path, ".".join(qual), child.lineno, child.end_lineno,
                                  ast.get_source_segment(text, child)))
            visit(child, qual)

    visit(tree, [])
    return found


def all_sites() -> list[Site]:
    texts = {p: p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}
    helpers = set().union(*(_error_helpers(ast.parse(t)) for t in texts.values()))
    return [s for p, t in texts.items() for s in sites_in(t, str(p.relative_to(PACKAGE)), helpers)]


def find(sites: list[Site], path: str, function: str, fragment: str) -> Site:
    """The one site of `function` in `path` whose source contains `fragment`."""
    matches = [s for s in sites if s.path == path and s.function == function and fragment in s.source]
    if len(matches) != 1:
        raise LookupError(f"{len(matches)} sites in {path}:{function} contain {fragment!r}; name exactly one")
    return matches[0]


@contextlib.contextmanager
def lines_run(into: set):
    """Collect (path relative to the package folder, line) of every package line run in this thread."""
    root = str(PACKAGE) + "/"

    def local(frame, event, arg):
        if event == "line":
            into.add((frame.f_code.co_filename[len(root):], frame.f_lineno))
        return local

    def calls(frame, event, arg):
        return local if frame.f_code.co_filename.startswith(root) else None

    before = sys.gettrace()
    sys.settrace(calls)
    try:
        yield into
    finally:
        sys.settrace(before)
