"""Folders replaced as a whole: a reader sees the old files or the new ones, never a mix.

    folder/current                  a symbolic link to the current version, replaced atomically
    folder/.v-XXXX/                 one version's files, written completely before the link moves
    folder/circuit.json -> current/circuit.json, ...   fixed names, for tools that open the files

A killed write leaves an unlinked version behind (removed by the next write) and the old link, so
the old files. A name the new version lacks points at nothing: no file of an older version
survives under it. The previous version is kept until the next write, for a reader still in it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Iterable

from .errors import MissingFile

POINTER = "current"
PREFIX = ".v-"


def publish(folder: str, write: Callable[[str], None], names: Iterable[str]) -> None:
    """write(version_dir) the files, then make them the folder's current ones under `names`."""
    os.makedirs(folder, exist_ok=True)
    link = os.path.join(folder, POINTER)
    previous = os.readlink(link) if os.path.islink(link) else None
    version = tempfile.mkdtemp(prefix=PREFIX, dir=folder)
    write(version)
    _replace_link(link, os.path.basename(version))
    for name in names:
        _replace_link(os.path.join(folder, name), os.path.join(POINTER, name))
    for entry in os.listdir(folder):
        if entry.startswith(PREFIX) and entry not in (os.path.basename(version), previous):
            shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)


def current(folder: str, first_file: str) -> str:
    """The folder holding `folder`'s current files: its version, or the folder itself (an older layout)."""
    link = os.path.join(folder, POINTER)
    if os.path.islink(link):
        return os.path.join(folder, os.readlink(link))
    if not os.path.exists(os.path.join(folder, first_file)):
        raise MissingFile(f"no {first_file} in {folder!r}: pass a folder written by Circuit.save")
    return folder


def _replace_link(path: str, target: str) -> None:
    if os.path.islink(path) and os.readlink(path) == target:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)  # atomic, over a link or an older layout's plain file alike
