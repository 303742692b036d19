"""`edgeprune.train(...)`: learn edge gates with the paper's exact objective (docs/method.md 3-5, 10).

One step (edgeprune.step): sample every gate once (hard-concrete, on the device, shared by the
batch); run the gated model on the clean batch with the ablated writers; KL(full || circuit) at the
task's positions plus the Lagrangian (edgeprune.objective); AdamW (weight decay 0.01 on every group;
the multipliers by gradient ascent), global clipping at 1.0, linear warm-up then linear decay to 0.
The Trainer runs the steps, logs, evaluates and checkpoints; at the end the circuit is extracted
from the learned log alphas (Circuit.from_log_alphas).
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import asdict, replace

import torch

from . import checkpoints, distributed, interrupts, ops, tasks
from .batches import BatchOrder, TrainingData
from .recomputation import CheckpointedLayers, checkpointed
from .checkpoints import RunLog
from .compiling import use_compile
from .circuit import Circuit
from .config import TrainConfig, kv_edges_for, schedule_warnings
from .errors import UserError
from .evaluation import evaluate_circuit, evaluate_gates
from .identity import run_identity
from .loading import load_model, model_name
from .models import PrunableModel, prunable
from .models.ablations import set_means
from .path import IN, ExitRecorder
from .outputs import check_file, check_folder
from .provenance import model_record
from .step import CompiledStep, FiniteGuard, NonFiniteLoss, Step, sparsity_pressure
from .warmstart import init_log_alpha, init_scores, summary

SMALL_STEP = 1 << 22  # delta-stack elements per step below which a run uses one CPU thread


class Trainer:
    """One pruning run: its data, its step (step.Step or step.CompiledStep, chosen once here), the
    loop with its log, evaluation and checkpoints, and the circuit at the end.

    model: a PrunableModel ready for the run (training.prepare: gates initialised, ablation set up,
    layers recomputed when config.checkpointing). init: the warm start's summary, when the gates
    were started from scores (recorded in the run's identity: a resume must start from the same).
    """

    def __init__(self, model: PrunableModel, dataset, config: TrainConfig, validation=None,
                 checkpoint_dir: str | None = None, log_file: str | None = None,
                 dist: distributed.Distributed | None = None, init: dict | None = None):
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
        self.task, self.validation, self.checkpoint_dir = dataset.task, validation, checkpoint_dir
        self.device = distributed.local_device_of(model, dist)
        recomputes = model.layer_runner.includes(CheckpointedLayers)
        compile_step = use_compile(config.compile, self.device, config.steps, checkpointing=config.checkpointing or
                                   recomputes, distributed=dist is not None or
                                   model.layer_runner.includes(distributed.FSDPLayers))
        if config.checkpointing and not recomputes:
            raise UserError("checkpointing=True needs a model whose decoder layers recompute in backward: prepare it "
                            "with edgeprune.training.prepare(...), or call pm.set_layer_runner(checkpointed("
                            "pm.layer_runner)) (edgeprune.recomputation) before building the Trainer")
        # resolved once: a traced forward takes the name as a constant (edgeprune.ops)
        self.backend = ops.choose("mix", self.device, model.adapter.dtype, config.backend).name
        self.data = TrainingData(model, dataset, self.device, batch_size=config.batch_size, pad_to=config.pad_to,
                                 cache_bytes=config.cache_bytes)
        check_objective(config.objective, self.data, self.task)
        # a pruning path (edgeprune.path) records the step each edge leaves at
        self.exits = ExitRecorder(model.graph, self.device) if config.path else None
        self.pressure = sparsity_pressure(config, model.gates, self.device, self.exits)
        self.train_step = (CompiledStep if compile_step else Step)(model, self.data, config, self.pressure,
                                                                   self.device, self.backend, dist)
        self._trial = compile_step and config.compile == "auto"  # "auto" falls back if the first step fails
        self.threads = config.threads or self._default_threads()
        self.identity = self._identity(init) if checkpoint_dir else None
        self.order = BatchOrder(len(dataset), config.batch_size, config.seed, self.device)
        self.guard = FiniteGuard()
        main = dist is None or dist.is_main
        self.log = RunLog(log_file or (os.path.join(checkpoint_dir, checkpoints.LOG) if checkpoint_dir else None),
                          write=main)
        self.step_index = 0
        self.last_checkpoint: str | None = None

    @property
    def compiled(self) -> bool:
        return isinstance(self.train_step, CompiledStep)

    @property
    def history(self) -> list[dict]:
        return self.log.rows

    def _default_threads(self) -> int:
        """One CPU thread when a step's work is small: waking a pool costs more than it saves, and
        far more when another process keeps the cores busy. Otherwise torch's own count."""
        if self.device.type != "cpu":
            return torch.get_num_threads()
        work = self.config.batch_size * self.data.clean.shape[1] * self.pm.adapter.d_model * self.pm.graph.num_writers
        return 1 if work < SMALL_STEP else torch.get_num_threads()

    def _identity(self, init: dict | None) -> dict:
        """What this run belongs to (edgeprune.identity); ranks other than 0 leave the weights to rank 0."""
        d, a = self.data, self.pm.adapter
        identity = run_identity(self.pm.model, self.task.name, [d.clean, d.corrupted, d.attention_mask, d.positions,
                                                               d.position_mask], self.config, dtype=a.dtype,
                                backend=self.backend, world_size=self.dist.world_size if self.dist else 1)
        if self.dist is not None and not self.dist.is_main:
            identity["model"]["weights"] = None
        if init is not None:
            identity["init"] = init
        return identity

    # ------------------------------------------------------------------ the step
    def step(self) -> dict[str, torch.Tensor]:
        """One optimisation step; returns its logged terms as tensors (reading them waits for the device).
        A non-finite loss or gradient skips the update on the device; `check()` raises it."""
        if self._trial:
            return self._first_compiled_step()
        with _threads(self.threads):
            terms, finite, norm = self.train_step(self.order(self.step_index), self.step_index)
        self.guard.record(self.step_index, finite, terms["loss"], norm)
        self.step_index += 1
        return terms

    def _first_compiled_step(self) -> dict[str, torch.Tensor]:
        """compile="auto": a step that cannot compile runs eagerly from here on, with a warning."""
        self._trial = False
        try:
            return self.step()
        except (NonFiniteLoss, UserError):
            raise
        except Exception as e:  # noqa: BLE001 - any compiler failure; the eager step is the same step
            warnings.warn(f"edgeprune: the compiled step failed ({type(e).__name__}: {str(e)[:300]}); this run "
                          "continues eagerly. Pass compile='off' to skip compiling, or compile='on' to see the "
                          "error.", RuntimeWarning, stacklevel=3)
            state = self.train_step.optimizer.state_dict()
            self.train_step = Step(self.pm, self.data, self.config, self.pressure, self.device, self.backend, self.dist)
            self.train_step.load_optimizer(state)
            return self.step()

    def check(self) -> None:
        """Raise NonFiniteLoss for the first unchecked step whose loss or gradient was not finite."""
        self.guard.check(self.last_checkpoint)

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
        finished = self.step_index >= c.steps
        bar = _progress(c.steps, self.step_index, progress and self.log.write and not finished)
        started = time.perf_counter()
        while self.step_index < c.steps:
            logs = self.step()
            step = self.step_index
            if step % c.log_every == 0 or step == c.steps:
                self.check()
                logs = {k: float(v) for k, v in logs.items()} | {"step": step}
                self.log(logs)
                if bar is not None:
                    bar.set_postfix(kl=f"{logs['kl']:.3g}", sparsity=f"{logs['edge_sparsity']:.3f}",
                                    target=f"{logs['edge_target']:.3f}", lam=f"{logs['lambda_edge1']:.2g}")
            if self.validation is not None and c.eval_every and step % c.eval_every == 0:
                self.log({"step": step, **{f"eval_{k}": v for k, v in self.evaluate_soft().items()}})
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
                 "lambdas": self.pressure.multipliers.state_dict(), "optimizer": self.train_step.optimizer.state_dict(),
                 "config": asdict(self.config), "threads": self.threads, "identity": self.identity}
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
        self.pressure.multipliers.load_state_dict(state["lambdas"])
        if self.exits is not None:
            self.exits.load_state_dict(state["path"])
        self.train_step.load_optimizer(state["optimizer"])
        self.train_step.set_lr(self.step_index)
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
        if overwrite and self.log.write:
            checkpoints.clear(self.checkpoint_dir)
        if self.dist is not None:
            self.dist.barrier()
        state = None if overwrite else checkpoints.load(self.checkpoint_dir, self.device)
        if state is not None:
            checkpoints.check(state, self.identity, self.checkpoint_dir, finished_ok=reuse_finished)
            self.load_state_dict(state)
            self.last_checkpoint = os.path.join(self.checkpoint_dir, checkpoints.FILE)
        if self.log.write:  # the steps after the checkpoint are logged again: drop their old rows
            checkpoints.trim_log(self.log.path, self.step_index)
        return state is not None


def check_objective(objective: str, data: TrainingData, task) -> None:
    """Refuse the logit difference where its terms are missing or outside the task's vocabulary."""
    if objective != "logit_diff":
        return
    if bool((data.answers < 0).any() | (data.distractors < 0).any()):
        raise UserError(f"objective='logit_diff' needs a counterfactual answer for every example, and some "
                        f"{task.name} examples have none; use objective='kl' (custom JSONL: add a "
                        "\"counterfactual\" field to each line)")
    if task.vocab is not None:
        outside = set(data.answers.tolist() + data.distractors.tolist()) - set(task.vocab)
        if outside:
            raise UserError(f"objective='logit_diff' reads answers within the {task.name} task's vocabulary, "
                            f"and answer tokens {sorted(outside)[:5]} are not in it; add them to the task's vocab "
                            "or use objective='kl'")


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
                  attention_writers=config.attention_writers, kv_edges=kv_edges_for(config.kv_edges))
    torch.manual_seed(config.seed)
    pm.gates.reset_parameters(torch.Generator().manual_seed(config.seed))
    if init is not None:
        start_from(pm, dataset, init, config)
    if run is not None:
        distributed.apply_fsdp(pm, run, cpu_offload=config.cpu_offload, from_rank0=from_rank0)
    if config.checkpointing:
        pm.set_layer_runner(checkpointed(pm.layer_runner))
    if pm.kind.from_means:
        set_means(pm, dataset, config.pad_to, distributed.local_device_of(pm, run), config.optimal_per_position)
    return pm, dataset, validation, run


def start_from(pm: PrunableModel, dataset, init, config: TrainConfig) -> None:
    """The edge gates of a warm start (edgeprune.warmstart): from scores, or from an attribution
    method's, run on the training data first."""
    if isinstance(init, str):
        init = warm_scores(pm, dataset, init, config)
    scores = init_scores(init, pm.graph, config.init_ranking)
    with torch.no_grad():
        pm.gates.edge_log_alpha.copy_(init_log_alpha(scores, config.init_sparsity, config.init_temperature))


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
    trainer = Trainer(pm, dataset, config, validation, checkpoint_dir, log_file, dist=run, init=start)
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
    start = summary(init, config.init_sparsity, config.init_temperature, pm.gates.edge_log_alpha, config.init_ranking)
    if config.ramp_from == 0.0 and config.path:  # the path follows the edges in (edgeprune.path)
        out = float((pm.gates.edge_log_alpha.detach() <= IN).float().mean())
        config = replace(config, ramp_from=min(out, config.edge_sparsity))
    elif config.ramp_from == 0.0:
        config = replace(config, ramp_from=min(start["expected_sparsity"], config.edge_sparsity))
    return config, start


__all__ = ["NonFiniteLoss", "TrainConfig", "Trainer", "prepare", "train"]
