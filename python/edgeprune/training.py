"""`edgeprune.train(...)`: learn edge gates with the paper's exact objective (docs/method.md 3-5, 10).

One step: sample every gate once (hard-concrete, on the device, shared by the batch); run the gated
model on the clean batch with the ablated writers; KL(full || circuit) at the task's positions plus
the Lagrangian (edgeprune.objective); AdamW (weight decay 0.01 on every group; the multipliers by
gradient ascent), global clipping at 1.0, linear warm-up then linear decay to 0. At the end the
circuit is extracted from the learned log alphas (Circuit.from_log_alphas).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from dataclasses import asdict, replace

import torch

from . import checkpoints, distributed, interrupts, ops, tasks
from .batches import TrainingData
from .checkpointing import CheckpointedLayers, checkpointed
from .compiling import adamw_step, compiled, use_compile
from .circuit import Circuit
from .config import TrainConfig, schedule_warnings
from .errors import RunError, UserError
from .evaluation import evaluate_circuit, evaluate_gates
from .identity import run_identity
from .loading import load_model, model_name
from .models import PrunableModel, prunable
from .objective import Lagrangian, logit_diff_gap, sampled_sparsity, task_kl
from .path import IN, ExitRecorder, SteeredPenalty, inside
from .outputs import check_file, check_folder
from .provenance import model_record
from .warmstart import init_log_alpha, init_scores, summary

SMALL_STEP = 1 << 22  # delta-stack elements per step below which a run uses one CPU thread


class NonFiniteLoss(RunError):
    """The loss or the gradient stopped being finite; nothing was updated."""


class Trainer:
    """One pruning run: the gated model, its data on the device, the objective and the optimiser."""

    def __init__(self, model: PrunableModel, dataset, config: TrainConfig, validation=None,
                 checkpoint_dir: str | None = None, log_file: str | None = None,
                 dist: distributed.Distributed | None = None):
        config.validate()
        if checkpoint_dir:  # refused now, not when the first checkpoint is due
            check_folder(checkpoint_dir, "checkpoint folder")
        if log_file:
            check_file(log_file, "log file")
        for message in schedule_warnings(config):  # before the first step: the run is not what it seems
            warnings.warn(f"edgeprune: {message}", UserWarning, stacklevel=2)
        if len(dataset) == 0:
            raise UserError("the training dataset is empty: give at least one clean/corrupted example")
        self.pm, self.dataset, self.config, self.dist = model, dataset, config, dist
        self.task = dataset.task
        self.validation = validation
        self.checkpoint_dir = checkpoint_dir
        self.log_file = log_file or (os.path.join(checkpoint_dir, checkpoints.LOG) if checkpoint_dir else None)
        self.device = distributed.local_device_of(model, dist)
        if config.checkpointing:
            model.set_layer_runner(checkpointed(model.layer_runner))
        self.compiled = use_compile(config.compile, self.device, config.steps,
                                    checkpointing=model.layer_runner.includes(CheckpointedLayers),
                                    distributed=dist is not None or model.layer_runner.includes(distributed.FSDPLayers))
        # resolved once: a traced forward takes the name as a constant (edgeprune.ops)
        self.backend = ops.choose("mix", self.device, model.adapter.dtype, config.backend).name
        self.data = TrainingData(model, dataset, self.device, batch_size=config.batch_size, pad_to=config.pad_to,
                                 cache_bytes=config.cache_bytes)
        if config.objective == "logit_diff" and bool((self.data.answers < 0).any() | (self.data.distractors < 0).any()):
            raise UserError(f"objective='logit_diff' needs a counterfactual answer for every example, and some "
                            f"{self.task.name} examples have none; use objective='kl' (custom JSONL: add a "
                            "\"counterfactual\" field to each line)")
        if config.objective == "logit_diff" and self.task.vocab is not None:
            outside = set(self.data.answers.tolist() + self.data.distractors.tolist()) - set(self.task.vocab)
            if outside:
                raise UserError(f"objective='logit_diff' reads answers within the {self.task.name} task's vocabulary, "
                                f"and answer tokens {sorted(outside)[:5]} are not in it; add them to the task's vocab "
                                "or use objective='kl'")
        # a pruning path (edgeprune.path): its own sparsity pressure, and the step each edge leaves at
        self.lagrangian = SteeredPenalty(config, model.gates, self.device) if config.path or config.steer else \
            Lagrangian(config, self.device)
        self.exits = ExitRecorder(model.graph, self.device) if config.path else None
        self._writer = model.graph.edge_writer_indices().to(self.device)
        self.optimizer = self._optimizer()
        # optimal ablation's constants are clipped on their own: their gradient must not scale the gates'
        self._params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self._constants = [p for group in self.optimizer.param_groups if group.get("name") == "ablation"
                           for p in group["params"]]
        self._clipped = [p for p in self._params if all(p is not q for q in self._constants)]
        self._base_lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
        self.threads = config.threads or self._default_threads()
        self.identity = self._identity() if checkpoint_dir else None
        self.step_index = 0
        self._step = torch.zeros((), dtype=torch.int64, device=self.device)  # the compiled step's step number
        self._written_adamw = self.compiled    # compiling.adamw_step updates the state (tensor learning rates)
        self._trial = self.compiled and config.compile == "auto"  # "auto" falls back if the first step fails
        if self.compiled:
            self._set_lr(0)
            self._static_for_graphs()
        self._objective = compiled(self.objective_terms, self.device) if self.compiled else self.objective_terms
        self._update = compiled(self.update, self.device) if self.compiled else self.update
        self._perm: tuple[int, torch.Tensor] | None = None   # (epoch, its order on the device)
        self._valid: dict[int, torch.Tensor] = {}              # examples in a batch -> their weights (compiled)
        self._unchecked: list = []  # (step, finite flag, loss, gradient norm) not yet read back
        self.last_checkpoint: str | None = None
        self.history: list[dict] = []

    # ------------------------------------------------------------------ setup
    def _optimizer(self):
        c, g, lam = self.config, self.pm.gates, self.lagrangian.multipliers
        lam_decay = c.weight_decay if c.lambda_weight_decay is None else c.lambda_weight_decay
        groups = [
            {"params": [g.edge_log_alpha], "lr": c.lr},
            {"params": [g.node_log_alpha], "lr": c.node_lr if c.node_lr is not None else c.lr},
            {"params": [lam["edge1"], lam["edge2"]], "lr": c.lambda_lr, "maximize": True, "weight_decay": lam_decay},
        ]
        if c.node_sparsity is not None:
            groups.append({"params": [lam["node1"], lam["node2"]], "lr": c.lambda_lr, "maximize": True,
                           "weight_decay": lam_decay})
        if self.pm.constants is not None and c.ablation == "optimal":  # no decay: it would pull them to zero ablation
            groups.append({"params": list(self.pm.constants.parameters()), "lr": c.ablation_lr, "weight_decay": 0.0,
                           "name": "ablation"})
        # compiled (edgeprune.compiling.adamw_step updates its state): the step count on the device
        return _with_state(torch.optim.AdamW(groups, weight_decay=c.weight_decay, capturable=self.compiled))

    def _lr_factor(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return step / max(1, c.warmup_steps)
        if c.path:  # flat: the gates must still move when the circuit is smallest
            return 1.0
        return max(0.0, (c.steps - step) / max(1, c.steps - c.warmup_steps))

    def _set_lr(self, step: int) -> None:
        """Each group's learning rate at this step: linear warm-up, then linear decay to 0. Compiled,
        a tensor filled in place (a float would be a constant of the graph, recompiled at every change)."""
        factor = self._lr_factor(step)
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            if not self._written_adamw:
                group["lr"] = base * factor
            elif isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(base * factor)
            else:
                group["lr"] = torch.tensor(base * factor, device=self.device)

    def _static_for_graphs(self) -> None:
        """On CUDA, the tensors the compiled graphs read and update in place between steps (the step
        number, the learning rates, the optimiser's state) at fixed addresses: a CUDA graph then
        uses them where they are instead of copying them in, and may update them."""
        if self.device.type != "cuda":
            return
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        state = [v for s in self.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
        for t in (self._step, *lrs, *state):
            torch._dynamo.mark_static_address(t)

    def _default_threads(self) -> int:
        """One CPU thread when a step's work is small: waking a pool costs more than it saves, and
        far more when another process keeps the cores busy. Otherwise torch's own count."""
        if self.device.type != "cpu":
            return torch.get_num_threads()
        work = self.config.batch_size * self.data.clean.shape[1] * self.pm.adapter.d_model * self.pm.graph.num_writers
        return 1 if work < SMALL_STEP else torch.get_num_threads()

    def _identity(self) -> dict:
        """What this run belongs to (edgeprune.identity); ranks other than 0 leave the weights to rank 0."""
        d, a = self.data, self.pm.adapter
        identity = run_identity(self.pm.model, self.task.name, [d.clean, d.corrupted, d.attention_mask, d.positions,
                                                               d.position_mask], self.config, dtype=a.dtype,
                                backend=self.backend, world_size=self.dist.world_size if self.dist else 1)
        if self.dist is not None and not self.dist.is_main:
            identity["model"]["weights"] = None
        return identity

    # ------------------------------------------------------------------ the step
    def batch_indices(self, step: int) -> torch.Tensor:
        """Shuffled epochs, last partial batch kept (the HF Trainer's order); a pure function of step.

        An epoch's order is drawn on the host and moved to the device once: a step's indices are a
        slice of it, with no copy that would wait for the device.
        """
        n, bs = len(self.dataset), self.config.batch_size
        per_epoch = math.ceil(n / bs)
        epoch, k = divmod(step, per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(n, generator=g).to(self.device))
        return self._perm[1][k * bs:(k + 1) * bs]

    def loss_terms(self, step: int) -> dict[str, torch.Tensor]:
        """The step's batch (chosen eagerly), then its objective terms: compiled, when the run compiles."""
        idx = self.batch_indices(step)
        share = None
        if self.dist is not None:  # this rank's slice of the global batch
            global_n = len(idx)
            idx, weight = self.dist.local_batch(idx)
            share = (weight, global_n)
        valid = None
        if self.compiled:  # one graph for every step: the step as a device tensor, batches of one size
            self._step.fill_(step)
            step = self._step
            idx, valid = self._full_size(idx)
        return self._objective(self.data.batch(idx), step, share, valid)

    def _full_size(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """An epoch's smaller last batch filled up with repeats of its first example, weighted 0, so
        that every batch of a compiled run has one shape; the loss is the mean over the real ones."""
        size = min(self.config.batch_size, len(self.dataset))
        n = len(idx)
        if n not in self._valid:
            self._valid[n] = (torch.arange(size, device=self.device) < n).float()
        if n < size:
            idx = torch.cat([idx, idx[:1].expand(size - n)])
        return idx, self._valid[n]

    def objective_terms(self, b, step, share=None, valid=None) -> dict[str, torch.Tensor]:
        """Sampled gates, the gated forward, the loss and the Lagrangian, for one batch.

        step: an int, or a 0-dim device tensor when compiled. share: under FSDP, (this rank's
        weight, the global batch size). valid: each example's weight in the mean (0 for a filler).
        """
        edges, nodes = self.pm.gates.sample(self.config.seed, step)
        logits = self.pm(b.clean, b.attention_mask, b.positions, edges=edges, nodes=nodes, record=b.record,
                         recompute_readers=self.config.recompute_readers, backend=self.backend)
        kl = task_kl(self.task, logits, b.targets, b.position_mask)
        if self.config.objective == "logit_diff":  # the fitted term; KL is still logged
            gap = logit_diff_gap(self.task, logits, b.targets, b.answers, b.distractors)
            kl, shown = gap, _mean(kl.detach(), valid)
        if share is None:
            kl = _mean(kl, valid)
        else:
            weight, global_n = share
            local = kl.sum() * weight
            kl = self.dist.all_reduce_sum(local) / global_n
        s_edge, s_node = sampled_sparsity(edges, nodes)
        penalty = self.lagrangian(s_edge, s_node, step)
        lam = self.lagrangian.multipliers
        # the multipliers as this step used them: the update changes the parameters in place
        terms = {"loss": kl + penalty, "kl": kl, "edge_sparsity": s_edge, "node_sparsity": s_node,
                 "edge_target": torch.as_tensor(self.lagrangian.sparsity_targets(step)[0]),
                 "lambda_edge1": lam["edge1"].detach().clone(), "lambda_edge2": lam["edge2"].detach().clone()}
        if share is not None:  # averaged over ranks, its gradient is the global batch's
            terms["objective"] = local * (self.dist.world_size / global_n) + penalty
        if self.config.objective == "logit_diff":
            terms["logit_diff_gap"], terms["kl"] = terms.pop("kl"), shown
        return terms

    def step(self) -> dict[str, torch.Tensor]:
        """One optimisation step; returns its logged terms as tensors (reading them waits for the device).

        Nothing here waits for the device: a non-finite loss or gradient norm is caught on the device,
        the step's update is skipped there, and `check()` (every log_every steps in `run`) raises it.
        """
        if self._trial:  # compile="auto": a step that cannot compile runs eagerly, with a warning
            self._trial = False
            try:
                return self.step()
            except (NonFiniteLoss, UserError):
                raise
            except Exception as e:  # noqa: BLE001 - any compiler failure; the eager step is the same step
                warnings.warn(f"edgeprune: the compiled step failed ({type(e).__name__}: {str(e)[:300]}); this run "
                              "continues eagerly. Pass compile='off' to skip compiling, or compile='on' to see the "
                              "error.", RuntimeWarning, stacklevel=2)
                self.compiled = False
                self._objective, self._update = self.objective_terms, self.update
        step = self.step_index
        if self.compiled and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the last replay's outputs are copies by now (below)
        with _threads(self.threads):
            terms = self.loss_terms(step)
            loss = terms["loss"]
            objective = terms.pop("objective", loss)
            # a CUDA graph's outputs live in its own memory, which its next replay rewrites: copied out
            terms = {k: v.detach().clone() if self.compiled else v.detach() for k, v in terms.items()}
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if self.dist is not None:
                self.dist.average_gradients(self._params)
            self._set_lr(step)
            finite, norm = self._update(loss.detach())
            if self.compiled:
                finite, norm = finite.clone(), norm.clone()
            if isinstance(self.lagrangian, SteeredPenalty):  # steered by the edges in after this update
                g = self.pm.gates
                now = self.exits.update(step, g.edge_log_alpha, g.node_log_alpha) if self.exits is not None else \
                    inside(g.edge_log_alpha, g.node_log_alpha, self._writer).sum()
                self.lagrangian.follow(now, step)
        self._unchecked.append((step, finite, terms["loss"], norm.detach()))
        self.step_index += 1
        return terms

    def update(self, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip the gradients, then the optimiser's step, kept only where the loss and the gradient
        norm are finite (a device bool: nothing waits for the device). A non-finite step changes
        neither the gates nor the optimiser's state (AdamW would turn every gate NaN).
        Returns (finite, gradient norm)."""
        norm = torch.nn.utils.clip_grad_norm_(self._clipped, self.config.max_grad_norm)
        if self._constants:
            norm = norm + torch.nn.utils.clip_grad_norm_(self._constants, self.config.max_grad_norm)
        finite = torch.isfinite(loss) & torch.isfinite(norm)
        tensors = list(self._params)
        tensors += [v for state in self.optimizer.state.values() for v in state.values()
                    if torch.is_tensor(v) and v.device == finite.device]
        before = [t.detach().clone() for t in tensors]
        if self._written_adamw:
            adamw_step(self.optimizer)
        else:
            self.optimizer.step()
        with torch.no_grad():
            for t, old in zip(tensors, before):
                t.copy_(torch.where(finite, t, old))
        return finite, norm.detach()

    def check(self) -> None:
        """Raise NonFiniteLoss for the first unchecked step whose loss or gradient was not finite."""
        unchecked, self._unchecked = self._unchecked, []
        if not unchecked:
            return
        flags = torch.stack([finite for _, finite, _, _ in unchecked]).cpu()
        if bool(flags.all()):
            return
        step, _, loss, norm = unchecked[int((~flags).nonzero()[0])]
        what = (f"the loss became {loss.item()}" if not torch.isfinite(loss) else
                f"the gradient norm became {norm.item()} with a finite loss ({loss.item():.6g})")
        raise NonFiniteLoss(f"{what} at step {step}; its update was skipped, as is every non-finite step's"
                            f"{self._last_good()}. Lower the learning rates, or check the model's dtype "
                            "(fp32 is safest).")

    def _last_good(self) -> str:
        if self.last_checkpoint:
            return f"; the last good checkpoint is {self.last_checkpoint}"
        return "; no checkpoint was written yet (pass checkpoint_dir to keep one)"

    # ------------------------------------------------------------------ the loop
    def run(self, progress: bool = True) -> Circuit:
        """Train to the last step and return the circuit. SIGINT / SIGTERM stop it after the current
        step, checkpointed (edgeprune.interrupts.Interrupted); a run already at its last step (a
        finished checkpoint, resumed) only extracts its circuit."""
        with interrupts.deferred(self.dist is None) as self._signal:
            circuit = self._run(progress)
        self._stop_if_signalled(None)  # a signal during the final evaluation: the run finished, say so
        return circuit

    def _stop_if_signalled(self, bar) -> None:
        if self._signal.signum is None:
            return
        if bar is not None:
            bar.close()
        if self.checkpoint_dir:
            self.save_checkpoint()
        raise interrupts.Interrupted(self._signal.signum, self.step_index, self.config.steps, self.checkpoint_dir)

    def _run(self, progress: bool) -> Circuit:
        c = self.config
        main = self.dist is None or self.dist.is_main
        finished = self.step_index >= c.steps
        bar = _progress(c.steps, self.step_index, progress and main and not finished)
        started = time.perf_counter()
        while self.step_index < c.steps:
            logs = self.step()
            step = self.step_index
            if step % c.log_every == 0 or step == c.steps:
                self.check()
                logs = {k: float(v) for k, v in logs.items()} | {"step": step}
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
            self._stop_if_signalled(bar)
        if bar is not None:
            bar.close()
        self.check()
        if self.checkpoint_dir and not finished:
            self.save_checkpoint()
        circuit = self.circuit()
        if finished:  # nothing trained now: the circuit of the finished checkpoint, rebuilt
            circuit.config["from_finished_checkpoint"] = True
        else:
            circuit.config["train_seconds"] = time.perf_counter() - started
        return circuit

    @torch.no_grad()
    def evaluate_soft(self) -> dict[str, float]:
        """The reference's in-training eval: deterministic soft masks, no threshold."""
        edges, nodes = self.pm.gates.deterministic()
        with _threads(self.threads):
            metrics = evaluate_gates(self.pm, self.validation, edges, nodes, self.config.batch_size, self.config.pad_to)
        return {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}

    def _log(self, row: dict):
        self.history.append(row)
        if self.log_file and (self.dist is None or self.dist.is_main):
            os.makedirs(os.path.dirname(os.path.abspath(self.log_file)), exist_ok=True)
            with open(self.log_file, "a") as f:
                f.write(json.dumps(row) + "\n")

    @torch.no_grad()
    def circuit(self) -> Circuit:
        """The final circuit of the learned gates (Circuit.from_log_alphas), evaluated on validation."""
        g = self.pm.gates
        circuit = Circuit.from_log_alphas(self.pm.graph, g.edge_log_alpha, g.node_log_alpha, g.eps,
                                          model=model_name(self.pm.model), task=self.task.name,
                                          **model_record(self.pm, sharded=self.dist is not None),
                                          config=asdict(self.config) | {"threads": self.threads},
                                          seed=self.config.seed,
                                          ranking=self.exits.ranking(g.edge_log_alpha) if self.exits else None,
                                          ablation_values=self.pm.constants.tensors() if self.pm.constants else None)
        if self.validation is not None:
            with _threads(self.threads):
                circuit.metrics = evaluate_circuit(self.pm, circuit, self.validation,
                                                   batch_size=self.config.batch_size, pad_to=self.config.pad_to)
        return circuit

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        state = {"step": self.step_index, "gates": self.pm.gates.state_dict(),
                 "lambdas": self.lagrangian.multipliers.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "config": asdict(self.config), "threads": self.threads,
                 "identity": self.identity}
        if self.pm.constants is not None:
            state["ablation"] = self.pm.constants.state_dict()
        if self.exits is not None:
            state["path"] = self.exits.state_dict()
        return state

    def load_state_dict(self, state: dict):
        self.step_index = state["step"]
        self.pm.gates.load_state_dict(state["gates"])
        if "ablation" in state:
            self.pm.constants.load_state_dict(state["ablation"])
        self.lagrangian.multipliers.load_state_dict(state["lambdas"])
        if self.exits is not None:
            self.exits.load_state_dict(state["path"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self._written_adamw:
            self._set_lr(self.step_index)
            self._static_for_graphs()
        self.threads = state.get("threads", self.threads)

    def save_checkpoint(self):
        self.check()  # a checkpoint never follows an unchecked non-finite step
        path = os.path.join(self.checkpoint_dir, checkpoints.FILE)
        if self.dist is None or self.dist.is_main:  # gates and optimiser are replicated: rank 0 writes
            checkpoints.save(path, self.state_dict())
        if self.dist is not None:
            self.dist.barrier()
        self.last_checkpoint = path

    def maybe_resume(self, overwrite: bool = False, reuse_finished: bool = False) -> bool:
        """Continue from the checkpoint in checkpoint_dir if this run made it (edgeprune.identity);
        a checkpoint of another run is refused, and of a finished one too unless reuse_finished
        (then `run` only rebuilds its circuit). overwrite=True starts afresh."""
        if not self.checkpoint_dir:
            return False
        main = self.dist is None or self.dist.is_main
        if overwrite and main:
            checkpoints.clear(self.checkpoint_dir)
        if self.dist is not None:
            self.dist.barrier()
        state = None if overwrite else checkpoints.load(self.checkpoint_dir, self.device)
        if state is not None:
            checkpoints.check(state, self.identity, self.checkpoint_dir, finished_ok=reuse_finished)
            self.load_state_dict(state)
            self.last_checkpoint = os.path.join(self.checkpoint_dir, checkpoints.FILE)
        if main:  # the steps after the checkpoint are logged again: drop their old rows
            checkpoints.trim_log(self.log_file, self.step_index)
        return state is not None


def _mean(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    return values.mean() if valid is None else (values * valid).sum() / valid.sum()


def _with_state(optimizer: torch.optim.AdamW) -> torch.optim.AdamW:
    """AdamW with its state made now, as its first step would make it (zero moments, step 0), so
    that a first step that is not finite is undone like any other (Trainer.update)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            step_device = p.device if group["capturable"] else "cpu"
            optimizer.state[p] = {"step": torch.zeros((), dtype=_scalar_dtype(), device=step_device),
                                  "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                  "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
    return optimizer


def _scalar_dtype() -> torch.dtype:
    """The dtype AdamW keeps its step count in."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


@contextlib.contextmanager
def _threads(n: int):
    """torch's intra-op threads (which the C++ kernels' OpenMP loops share) set to n, then restored."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


def _progress(total, initial, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc="pruning", dynamic_ncols=True)


# ---------------------------------------------------------------------- the public entry point

def prepare(model, data, config: TrainConfig, *, tokenizer=None, validation=None, n: int | None = None,
            device=None, dtype=None, init=None):
    """Everything a run needs before its first step: (prunable model, dataset, validation, distributed).

    Under torchrun this joins the process group and shards the model (only rank 0 reads a folder's
    weights); the gates are initialised from the seed, and the edge gates from `init`'s scores when
    given (edgeprune.warmstart); mean and optimal ablation compute their means.
    """
    run = distributed.setup(device, force=config.cpu_offload)  # under torchrun: this rank's process group
    # Sharded: only rank 0 reads the weights (one copy in host memory, not one per rank).
    from_rank0 = run is not None and run.world_size > 1 and isinstance(model, (str, os.PathLike))
    model, tokenizer = load_model(model, tokenizer, device if run is None else None, dtype,
                                  weights=not from_rank0 or run.is_main)
    dataset = tasks.load(data, tokenizer, split="train", n=n, seed=config.seed)
    if validation is None and isinstance(data, (str, os.PathLike)):
        validation = tasks.load_split(data, tokenizer, "validation", seed=config.seed)
    elif validation is not None:
        validation = tasks.load(validation, tokenizer, split="validation", seed=config.seed)
    pm = prunable(model, embedding_nodes=config.embedding_nodes, ablation=config.ablation, backend=config.backend,
                  attention_writers=config.attention_writers, kv_edges=config.kv_edges or "group")
    torch.manual_seed(config.seed)
    pm.gates.reset_parameters(torch.Generator().manual_seed(config.seed))
    if init is not None:
        start_from(pm, dataset, init, config)
    if run is not None:
        distributed.apply_fsdp(pm, run, cpu_offload=config.cpu_offload, from_rank0=from_rank0)
    if config.ablation in ("mean", "optimal"):
        batch = dataset.batch(list(range(len(dataset))), pad_to=config.pad_to)
        where = distributed.local_device_of(pm, run)
        pm.set_mean_ablation(batch.clean.to(where), batch.attention_mask.to(where),
                             per_position=config.optimal_per_position)
    return pm, dataset, validation, run


def start_from(pm: PrunableModel, dataset, init, config: TrainConfig) -> None:
    """The edge gates of a warm start (edgeprune.warmstart): from scores, or from an attribution
    method's, run on the training data first."""
    if isinstance(init, str):
        init = warm_scores(pm, dataset, init, config)
    with torch.no_grad():
        pm.gates.edge_log_alpha.copy_(init_log_alpha(init_scores(init, pm.graph), config.init_sparsity,
                                                     config.init_temperature))


def has_counterfactuals(dataset) -> bool:
    """Whether every example has an answer and a counterfactual answer (the logit difference's terms)."""
    batch = dataset.batch(list(range(len(dataset))))
    return bool((batch.answers >= 0).all() & (batch.distractors >= 0).all())


def warm_scores(pm: PrunableModel, dataset, method: str, config: TrainConfig):
    """A warm start's scores by attribution on the training data, with the run's ablation (the
    logit difference where every example has a counterfactual answer, else KL); attribute refuses
    a method that cannot use that ablation."""
    from .attribution import attribute
    metric = "logit_diff" if has_counterfactuals(dataset) else "kl"
    return attribute(pm, dataset, method, metric=metric, ablation=config.ablation, seed=config.seed, progress=False)


def train(model, data, config: TrainConfig | None = None, *, tokenizer=None, validation=None, n: int | None = None,
          device=None, dtype=None, checkpoint_dir: str | None = None, log_file: str | None = None,
          overwrite: bool = False, progress: bool = True, init=None, reuse_finished: bool = False,
          **overrides) -> Circuit:
    """Prune `model` on `data` and return the Circuit.

    model: a Hugging Face causal LM instance (pass tokenizer=), a hub id or local folder with model
    and tokenizer, or a Tracr model. data: a task name (edgeprune.tasks.names()), a JSONL path, a list
    of {"clean", "corrupted"} dicts, or a task dataset. config: a TrainConfig; **overrides set any of
    its fields by name (edge_sparsity=0.98, steps=..., ...); the defaults are the paper's GPT-2 runs
    (docs/method.md 4.2). With checkpoint_dir, the run checkpoints and resumes from it exactly; a
    checkpoint of another run (model, data, settings, version, dtype, backend, world size) or of a
    finished one is refused unless overwrite=True, which starts afresh there, or reuse_finished=True,
    which returns the finished run's circuit again (rebuilt from its last checkpoint). SIGINT or
    SIGTERM stop the run after its current step, checkpointed (edgeprune.interrupts.Interrupted).
    init: a warm start, a Circuit with scores (edgeprune.attribute's), per-edge scores, or the name of
    an attribution method (e.g. "eap-ig-inputs", run on the training data first): the edge
    gates start from them (edgeprune.warmstart, TrainConfig.init_sparsity / init_temperature) and
    the sparsity target ramps from the sparsity they start at.
    """
    config = TrainConfig.with_overrides(config, overrides)
    pm, dataset, validation, run = prepare(model, data, config, tokenizer=tokenizer, validation=validation, n=n,
                                           device=device, dtype=dtype, init=init)
    config, start = warm_config(config, pm, init)
    trainer = Trainer(pm, dataset, config, validation, checkpoint_dir, log_file, dist=run)
    if start is not None and trainer.identity is not None:  # a resume must start from the same scores
        trainer.identity["init"] = start
    trainer.maybe_resume(overwrite, reuse_finished)
    circuit = trainer.run(progress)
    if start is not None:
        circuit.config["init"] = start
    return circuit


def warm_config(config: TrainConfig, pm: PrunableModel, init) -> tuple[TrainConfig, dict | None]:
    """A warm start's config and its summary: the target ramps from the sparsity the gates start at
    (from 0 it would first drive the closed edges open again)."""
    if init is None:
        return config, None
    start = summary(init, config.init_sparsity, config.init_temperature, pm.gates.edge_log_alpha)
    if config.ramp_from == 0.0 and config.path:  # the path follows the edges in (edgeprune.path)
        out = float((pm.gates.edge_log_alpha.detach() <= IN).float().mean())
        config = replace(config, ramp_from=min(out, config.edge_sparsity))
    elif config.ramp_from == 0.0:
        config = replace(config, ramp_from=min(start["expected_sparsity"], config.edge_sparsity))
    return config, start


__all__ = ["NonFiniteLoss", "TrainConfig", "Trainer", "prepare", "train"]
