"""One training run in its own process, for tests/test_kill_resume.py:

    python kill_run.py FOLDER OUT [KILL_AT]

trains in FOLDER (resuming whatever checkpoint is there), SIGKILLs itself as step KILL_AT + 1
begins, else writes the resumed-from step, the final log alphas and the circuit's edges to OUT.
"""
import os
import signal
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/, not helpers/ (it has a tokenizers.py)

import torch  # noqa: E402

import edgeprune  # noqa: E402
from edgeprune.training import TrainConfig, Trainer  # noqa: E402
from helpers.data import random_pairs  # noqa: E402
from helpers.models import tiny  # noqa: E402

STEPS, CHECKPOINT_EVERY = 24, 4


def main(folder: str, out: str, kill_at: int | None):
    pm = edgeprune.prunable(tiny("gpt2"), backend="cpp")
    with torch.no_grad():  # gates that move from the first step (log alpha ~ N(1, 1))
        g = torch.Generator().manual_seed(1)
        for p in pm.gates.parameters():
            p.copy_(torch.randn(p.shape, generator=g) + 1.0)
    config = TrainConfig(edge_sparsity=0.6, node_sparsity=0.3, steps=STEPS, batch_size=4, warmup_steps=4,
                         ramp_steps=16, eval_every=0, log_every=1, checkpoint_every=CHECKPOINT_EVERY, threads=1,
                         backend="cpp")
    trainer = Trainer(pm, random_pairs(n=8, seq=7), config, checkpoint_dir=folder)
    trainer.maybe_resume()
    resumed_from = trainer.step_index
    if kill_at is not None:
        step = trainer.step

        def step_or_die():
            if trainer.step_index == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return step()
        trainer.step = step_or_die
    circuit = trainer.run(progress=False)
    torch.save({"resumed_from": resumed_from, "edge_log_alpha": pm.gates.edge_log_alpha.detach(),
                "node_log_alpha": pm.gates.node_log_alpha.detach(), "edges": circuit.edges}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
