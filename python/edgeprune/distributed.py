"""Multi-process pruning with FSDP2 under torchrun: sharded frozen weights, replicated gates.

    torchrun --nproc-per-node 8 -m edgeprune prune ...      # or edgeprune.train(...) in a torchrun script

- `setup()` initialises the default process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on the
  CPU) and picks this rank's device (cuda:LOCAL_RANK).
- `apply_fsdp(pm, dist)` shards the model with `fully_shard`: one unit per decoder layer, then the
  root (embeddings, final norm, unembedding). The adapters read the HF submodules' weights directly
  and never call a decoder layer's forward, so FSDP's forward hooks would not fire on their own.
  Each layer's gated computation is run through a forward method registered with
  `register_fsdp_forward_method` (FSDP's public hook point for a method other than `forward`; the
  method, `edgeprune_forward`, is set on each FSDP unit by `apply_fsdp` and only there): FSDP all-gathers the layer before it and frees it after; its
  pre-backward hook (on the layer's output token) gathers it again before the layer's backward and
  its post-backward hook (on the layer's gate inputs) frees it when the layer's backward is done.
  The root stays gathered (FSDP never reshards the root after forward; here not after backward
  either), so the embeddings and the unembedding may be used anywhere.
- The weights are frozen: there is nothing to reduce-scatter and no fp32 master copy to keep. Load
  the model in bf16 for bf16 compute; the gates and Lagrange multipliers (the only trained
  tensors) are fp32 and replicated on every rank. Every rank samples the same gates each step
  (they are keyed by (seed, step)); `average_gradients` all-reduces their gradients after backward,
  so every rank takes the same optimiser step and the gates stay identical.
- Data: each rank takes a contiguous slice of every global batch (`local_batch`); the trainer
  weights its loss so that the averaged gradient is the gradient of the global batch's mean loss.
"""
from __future__ import annotations

import os
import socket
import types
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import RunError, UserError
from .models import LayerRunner


@dataclass
class Distributed:
    """This process's place in the run."""
    rank: int
    world_size: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def average_gradients(self, params) -> None:
        """Average the gradients of replicated parameters across ranks, in one all-reduce."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)  # gloo has no AVG
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def broadcast_(self, tensors) -> None:
        """Make rank 0's values every rank's (in place)."""
        for t in tensors:
            dist.broadcast(t.data, src=0)

    def local_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This rank's contiguous slice of a global batch, and the weight of its examples.

        A rank whose slice is empty (a last batch smaller than the world) still runs one example,
        with weight 0: every rank must take part in every all-gather of the forward and backward.
        """
        part = torch.tensor_split(indices, self.world_size)[self.rank]
        if len(part) == 0:
            return indices[:1], 0.0
        return part, 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(device=None, force: bool = False) -> Distributed | None:
    """Join the run that torchrun started (WORLD_SIZE > 1): None for a single process.

    force: set up a process group even for one process (FSDP's CPU offload needs one).
    device: "cpu" selects gloo on a machine with GPUs; otherwise CUDA (NCCL) when available.
    """
    if not dist.is_initialized():
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1 and not force:
            return None
        use_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if "MASTER_ADDR" not in os.environ and world <= 1:
            dist.init_process_group("nccl" if use_cuda else "gloo", init_method=f"tcp://127.0.0.1:{_free_port()}",
                                    rank=0, world_size=1)
        else:
            dist.init_process_group("nccl" if use_cuda else "gloo")
    world = dist.get_world_size()
    if world <= 1 and not force:
        return None
    backend = dist.get_backend()
    if backend == "nccl":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    else:
        dev = torch.device("cpu")
    return Distributed(dist.get_rank(), world, dev, backend)


def decoder_layers(adapter) -> nn.ModuleList:
    """The HF decoder blocks of an adapter's model: one FSDP unit each."""
    layers = adapter.decoder_layers()
    if layers is None:
        raise UserError(f"FSDP is not supported for {adapter.family or type(adapter).__name__} models; they are "
                        "tiny (Tracr): run them in one process")
    return layers


def _run(self, fn, *args):
    return fn(*args)


class FSDPLayers(LayerRunner):
    """Runs the model and each layer inside FSDP2's forward hooks (see the module docstring)."""

    def __init__(self, root: nn.Module, layers: nn.ModuleList, inner: LayerRunner):
        self.root, self.layers, self.inner = root, layers, inner
        self._in_model = False

    def run_model(self, fn, *args):
        if self._in_model:  # a pass started inside another (e.g. a record inside a forward): one root pass
            return self.inner.run_model(fn, *args)
        self._in_model = True
        try:
            return self.root.edgeprune_forward(lambda *a: self.inner.run_model(fn, *a), *args)
        finally:
            self._in_model = False

    def run_layer(self, index, fn, *args):
        return self.layers[index].edgeprune_forward(lambda *a: self.inner.run_layer(index, fn, *a), *args)


def apply_fsdp(pm, run: Distributed, cpu_offload: bool = False, reshard_after_forward: bool = True,
               param_dtype: torch.dtype | None = None, from_rank0: bool = False):
    """Shard `pm.model` in place with FSDP2 and route the gated forward through FSDP's hooks
    (pm.set_layer_runner); the gates move to this rank's device and take rank 0's values.

    Args:
        cpu_offload: keep the sharded weights in (pinned) CPU memory; each layer is copied to the
            GPU and gathered just before it runs. For models whose shards do not fit the GPUs.
        reshard_after_forward: free each layer's gathered weights after its forward (the ZeRO-3
            default); False keeps them until its backward: faster, more memory.
        param_dtype: cast the frozen weights to this dtype before sharding (e.g. torch.bfloat16);
            None keeps the model's dtype. There is no mixed-precision policy: nothing is trained.
        from_rank0: only rank 0 holds the weights; the other ranks' models are on the meta device
            (train(path) under torchrun loads them so). Each rank's shards are filled from rank 0's
            copy after sharding, so host memory holds one copy of the model instead of one per rank.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard, register_fsdp_forward_method

    if pm.layer_runner.includes(FSDPLayers):
        raise RunError("this model is already sharded with FSDP")
    adapter = pm.adapter
    layers = decoder_layers(adapter)
    if param_dtype is not None:
        pm.model.to(param_dtype)
    mesh = init_device_mesh(run.device.type, (run.world_size,))
    offload = CPUOffloadPolicy(pin_memory=run.device.type == "cuda") if cpu_offload else OffloadPolicy()
    full_state = pm.model.state_dict() if from_rank0 and run.is_main else {}  # kept alive past sharding
    for layer in layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward, offload_policy=offload)
    fully_shard(pm.model, mesh=mesh, offload_policy=offload)
    if from_rank0:
        _fill_from_rank0(pm, run, full_state, torch.device("cpu") if cpu_offload else run.device)
        del full_state
    # NOTE: a named forward method on each unit, so FSDP runs its unshard/reshard and backward hooks
    # around edgeprune's per-layer computation instead of the HF block's forward.
    for module in (*layers, pm.model):
        module.edgeprune_forward = types.MethodType(_run, module)
        register_fsdp_forward_method(module, "edgeprune_forward")
    pm.model.set_reshard_after_backward(False, recurse=False)

    if any(p.is_meta for p in pm.gates.parameters()):
        pm.gates.to_empty(device=run.device)  # rank 0's values arrive just below
    pm.gates.to(run.device)
    run.broadcast_(list(pm.gates.parameters()))
    pm.set_layer_runner(FSDPLayers(pm.model, layers, pm.layer_runner))
    with torch.no_grad():  # the first root pass: FSDP's lazy init, and the root's weights gathered for good
        pm.layer_runner.run_model(lambda: None)
    return pm


def _fill_from_rank0(pm, run: Distributed, full_state: dict, device: torch.device) -> None:
    """Give the meta ranks storage, then every rank its shards of rank 0's weights and its buffers."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if run.is_main and any(t.is_meta for t in pm.model.parameters()):
        raise UserError("from_rank0: rank 0 must hold the model's weights, not a meta-device model")
    if not run.is_main:
        pm.model.to_empty(device=device)
    set_model_state_dict(pm.model, full_state, options=StateDictOptions(full_state_dict=True,
                                                                        broadcast_from_rank0=True))
    # buffers are not sharded, and the non-persistent ones (rotary frequencies) are in no state dict
    for buffer in pm.model.buffers():
        dist.broadcast(buffer.data, src=0)


def local_device_of(pm, run: Distributed | None) -> torch.device:
    """Where a (possibly sharded, possibly CPU-offloaded) prunable model computes."""
    return run.device if run is not None else pm.adapter.device


__all__ = ["Distributed", "FSDPLayers", "apply_fsdp", "decoder_layers", "local_device_of", "setup"]
