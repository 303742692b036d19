"""Ctrl-C (SIGINT) and SIGTERM during a run: noted, acted on between two steps, so that the run
checkpoints the step it finished and stops with one line saying how to resume.

A second signal stops the run at once (KeyboardInterrupt), for a step that hangs.
"""
from __future__ import annotations

import contextlib
import signal
import threading

from .errors import RunError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(RunError, KeyboardInterrupt):
    """A run stopped by a signal after checkpointing (when it has a checkpoint folder).

    signum: the signal; step, steps: where the run stopped; folder: its checkpoint folder or None.
    """

    def __init__(self, signum: int, step: int, steps: int, folder: str | None):
        self.signum, self.step, self.steps, self.folder = signum, step, steps, folder
        where = f"at step {step} of {steps}"
        if folder:
            how = (f"the run is checkpointed in {folder}; run it again with the same settings and checkpoint folder "
                   "to resume from there")
        else:
            how = "nothing was saved (give a checkpoint folder, checkpoint_dir=, to resume a stopped run)"
        super().__init__(f"interrupted by {signal.Signals(signum).name} {where}: {how}")


class Watch:
    """The first SIGINT / SIGTERM seen inside `deferred` (None: none yet)."""

    signum: int | None = None


@contextlib.contextmanager
def deferred(enabled: bool = True):
    """Within, SIGINT and SIGTERM set `watch.signum` instead of stopping the process; the caller stops
    at its next safe point. Outside the main thread (no handlers can be set there) or when not
    enabled, signals keep their usual effect and `watch.signum` stays None."""
    watch = Watch()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield watch
        return

    def note(signum, frame):
        if watch.signum is not None:  # the second signal: stop now
            raise KeyboardInterrupt
        watch.signum = signum

    previous = {s: signal.signal(s, note) for s in SIGNALS}
    try:
        yield watch
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


__all__ = ["Interrupted", "Watch", "deferred"]
