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
from edgeprune.loading import load_model
from edgeprune.training import Trainer, train
from fsdp_common import FROM_PATH, TRAIN_KW, hook_inputs, train_data, trainer_for
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
    logits = pm(ids, edges=edges, nodes=nodes, record=record)
    after_forward = [_sharded(layer) for layer in layers]
    grads = torch.autograd.grad((logits * weights).sum(), (edges, nodes))
    after_backward = [_sharded(layer) for layer in layers]
    if run.is_main:
        torch.save({"logits": logits.detach(), "grads": grads, "after_forward": after_forward,
                    "after_backward": after_backward, "root_sharded": _sharded(pm.model.lm_head)},
                   os.path.join(out, "hooks.pt"))


loaded_on_meta: dict[str, bool] = {}


def _record_meta_loads():
    """Note, per family, whether this rank's train(folder) built its model on the meta device."""
    train_module = sys.modules["edgeprune.training"]
    load = train_module.load_model

    def recording(model, *args, **kwargs):
        loaded, tokenizer = load(model, *args, **kwargs)
        family = os.path.basename(str(model))
        if family in FROM_PATH:
            loaded_on_meta[family] = any(p.is_meta for p in loaded.parameters())
        return loaded, tokenizer
    train_module.load_model = recording


def _all_gather_flag(flag: bool) -> dict:
    flags = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(flags, flag)
    return {f"rank{i}": f for i, f in enumerate(flags)}


def check_from_rank0(out, family):
    """Shard a folder's model read on rank 0 only; save what each rank then holds, in full."""
    run = distributed.setup()
    model, _ = load_model(os.path.join(out, family), weights=run.is_main)
    pm = edgeprune.prunable(model)
    distributed.apply_fsdp(pm, run, from_rank0=True)
    # full_tensor() is collective (same order on every rank); the root's weights stay gathered
    params = {name: p.full_tensor() if hasattr(p, "full_tensor") else p.detach()
              for name, p in pm.model.named_parameters()}
    buffers = dict(pm.model.named_buffers())
    torch.save({"params": params, "buffers": buffers},
               os.path.join(out, f"from_rank0_{family}_rank{run.rank}.pt"))


def main(out):
    _record_meta_loads()
    torch.set_num_threads(1)
    # Models first: transformers saves only on rank 0 once a process group exists.
    models = [tiny("llama") for _ in range(5)]
    check_hooks(models[0], out)
    pm = edgeprune.prunable(models[4])
    run = distributed.setup()
    distributed.apply_fsdp(pm, run)
    trainer = trainer_for(pm, dist=run)
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
    from_path, meta = {}, {}
    for family in FROM_PATH:
        check_from_rank0(out, family)
        from_path[f"from_{family}"] = train(os.path.join(out, family), data, **TRAIN_KW,
                                            checkpoint_dir=os.path.join(out, f"from_{family}")).edge_scores
        meta[family] = _all_gather_flag(loaded_on_meta[family])
    if int(os.environ["RANK"]) == 0:
        torch.save({"full": (full.edge_scores, full.node_scores), "resumed": (resumed.edge_scores, resumed.node_scores),
                    "trainer": (trainer.history, pm.gates.edge_log_alpha.detach(), pm.gates.node_log_alpha.detach()),
                    **from_path}, os.path.join(out, "gates.pt"))
        with open(os.path.join(out, "from_path.json"), "w") as f:
            json.dump(meta, f)
        with open(os.path.join(out, "world.json"), "w") as f:
            json.dump({"world_size": torch.distributed.get_world_size()}, f)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
