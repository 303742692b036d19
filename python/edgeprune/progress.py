"""Progress bars, with a time estimate, for every job that can take more than a few seconds.

progress=True shows one, False hides it; None (the default of the jobs that take it) shows it when
stderr is a terminal, so logs and pipes get no bar.
"""
from __future__ import annotations

import sys


class _Off:
    """A bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool | None = None):
    """A tqdm bar over `total` units (or one that shows nothing); call .update(n), then .close()."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _Off()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, dynamic_ncols=True)


__all__ = ["progress_bar"]
