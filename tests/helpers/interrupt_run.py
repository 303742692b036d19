"""`edgeprune` on the command line, signalled as a user would stop it, for tests/test_interrupts.py:

    python interrupt_run.py SIGNAL AT ARGS...

runs `edgeprune ARGS...` in this process and sends itself SIGNAL (INT or TERM) right after the
AT-th training step this process runs (counted over every run of the command); AT 0: no signal.
Exits with the command's exit code.
"""
import os
import signal
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/, not helpers/

from edgeprune.cli import main  # noqa: E402
from edgeprune.training import Trainer  # noqa: E402


def signal_at(signum: int, at: int) -> None:
    step, count = Trainer.step, [0]

    def step_then_signal(self):
        out = step(self)
        count[0] += 1
        if count[0] == at:
            os.kill(os.getpid(), signum)
        return out
    Trainer.step = step_then_signal


if __name__ == "__main__":
    name, at, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if at:
        signal_at(getattr(signal, f"SIG{name}"), at)
    sys.exit(main(argv))
