"""The project's own documentation is what its files refer to.

- No tracked file points outside the repository for its specification. The forbidden paths are
  assembled at run time, so this file holds none of them either (it is left out of the scans for
  the planted bad references of its own checker test).
- Every section reference to docs/method.md ("method.md 2.2", "method.md section 3",
  "method.md sections 2.1-2.6", "method.md 3-5, 10", "method.md 2.6 / App. A") names a numbered
  heading that exists there, and every `design.md "Title"` reference names a heading of
  docs/design.md.
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THIS = os.path.relpath(os.path.abspath(__file__), ROOT)
_OUTSIDE = "sha" + "red"  # the sibling folder of specifications that users never have
FORBIDDEN = (f"{_OUTSIDE}/docs", f"../{_OUTSIDE}")

_NUMBER = r"\d+(?:\.\d+)?"
METHOD_REF = re.compile(
    r"method\.md,?\s+(?:sections?\s+|§\s*)?"
    rf"(?P<refs>{_NUMBER}(?:\s*(?:-|–|,|and)\s*{_NUMBER})*)")
METHOD_APPENDIX = re.compile(r"method\.md[^\n)]{0,40}?\b(?:App\.|Appendix)\s+(?P<letter>[A-Z])\b")
DESIGN_REF = re.compile(r'design\.md,?\s+"(?P<title>[^"\n]+)"')
HEADING = re.compile(r"^#{2,4}\s+(?P<text>.+?)\s*$", re.MULTILINE)


def tracked_text_files() -> list[tuple[str, str]]:
    """(path, text) of every tracked file that decodes as UTF-8 text, this file excepted."""
    try:
        listing = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout ({error}); the documentation check needs `git ls-files`")
    out = []
    for path in listing.stdout.decode().split("\0"):
        full = os.path.join(ROOT, path)
        if not path or path == THIS or not os.path.isfile(full):
            continue
        with open(full, "rb") as f:
            data = f.read()
        if b"\0" in data:
            continue
        try:
            out.append((path, data.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return out


def _read(relpath: str) -> str:
    with open(os.path.join(ROOT, relpath), encoding="utf-8") as f:
        return f.read()


def numbered_sections(markdown: str) -> set[str]:
    """'2', '2.2', 'A' for headings like '## 2. The forward pass', '### 2.2 ...', '## Appendix A: ...'."""
    found = set()
    for match in HEADING.finditer(markdown):
        text = match.group("text")
        number = re.match(r"(\d+(?:\.\d+)*)[.\s]", text + " ")
        if number:
            found.add(number.group(1))
        appendix = re.match(r"Appendix\s+([A-Z])\b", text)
        if appendix:
            found.add(appendix.group(1))
    return found


def heading_titles(markdown: str) -> list[str]:
    return [m.group("text") for m in HEADING.finditer(markdown)]


def _expand(refs: str) -> list[str]:
    """'3-5, 10' -> ['3', '4', '5', '10']; '2.1-2.6' -> ['2.1', ..., '2.6']; '9.7' -> ['9.7']."""
    out = []
    for part in re.split(r"\s*(?:,|and)\s*", refs.strip()):
        ends = [p.strip() for p in re.split(r"\s*[-–]\s*", part) if p.strip()]
        if len(ends) == 2:
            a, b = ends
            if "." not in a and "." not in b and int(a) < int(b):
                out += [str(n) for n in range(int(a), int(b) + 1)]
                continue
            ha, _, la = a.partition(".")
            hb, _, lb = b.partition(".")
            if la and lb and ha == hb and int(la) < int(lb):
                out += [f"{ha}.{n}" for n in range(int(la), int(lb) + 1)]
                continue
        out += ends
    return out


def method_references(text: str) -> list[tuple[int, str, str]]:
    """(line, quoted reference, section) for every method.md section reference in `text`."""
    out = []
    for match in METHOD_REF.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        for section in _expand(match.group("refs")):
            out.append((line, match.group(0).strip(), section))
    for match in METHOD_APPENDIX.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        out.append((line, match.group(0).strip(), match.group("letter")))
    return out


def design_references(text: str) -> list[tuple[int, str, str]]:
    return [(text.count("\n", 0, m.start()) + 1, m.group(0), m.group("title")) for m in DESIGN_REF.finditer(text)]


def bad_method_references(files, sections: set[str]) -> list[str]:
    return [f"{path}:{line}: {quoted!r} names section {section}, which docs/method.md does not have"
            for path, text in files for line, quoted, section in method_references(text) if section not in sections]


def bad_design_references(files, titles: list[str]) -> list[str]:
    return [f"{path}:{line}: {quoted!r} names no heading of docs/design.md"
            for path, text in files for line, quoted, title in design_references(text)
            if not any(t.startswith(title) for t in titles)]


# ---------------------------------------------------------------------------------------------- tests

def test_no_file_points_outside_the_repository():
    hits = [f"{path}:{number}: {line.strip()}"
            for path, text in tracked_text_files()
            for number, line in enumerate(text.splitlines(), start=1)
            if any(s in line for s in FORBIDDEN)]
    assert not hits, ("these tracked files refer to documents outside the repository; point them at "
                      "docs/method.md or docs/design.md instead:\n" + "\n".join(hits))


def test_method_md_references_name_existing_sections():
    sections = numbered_sections(_read("docs/method.md"))
    files = tracked_text_files()
    assert sum(len(method_references(text)) for _, text in files) > 20  # the scan does find references
    bad = bad_method_references(files, sections)
    assert not bad, "references to sections of docs/method.md that do not exist:\n" + "\n".join(bad)


def test_design_md_references_name_existing_headings():
    titles = heading_titles(_read("docs/design.md"))
    files = tracked_text_files()
    assert any(design_references(text) for _, text in files)
    bad = bad_design_references(files, titles)
    assert not bad, "references to headings of docs/design.md that do not exist:\n" + "\n".join(bad)


def test_method_md_keeps_the_specification_numbering():
    sections = numbered_sections(_read("docs/method.md"))
    expected = {str(n) for n in range(1, 11)} | {"A"}
    expected |= {f"{major}.{minor}" for major, count in {1: 5, 2: 6, 3: 6, 4: 2, 5: 3, 9: 16, 10: 2}.items()
                 for minor in range(1, count + 1)}
    assert expected <= sections, f"docs/method.md lacks sections {sorted(expected - sections)}"


def test_the_reference_checker_catches_bad_references():
    sections = {"2", "2.1", "2.2", "3", "4", "5", "10", "A"}
    text = ("ok: method.md 2.2 and method.md section 3, method.md 3-5, 10 and method.md 2.6 / App. A\n"
            "bad: see docs/method.md 9.7 here\n"
            "also bad: method.md sections 2.1-2.3 (2.3 is missing)\n"
            "not a section: method.md 7, issue 6 is fine only if 7 exists\n")
    bad = bad_method_references([("planted.py", text)], sections)
    assert len(bad) == 4 and all(b.startswith("planted.py:") for b in bad), bad
    assert any(":1:" in b and "2.6" in b for b in bad)
    assert any(":2:" in b and "9.7" in b for b in bad)
    assert any(":3:" in b and "2.3" in b for b in bad)
    assert any(":4:" in b and "section 7" in b for b in bad)
    assert not any("issue" in b and "section 6" in b for b in bad)
    titles = ["The core: one write-once delta stack", "Kernels and backends"]
    planted = [("x.py", 'see design.md "The core" and design.md "The engine"')]
    assert bad_design_references(planted, titles) == [
        "x.py:1: 'design.md \"The engine\"' names no heading of docs/design.md"]
