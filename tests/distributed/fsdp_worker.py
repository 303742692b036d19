"""One rank of the 2-process FSDP2 test (launched by torchrun from test_fsdp.py; not a test itself).

Writes, from rank 0, into OUT: hooks.pt (a forward/backward with the FSDP hooks observed), and the
logs and gates of a full run, an interrupted run and its resumption (via edgeprune.train).
"""
import json
import os
import sys

import edgeprune
import torch
from edgeprune import distributed
from edgeprune.models.disentangled import run_disentangled
from edgeprune.train import Trainer, train
from fsdp_common import TRAIN_KW, hook_inputs, train_data, trainer_for
from helpers.models import tiny


class Interrupted(Exception):
    pass


def _sharded(module) -> bool:
    from torch.distributed.tensor import DTensor
    return all(isinstance(p, DTensor) for p in module.parameters())


def check_hooks(model, out):
    """Forward and backward through FSDP: layers freed after forward, gathered again for backward."""
    pm = edgeprune.prunable(model)
    run = distributed.setup()
    distributed.apply_fsdp(pm, run)
    ids, record_ids, edges, nodes, weights = hook_inputs(pm)
    record = pm.record(record_ids)
    layers = distributed.decoder_layers(pm.adapter)
    logits = run_disentangled(pm.adapter, pm.graph, ids, record, edges, nodes)
    after_forward = [_sharded(layer) for layer in layers]
    grads = torch.autograd.grad((logits * weights).sum(), (edges, nodes))
    after_backward = [_sharded(layer) for layer in layers]
    if run.is_main:
        torch.save({"logits": logits.detach(), "grads": grads, "after_forward": after_forward,
                    "after_backward": after_backward, "root_sharded": _sharded(pm.model.lm_head)},
                   os.path.join(out, "hooks.pt"))


def main(out):
    torch.set_num_threads(1)
    # Models first: transformers saves only on rank 0 once a process group exists.
    models = [tiny("llama") for _ in range(5)]
    check_hooks(models[0], out)
    pm = edgeprune.prunable(models[4])
    distributed.apply_fsdp(pm, distributed.setup())
    trainer = trainer_for(pm)
    trainer.run(progress=False)
    data = train_data()
    full = train(models[1], data, checkpoint_dir=os.path.join(out, "full"), **TRAIN_KW)

    step = Trainer.step

    def step_then_stop(self):  # "killed" after the step-3 checkpoint
        if self.step_index == 3:
            raise Interrupted
        return step(self)

    Trainer.step = step_then_stop
    try:
        train(models[2], data, checkpoint_dir=os.path.join(out, "resumed"), **TRAIN_KW)
    except Interrupted:
        pass
    Trainer.step = step
    resumed = train(models[3], data, checkpoint_dir=os.path.join(out, "resumed"), **TRAIN_KW)
    if int(os.environ["RANK"]) == 0:
        torch.save({"full": (full.edge_scores, full.node_scores), "resumed": (resumed.edge_scores, resumed.node_scores),
                    "trainer": (trainer.history, pm.gates.edge_log_alpha.detach(), pm.gates.node_log_alpha.detach())},
                   os.path.join(out, "gates.pt"))
        with open(os.path.join(out, "world.json"), "w") as f:
            json.dump({"world_size": torch.distributed.get_world_size()}, f)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
