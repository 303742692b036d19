"""`edgeprune.train(...)`: learn edge gates with the paper's exact objective (method.md 3-5, 10).

One step: sample every gate once (hard-concrete, on the device, shared by the batch); run the gated
model on the clean batch with the ablated writers; KL(full || circuit) at the task's positions;
add the Lagrangian lambda1 (s - t) + lambda2 (s - t)^2 on the sampled sparsity s against a target
t ramped linearly from 0; AdamW (weight decay 0.01 on every group; the multipliers by gradient
ascent), global clipping at 1.0, linear warm-up then linear decay to 0.

Work that does not change per step is done once: the full model's target distributions and the
ablated run's writer records are cached per example while they fit `cache_bytes`; otherwise they
are recomputed per batch. The unembedding runs only at the loss positions.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .circuit import Circuit
from .gates import bisect_threshold, expected_sparsity
from .models import PrunableModel, WriterRecord, prunable
from .models.disentangled import run_disentangled
from .tasks.metrics import kl_per_example


@dataclass
class TrainConfig:
    edge_sparsity: float
    node_sparsity: float | None = None   # None: no node term (the paper's --disable_node_loss)
    steps: int = 3000
    batch_size: int = 32
    lr: float = 0.8                      # edge gates
    node_lr: float | None = None         # node gates; None: same as lr
    lambda_lr: float = 0.8               # multipliers (gradient ascent)
    warmup_steps: int = 200
    ramp_steps: int = 2500
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    ablation: str = "corrupted"
    embedding_nodes: int | None = None
    seed: int = 0
    eval_every: int = 64
    log_every: int = 8
    checkpoint_every: int = 256
    pad_to: int | None = None            # None: the longest example (attention is causal: same result)
    cache_bytes: int = 4 << 30           # budget for cached targets and ablation records
    backend: str | None = None
    recompute_readers: bool = True       # recompute attention-reader mixtures in backward (memory)
    checkpointing: bool = False          # recompute each decoder layer in backward (non-reentrant)
    cpu_offload: bool = False            # FSDP: keep the weight shards in CPU memory

    def validate(self):
        for name in ("edge_sparsity", "node_sparsity"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 2:
                raise ValueError(f"{name}={value} is outside [0, 2): a target sparsity is a fraction of edges "
                                 "removed (values above 1 mean 'as sparse as possible', as in the paper)")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")


class NonFiniteLoss(RuntimeError):
    pass


class Trainer:
    """Holds one pruning run: the gated model, the data on the device, the optimiser and caches."""

    def __init__(self, model: PrunableModel, dataset, config: TrainConfig, validation=None,
                 checkpoint_dir: str | None = None, log_file: str | None = None):
        config.validate()
        if len(dataset) == 0:
            raise ValueError("the training dataset is empty: give at least one clean/corrupted example")
        self.pm, self.dataset, self.config = model, dataset, config
        self.task = dataset.task
        self.validation = validation
        self.checkpoint_dir = checkpoint_dir
        self.log_file = log_file or (os.path.join(checkpoint_dir, "metrics.jsonl") if checkpoint_dir else None)
        # Under torchrun, edgeprune.distributed.apply_fsdp has sharded the model and set this.
        self.dist = getattr(model, "distributed", None)
        self.device = self.dist.device if self.dist is not None else model.adapter.device
        if config.checkpointing:
            from .checkpointing import apply_checkpointing
            apply_checkpointing(model)
        self.data = _device_batch(dataset, range(len(dataset)), config.pad_to, self.device)
        self.lambdas = nn.ParameterDict({k: nn.Parameter(torch.zeros((), device=self.device))
                                         for k in ("edge1", "edge2", "node1", "node2")})
        self.optimizer = self._optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step_index = 0
        self.last_checkpoint: str | None = None
        self.history: list[dict] = []
        self.targets = self._cached(self._targets_for, self._target_bytes())
        # Interchange ablation: per-example records of the corrupted run. Mean / zero: one fixed record.
        corrupted = model.ablation == "corrupted"
        self.records = self._cached(self._record_for, self._record_bytes()) if corrupted else None
        self.fixed_record = None if corrupted else model.ablation_record(seq_len=self.data["clean"].shape[1])

    # ------------------------------------------------------------------ setup
    def _optimizer(self):
        c, g = self.config, self.pm.gates
        groups = [
            {"params": [g.edge_log_alpha], "lr": c.lr},
            {"params": [g.node_log_alpha], "lr": c.node_lr if c.node_lr is not None else c.lr},
            {"params": [self.lambdas["edge1"], self.lambdas["edge2"]], "lr": c.lambda_lr, "maximize": True},
        ]
        if c.node_sparsity is not None:
            groups.append({"params": [self.lambdas["node1"], self.lambdas["node2"]], "lr": c.lambda_lr,
                           "maximize": True})
        return torch.optim.AdamW(groups, weight_decay=c.weight_decay)

    def _lr_factor(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return step / max(1, c.warmup_steps)
        return max(0.0, (c.steps - step) / max(1, c.steps - c.warmup_steps))

    def target(self, step: int) -> tuple[float, float | None]:
        """The sparsity targets at a step: a linear ramp from 0 over ramp_steps, then flat."""
        c = self.config
        frac = min(1.0, step / c.ramp_steps) if c.ramp_steps > 0 else 1.0
        node = None if c.node_sparsity is None else c.node_sparsity * frac
        return c.edge_sparsity * frac, node

    # ------------------------------------------------------------------ caches
    def _chunks(self):
        n, bs = len(self.dataset), self.config.batch_size
        return [torch.arange(i, min(n, i + bs), device=self.device) for i in range(0, n, bs)]

    @torch.no_grad()
    def _targets_for(self, idx):
        d = self.data
        logits = self.pm.full_logits(d["clean"][idx], d["attention_mask"][idx], d["positions"][idx])
        return self.task.log_probs(logits)

    @torch.no_grad()
    def _record_for(self, idx):
        return self.pm.record(self.data["corrupted"][idx], self.data["attention_mask"][idx])

    def _target_bytes(self):
        d = self.data
        vocab = len(self.task.vocab) if getattr(self.task, "vocab", None) else self.pm.model.config.vocab_size
        return d["positions"].numel() * vocab * 4

    def _record_bytes(self):
        B, S = self.data["clean"].shape
        a = self.pm.adapter
        per_token = (len(a.embeddings(self.data["clean"][:1, :1])) + 4 * a.num_layers + 1) * a.d_model
        return B * S * per_token * torch.finfo(a.dtype).bits // 8

    def _cached(self, fn, nbytes):
        """All examples' values computed once, if they fit the budget; else None (recompute per batch)."""
        if nbytes > self.config.cache_bytes:
            return None
        parts = [fn(idx) for idx in self._chunks()]
        if isinstance(parts[0], WriterRecord):
            return WriterRecord.cat(parts)
        return torch.cat(parts)

    # ------------------------------------------------------------------ the step
    def batch_indices(self, step: int) -> torch.Tensor:
        """Shuffled epochs, last partial batch kept (the HF Trainer's order); a pure function of step."""
        n, bs = len(self.dataset), self.config.batch_size
        per_epoch = math.ceil(n / bs)
        epoch, k = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        return perm[k * bs:(k + 1) * bs].to(self.device)

    def loss_terms(self, step: int) -> dict[str, torch.Tensor]:
        idx = self.batch_indices(step)
        if self.dist is not None:  # this rank's slice of the global batch
            global_n = len(idx)
            idx, weight = self.dist.local_batch(idx)
        d = self.data
        if self.pm.ablation != "corrupted":
            record = self.fixed_record
        else:
            record = self.records.select(idx) if self.records is not None else self._record_for(idx)
        target = self.targets[idx] if self.targets is not None else self._targets_for(idx)
        edges, nodes = self.pm.gates.sample(self.config.seed, step)
        logits = run_disentangled(self.pm.adapter, self.pm.graph, d["clean"][idx], record, edges, nodes,
                                  d["attention_mask"][idx], d["positions"][idx], self.config.backend,
                                  self.config.recompute_readers)
        kl = kl_per_example(self.task.log_probs(logits.float()), target, d["position_mask"][idx],
                            self.task.position_reduction)
        if self.dist is None:
            kl = kl.mean()
        else:
            local = kl.sum() * weight
            kl = self.dist.all_reduce_sum(local) / global_n
        s_edge, s_node = self.pm.gates.sampled_sparsity(edges, nodes)
        t_edge, t_node = self.target(step)
        lam = self.lambdas
        reg = lam["edge1"] * (s_edge - t_edge) + lam["edge2"] * (s_edge - t_edge) ** 2
        if t_node is not None:
            reg = reg + lam["node1"] * (s_node - t_node) + lam["node2"] * (s_node - t_node) ** 2
        terms = {"loss": kl + reg, "kl": kl, "edge_sparsity": s_edge, "node_sparsity": s_node,
                 "edge_target": torch.tensor(t_edge), "lambda_edge1": lam["edge1"], "lambda_edge2": lam["edge2"]}
        if self.dist is not None:  # averaged over ranks, its gradient is the global batch's
            terms["objective"] = local * (self.dist.world_size / global_n) + reg
        return terms

    def step(self) -> dict[str, float]:
        step = self.step_index
        terms = self.loss_terms(step)
        loss = terms["loss"]
        objective = terms.pop("objective", loss)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        # Checked after backward, not before: reading the loss waits for the device, and here the
        # whole forward and backward have been queued first. Nothing has been updated yet.
        if not torch.isfinite(loss):
            where = f"; the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else \
                "; no checkpoint was written yet (pass checkpoint_dir to keep one)"
            raise NonFiniteLoss(f"the loss became {loss.item()} at step {step} (KL {terms['kl'].item()}){where}. "
                                "Lower the learning rates, or check the model's dtype (fp32 is safest).")
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.dist is not None:
            self.dist.average_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step_index += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    # ------------------------------------------------------------------ the loop
    def run(self, progress: bool = True) -> Circuit:
        c = self.config
        bar = _progress(c.steps, self.step_index, progress and (self.dist is None or self.dist.is_main))
        self.pm.gates.train()
        started = time.perf_counter()
        while self.step_index < c.steps:
            logs = self.step()
            step = self.step_index
            if step % c.log_every == 0 or step == c.steps:
                logs["step"] = step
                self._log(logs)
                if bar is not None:
                    bar.set_postfix(kl=f"{logs['kl']:.3g}", sparsity=f"{logs['edge_sparsity']:.3f}",
                                    target=f"{logs['edge_target']:.3f}", lam=f"{logs['lambda_edge1']:.2g}")
            if self.validation is not None and c.eval_every and step % c.eval_every == 0:
                self._log({"step": step, **{f"eval_{k}": v for k, v in self.evaluate_soft().items()}})
            if self.checkpoint_dir and c.checkpoint_every and step % c.checkpoint_every == 0:
                self.save_checkpoint()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if self.checkpoint_dir:
            self.save_checkpoint()
        circuit = self.circuit()
        circuit.config["train_seconds"] = time.perf_counter() - started
        return circuit

    @torch.no_grad()
    def evaluate_soft(self) -> dict[str, float]:
        """The reference's in-training eval: deterministic soft masks, no threshold."""
        from .evaluate import evaluate_gates
        edges, nodes = self.pm.gates.deterministic()
        metrics = evaluate_gates(self.pm, self.validation, edges, nodes, self.config.batch_size, self.config.pad_to)
        return {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}

    def _log(self, row: dict):
        self.history.append(row)
        if self.log_file and (self.dist is None or self.dist.is_main):
            os.makedirs(os.path.dirname(os.path.abspath(self.log_file)), exist_ok=True)
            with open(self.log_file, "a") as f:
                f.write(json.dumps(row) + "\n")

    # ------------------------------------------------------------------ the final circuit
    @torch.no_grad()
    def circuit(self) -> Circuit:
        """Deterministic masks, thresholds bisected to the model's own sparsity, edges and nodes apart."""
        edges_soft, nodes_soft = self.pm.gates.deterministic()
        tau_e = bisect_threshold(edges_soft, expected_sparsity(edges_soft))
        tau_n = bisect_threshold(nodes_soft, expected_sparsity(nodes_soft))
        keep_nodes = (nodes_soft > tau_n).cpu()
        keep_edges = (edges_soft > tau_e).cpu()
        graph = self.pm.graph
        writer_of = graph.edge_writer_indices()
        keep_edges &= keep_nodes[writer_of]  # the reference exports edges of kept writers only
        names = graph.edges
        circuit = Circuit(graph=graph, edges=[names[i] for i in keep_edges.nonzero().flatten().tolist()],
                          nodes=[w for w, k in zip(graph.writers, keep_nodes.tolist()) if k],
                          edge_scores=self.pm.gates.edge_log_alpha.detach().cpu().clone(),
                          node_scores=self.pm.gates.node_log_alpha.detach().cpu().clone(),
                          model=_model_name(self.pm.model), task=self.task.name,
                          config=asdict(self.config) | {"thresholds": [tau_e, tau_n]}, seed=self.config.seed)
        if self.validation is not None:
            from .evaluate import evaluate
            circuit.metrics = evaluate(self.pm, circuit, self.validation, batch_size=self.config.batch_size,
                                       pad_to=self.config.pad_to)
        return circuit

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"step": self.step_index, "gates": self.pm.gates.state_dict(), "lambdas": self.lambdas.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "config": asdict(self.config)}

    def load_state_dict(self, state: dict):
        self.step_index = state["step"]
        self.pm.gates.load_state_dict(state["gates"])
        self.lambdas.load_state_dict(state["lambdas"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def save_checkpoint(self):
        path = os.path.join(self.checkpoint_dir, "checkpoint.pt")
        if self.dist is None or self.dist.is_main:  # gates and optimiser are replicated: rank 0 writes
            os.makedirs(self.checkpoint_dir, exist_ok=True)
            torch.save(self.state_dict(), path + ".tmp")
            os.replace(path + ".tmp", path)  # atomic: a killed run never leaves half a checkpoint
        if self.dist is not None:
            self.dist.barrier()
        self.last_checkpoint = path

    def maybe_resume(self) -> bool:
        path = os.path.join(self.checkpoint_dir or "", "checkpoint.pt")
        if not self.checkpoint_dir or not os.path.exists(path):
            return False
        state = torch.load(path, map_location=self.device, weights_only=True)
        saved = {k: v for k, v in state["config"].items() if k not in ("steps", "eval_every", "log_every",
                                                                        "checkpoint_every", "cache_bytes",
                                                                        "checkpointing", "cpu_offload")}
        mine = {k: v for k, v in asdict(self.config).items() if k in saved}
        if saved != mine:
            diff = {k: (saved[k], mine[k]) for k in saved if saved[k] != mine[k]}
            raise ValueError(f"the checkpoint in {self.checkpoint_dir} was made with other settings {diff} "
                             "(saved, now); use another checkpoint_dir or the same settings")
        self.load_state_dict(state)
        self.last_checkpoint = path
        return True


def _device_batch(dataset, indices, pad_to, device) -> dict[str, torch.Tensor]:
    batch = dataset.batch(list(indices), pad_to=pad_to)
    return {"clean": batch.clean.to(device), "corrupted": batch.corrupted.to(device),
            "attention_mask": batch.attention_mask.to(device), "positions": batch.positions.to(device),
            "position_mask": batch.position_mask.to(device)}


def _model_name(model) -> str:
    return getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__


def _progress(total, initial, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc="pruning", dynamic_ncols=True)


# ---------------------------------------------------------------------- the public entry point

def load_model(model, tokenizer=None, device=None, dtype=None, weights: bool = True):
    """A model instance, hub id or local folder -> (model, tokenizer).

    weights=False builds a hub id or folder's model on the meta device without reading its weights
    (the ranks other than 0 of a sharded run: apply_fsdp fills their shards from rank 0's copy).
    """
    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        name = str(model)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(name)
        if weights:
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype or torch.float32,
                                                         attn_implementation="sdpa")
        else:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(name), dtype=dtype or torch.float32,
                                                         attn_implementation="sdpa")
            return model, tokenizer
    if tokenizer is None:
        tokenizer = getattr(model, "tokenizer", None)
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    return model, tokenizer


def train(model, data, *, edge_sparsity: float, node_sparsity: float | None = None, steps: int = 3000,
          batch_size: int = 32, lr: float = 0.8, node_lr: float | None = None, lambda_lr: float = 0.8,
          warmup_steps: int = 200, ramp_steps: int = 2500, ablation: str = "corrupted",
          embedding_nodes: int | None = None, seed: int = 0, device=None, dtype=None, eval_every: int = 64,
          checkpoint_dir: str | None = None, progress: bool = True, tokenizer=None, validation=None,
          pad_to: int | None = None, n: int | None = None, log_file: str | None = None, **options) -> Circuit:
    """Prune `model` on `data` and return the Circuit.

    model: a Hugging Face causal LM instance (pass tokenizer=), a hub id or local folder with model
    and tokenizer, or a Tracr model. data: a task name (edgeprune.tasks.names()), a JSONL path, a list
    of {"clean", "corrupted"} dicts, or a task dataset. Defaults follow the paper's GPT-2 runs
    (method.md 4.2). With checkpoint_dir, the run checkpoints and resumes from it exactly.
    """
    from . import tasks
    config = TrainConfig(edge_sparsity=edge_sparsity, node_sparsity=node_sparsity, steps=steps,
                         batch_size=batch_size, lr=lr, node_lr=node_lr, lambda_lr=lambda_lr,
                         warmup_steps=warmup_steps, ramp_steps=ramp_steps, ablation=ablation,
                         embedding_nodes=embedding_nodes, seed=seed, eval_every=eval_every, pad_to=pad_to, **options)
    config.validate()
    from . import distributed
    run = distributed.setup(device, force=config.cpu_offload)  # under torchrun: this rank's process group
    # Sharded: only rank 0 reads the weights (one copy in host memory, not one per rank).
    from_rank0 = run is not None and run.world_size > 1 and isinstance(model, (str, os.PathLike))
    model, tokenizer = load_model(model, tokenizer, device if run is None else None, dtype,
                                  weights=not from_rank0 or run.is_main)
    dataset = tasks.load(data, tokenizer, split="train", n=n, seed=seed)
    if validation is None and isinstance(data, str):
        try:
            validation = tasks.load(data, tokenizer, split="validation", seed=seed)
        except (ValueError, KeyError):
            validation = None
    elif validation is not None:
        validation = tasks.load(validation, tokenizer, split="validation", seed=seed)
    pm = prunable(model, embedding_nodes=embedding_nodes, ablation=ablation, backend=config.backend)
    torch.manual_seed(seed)
    pm.gates.reset_parameters(torch.Generator().manual_seed(seed))
    if run is not None:
        distributed.apply_fsdp(pm, run, cpu_offload=config.cpu_offload, from_rank0=from_rank0)
    if ablation == "mean":
        batch = dataset.batch(list(range(len(dataset))), pad_to=pad_to)
        where = distributed.local_device_of(pm)
        pm.set_mean_ablation(batch.clean.to(where), batch.attention_mask.to(where))
    trainer = Trainer(pm, dataset, config, validation, checkpoint_dir, log_file)
    trainer.maybe_resume()
    return trainer.run(progress)


class TrainStep:
    """One optimisation step on fixed token tensors: the entry point of the step benchmarks."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    @classmethod
    def build(cls, model, clean_ids: torch.Tensor, corrupted_ids: torch.Tensor, positions: torch.Tensor,
              edge_sparsity: float = 0.98, ablation: str = "corrupted", **config) -> "TrainStep":
        """positions: (B,) or (B, P) loss positions; every example is used in every step."""
        from .tasks.base import Example, Task, TaskDataset
        positions = positions.reshape(len(clean_ids), -1)
        examples = [Example(c.tolist(), x.tolist(), p.tolist())
                    for c, x, p in zip(clean_ids.cpu(), corrupted_ids.cpu(), positions.cpu())]
        dataset = TaskDataset(Task(), examples)
        config.setdefault("batch_size", len(examples))
        pm = prunable(model, ablation=ablation, backend=config.get("backend"))
        return cls(Trainer(pm, dataset, TrainConfig(edge_sparsity=edge_sparsity, ablation=ablation, **config)))

    def step(self) -> float:
        return self.trainer.step()["loss"]
