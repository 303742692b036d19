"""Folders of plain files replaced as a whole: a killed save leaves the old files or the new ones.

    folder/circuit.json, folder/edges.json, ...   plain files under fixed names (cp -r, cp -rL,
                                                  tar and zip copy them as they are)

A save writes its files into folder/.saving-<id>/, then renames that to folder/.commit/ (the commit:
one rename), moves each file into place (the first name, the folder's record, last), deletes the
names the new files lack, and removes .commit/. Both hidden folders exist only while a save runs:
- killed before the commit, the save leaves the old files (the next save removes its .saving-*);
- killed after it, it leaves the new files, some still in .commit/: a load reads them from there,
  and the next save finishes the move before it starts.
A load that overlaps another process's save of the same folder sees the record change (or a commit
appear or go) and reads again, so it never mixes two saves' files; a tool reading the files itself
while a save runs may. Two processes saving into one folder at once are not supported.

Folders of earlier versions (folder/current -> .v-XXXX/, each name a link into it) load through
their links; the next save replaces them with plain files. Other files in a folder (a drawing)
are left alone.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from typing import Callable, Iterable, TypeVar

from .errors import MissingFile, RunError
from .outputs import check_folder

SAVING = ".saving-"
COMMIT = ".commit"
MANIFEST = "names.json"       # in .commit/: the names the committed save has
OLD_POINTER, OLD_PREFIX = "current", ".v-"   # the linked layout of earlier versions
READ_TRIES = 5

T = TypeVar("T")


def publish(folder: str, write: Callable[[str], None], names: Iterable[str]) -> None:
    """write(staging_dir) the files, then make them the folder's files under `names` (the first name,
    the folder's record, is moved last); a name the new files lack is deleted."""
    names = list(names)
    check_folder(folder, "circuit folder")
    folder = os.path.realpath(folder)  # a link to a folder: its files are replaced, not the link
    os.makedirs(folder, exist_ok=True)
    _finish(folder, names)  # an earlier save that committed and was killed before it finished
    for entry in os.listdir(folder):
        if entry.startswith(SAVING):  # an earlier save killed before its commit
            shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)
    staging = os.path.join(folder, f"{SAVING}{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(staging)
    write(staging)
    mode = _file_mode()
    for entry in os.listdir(staging):  # some writers (safetensors) make their files private (0600)
        os.chmod(os.path.join(staging, entry), mode)
    with open(os.path.join(staging, MANIFEST), "w") as f:
        json.dump([n for n in names if os.path.exists(os.path.join(staging, n))], f)
    os.rename(staging, os.path.join(folder, COMMIT))  # the commit
    _finish(folder, names)


def read(folder: str, record: str, load: Callable[[Callable[[str], str | None]], T]) -> T:
    """load(path_of) on the folder's current files: path_of(name) is where that file is, or None when
    the folder has none of that name. Read again when a save by another process overlapped it."""
    if _path(folder, record) is None:
        raise MissingFile(f"no {record} in {folder!r}: pass a folder written by Circuit.save")
    for _ in range(READ_TRIES):
        before = _state(folder, record)
        try:
            result = load(lambda name: _path(folder, name))
        except FileNotFoundError:
            if _state(folder, record) == before:
                raise
            continue
        if _state(folder, record) == before:
            return result
    raise RunError(f"{folder} changed every time it was read (another process keeps saving into it); load it when "
                   "that process is done")


def _finish(folder: str, names: list[str]) -> None:
    """Move a committed save's files into place, delete the names it lacks, then drop .commit/."""
    commit = os.path.join(folder, COMMIT)
    if not os.path.isdir(commit):
        return
    keep = _manifest(commit)
    if keep is not None:
        for name in names[1:] + names[:1]:  # the record last
            staged, final = os.path.join(commit, name), os.path.join(folder, name)
            if name in keep:
                if os.path.exists(staged):
                    os.replace(staged, final)  # atomic, over a plain file or an older layout's link
            elif os.path.lexists(final):
                os.remove(final)
        _drop_old_layout(folder)
        os.remove(os.path.join(commit, MANIFEST))
    shutil.rmtree(commit, ignore_errors=True)


def _file_mode() -> int:
    """The mode a new file gets from open(): 0666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _drop_old_layout(folder: str) -> None:
    pointer = os.path.join(folder, OLD_POINTER)
    if os.path.islink(pointer):
        os.remove(pointer)
    for entry in os.listdir(folder):
        if entry.startswith(OLD_PREFIX):
            shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)


def _manifest(commit: str) -> list[str] | None:
    """The names of a committed save still being moved into place (None: no such save)."""
    try:
        with open(os.path.join(commit, MANIFEST)) as f:
            return json.load(f)
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def _path(folder: str, name: str) -> str | None:
    keep = _manifest(os.path.join(folder, COMMIT))
    if keep is not None:
        if name not in keep:
            return None
        staged = os.path.join(folder, COMMIT, name)
        if os.path.exists(staged):
            return staged
    path = os.path.join(folder, name)
    return path if os.path.exists(path) else None  # an older layout's link that points nowhere: absent


def _state(folder: str, record: str) -> tuple:
    """What changes when a save commits or finishes: the record file and the .commit/ folder."""
    out = []
    for path in (os.path.join(folder, record), os.path.join(folder, COMMIT)):
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except (FileNotFoundError, NotADirectoryError):
            out.append(None)
    return tuple(out)


__all__ = ["publish", "read"]
