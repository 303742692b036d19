"""What a run belongs to: its model, data, settings and machinery, compared before a resume.

A checkpoint is only continued by the run that made it. The identity holds the model's config and
a fingerprint of its weights, a fingerprint of the tokenised examples, every setting that changes
the result (`steps` included: the learning-rate decay depends on it), the edgeprune version, the
dtype, the kernel backend and the world size.

The weights' fingerprint hashes every tensor's name, shape and dtype and SAMPLE values spread
evenly over it, never every byte: a 13B model is read at a few hundred values per tensor, not 26 GB.
A change confined to unsampled entries goes unnoticed; a fine-tune or another checkpoint does not.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields

import torch

from ._version import __version__
from .config import TrainConfig

SAMPLE = 256  # values hashed per tensor
# Settings that change what a run logs or how fast it runs, never its gates; may differ on resume.
NOT_COMPARED = ("eval_every", "log_every", "checkpoint_every", "cache_bytes", "checkpointing", "cpu_offload",
                "threads", "cuda_graphs")


def weights_fingerprint(model: torch.nn.Module) -> str | None:
    """A hash of every parameter and buffer's name, shape, dtype and SAMPLE evenly spaced values.

    None when the weights are not here (a meta-device model: the ranks that receive rank 0's weights).
    """
    h = hashlib.sha256()
    for name, t, sample in sampled_values(model, SAMPLE):
        if sample is None:
            return None
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]


def sampled_values(model: torch.nn.Module, n: int):
    """(name, tensor, n evenly spaced values as float32 on the CPU) for every parameter and buffer;
    the values are None for every tensor when any is on the meta device (the weights are not here)."""
    tensors = list(model.state_dict().items())  # sharded (FSDP2 DTensors): this rank's shards
    if any(t.is_meta for _, t in tensors):
        yield from ((name, t, None) for name, t in tensors)
        return
    for name, t in tensors:
        flat = (t.to_local() if hasattr(t, "to_local") else t).detach().reshape(-1)  # FSDP: this rank's shard
        idx = torch.linspace(0, max(flat.numel() - 1, 0), min(n, flat.numel())).long().to(flat.device)
        yield name, t, flat[idx].float().cpu()


def data_fingerprint(task_name: str, tensors: list[torch.Tensor]) -> str:
    """A hash of the task's name and the tokenised examples (ids, masks, loss positions)."""
    h = hashlib.sha256(task_name.encode())
    for t in tensors:
        h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def model_config(model: torch.nn.Module) -> dict:
    """The model's config as plain JSON values, without where it was loaded from or by which version."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {"class": type(model).__name__}
    values = cfg.to_dict() if hasattr(cfg, "to_dict") else asdict(cfg)
    values = {k: v for k, v in values.items() if not k.startswith("_") and k != "transformers_version"}
    return json.loads(json.dumps(values, sort_keys=True, default=str))


def run_identity(model: torch.nn.Module, task_name: str, data: list[torch.Tensor], config: TrainConfig, *,
                 dtype: torch.dtype, backend: str, world_size: int) -> dict:
    # the backend that runs is compared, not the one asked for (None and EDGEPRUNE_BACKEND=cpp are one run)
    settings = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in NOT_COMPARED + ("backend",)}
    return {"edgeprune": __version__, "model": {"config": model_config(model), "weights": weights_fingerprint(model)},
            "data": data_fingerprint(task_name, data), "settings": settings,
            "dtype": str(dtype).removeprefix("torch."), "backend": backend, "world_size": world_size}


def differences(saved: dict, mine: dict, limit: int = 12) -> list[str]:
    """'key: saved (checkpoint) vs mine (now)' for each differing leaf; a weights fingerprint of None
    (weights not on this rank) is not compared."""
    a, b = _flatten(saved), _flatten(mine)
    out = []
    for key in sorted(set(a) | set(b)):
        if key == "model.weights" and None in (a.get(key), b.get(key)):
            continue
        if a.get(key, "(absent)") != b.get(key, "(absent)"):
            what = "the model's weights" if key == "model.weights" else key
            out.append(f"{what}: {a.get(key, '(absent)')!r} in the checkpoint, {b.get(key, '(absent)')!r} now")
    if len(out) > limit:
        out = out[:limit] + [f"and {len(out) - limit} more"]
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out
