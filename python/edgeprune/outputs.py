"""Output paths checked before any work: a run that would fail at its last line because its output
folder is a file, or cannot be written, is refused before its first step instead."""
from __future__ import annotations

import os

from .errors import UserError


def check_folder(path: str, what: str = "output folder") -> None:
    """`path` is a folder that exists, or that can be made: not a file, under no file, writable."""
    _check(os.path.abspath(path), path, what, folder=True)


def check_file(path: str, what: str = "output file") -> None:
    """`path` is a file that can be written: not a folder, under no file, in a writable folder."""
    _check(os.path.abspath(path), path, what, folder=False)


def _check(full: str, given: str, what: str, folder: bool) -> None:
    if os.path.isdir(full) and not folder:
        raise UserError(f"the {what} {given} is a folder, not a file: give a file name")
    if os.path.exists(full) and not os.path.isdir(full) and folder:
        raise UserError(f"the {what} {given} is a file, not a folder: remove it or give another folder")
    existing = full if os.path.isdir(full) else os.path.dirname(full)
    while not os.path.exists(existing):  # the nearest part of the path that is there
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"{existing} is a file, not a folder: the {what} {given} cannot be made below it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the {what} {given}: {existing} is not writable")


__all__ = ["check_file", "check_folder"]
