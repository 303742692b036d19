"""One training step (docs/method.md 3-5): the objective, backward, clipping, the finite guard, the
learning rate and the update, chosen once per run.

    step = Step(pm, data, config, pressure, device, backend)          # eager
    step = CompiledStep(pm, data, config, pressure, device, backend)  # torch.compile (edgeprune.compiling)
    terms, finite, norm = step(batch_indices, step_number)

Both run the same objective on the same batch. The compiled step differs only where a graph must
not change from one step to the next: the step number is a device tensor, every batch has one size
(a smaller last batch is filled with weight-0 repeats), the forward uses the functional delta stack
(models/delta_stack.BlockStack), the learning rates are tensors updated in place, and AdamW is
written out (compiling.adamw_step). Nothing here waits for the device: a non-finite loss or
gradient skips its update on the device, and FiniteGuard raises it at the next check.
"""
from __future__ import annotations

import torch

from .compiling import adamw_step, compiled
from .config import TrainConfig
from .errors import RunError
from .objective import Lagrangian, logit_diff_gap, sampled_sparsity, task_kl
from .path import SteeredPenalty


class NonFiniteLoss(RunError):
    """The loss or the gradient stopped being finite; nothing was updated."""


def sparsity_pressure(config: TrainConfig, gates, device, exits=None):
    """What pushes the circuit to its target: the paper's Lagrangian, or the steered penalty of a
    path or a steered run (edgeprune.path), which records each edge's exit in `exits`."""
    if config.path or config.steer:
        return SteeredPenalty(config, gates, device, exits)
    return Lagrangian(config, device)


def lr_factor(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then linear decay to 0 at the last step; a path stays flat after its warm-up
    (its gates must still move when the circuit is smallest)."""
    if step < config.warmup_steps:
        return step / max(1, config.warmup_steps)
    if config.path:
        return 1.0
    return max(0.0, (config.steps - step) / max(1, config.steps - config.warmup_steps))


class Step:
    """The eager step: one optimisation step of a run, as the paper's reference takes it."""

    stack = "delta"   # the gated forward's delta stack (models/delta_stack.py)

    def __init__(self, pm, data, config: TrainConfig, pressure, device, backend: str, dist=None):
        self.pm, self.data, self.config, self.pressure = pm, data, config, pressure
        self.device, self.backend, self.dist = device, backend, dist
        self.optimizer = self._optimizer()
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        # optimal ablation's constants are clipped on their own: their gradient must not scale the gates'
        self._constants = [p for group in self.optimizer.param_groups if group.get("name") == "ablation"
                           for p in group["params"]]
        self._clipped = [p for p in self.params if all(p is not q for q in self._constants)]
        self._base_lrs = [float(group["lr"]) for group in self.optimizer.param_groups]
        self._objective, self._update = self.objective, self.update

    # ------------------------------------------------------------------ one step
    def __call__(self, idx: torch.Tensor, step: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """(the step's logged terms, finite, gradient norm), all device tensors."""
        share = None
        if self.dist is not None:  # this rank's slice of the global batch
            global_n = len(idx)
            idx, weight = self.dist.local_batch(idx)
            share = (weight, global_n)
        terms = self._objective(*self._inputs(idx, step), share)
        loss = terms["loss"]
        objective = terms.pop("objective", loss)
        terms = {k: self._kept(v) for k, v in terms.items()}
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if self.dist is not None:
            self.dist.average_gradients(self.params)
        self.set_lr(step)
        finite, norm = self._update(loss.detach())
        self.pressure.after_update(step)
        return terms, self._kept(finite), self._kept(norm)

    def _inputs(self, idx: torch.Tensor, step: int):
        """The objective's batch, step and example weights (None: all 1)."""
        return self.data.batch(idx), step, None

    def _kept(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach()

    def objective(self, b, step, valid=None, share=None) -> dict[str, torch.Tensor]:
        """Sampled gates, the gated forward, the loss and the sparsity pressure, for one batch.

        step: an int, or a 0-dim device tensor when compiled. valid: each example's weight in the
        mean (0 for a filler). share: under FSDP, (this rank's weight, the global batch size).
        """
        edges, nodes = self.pm.gates.sample(self.config.seed, step)
        logits = self.pm(b.clean, b.attention_mask, b.positions, edges=edges, nodes=nodes, record=b.record,
                         recompute_readers=self.config.recompute_readers, backend=self.backend, stack=self.stack)
        task = self.data.task
        kl = task_kl(task, logits, b.targets, b.position_mask)
        if self.config.objective == "logit_diff":  # the fitted term; KL is still logged
            gap = logit_diff_gap(task, logits, b.targets, b.answers, b.distractors)
            kl, shown = gap, _mean(kl.detach(), valid)
        if share is None:
            kl = _mean(kl, valid)
        else:
            weight, global_n = share
            local = kl.sum() * weight
            kl = self.dist.all_reduce_sum(local) / global_n
        s_edge, s_node = sampled_sparsity(edges, nodes)
        penalty = self.pressure(s_edge, s_node, step)
        lam = self.pressure.multipliers
        # the multipliers as this step used them: the update changes the parameters in place
        terms = {"loss": kl + penalty, "kl": kl, "edge_sparsity": s_edge, "node_sparsity": s_node,
                 "edge_target": torch.as_tensor(self.pressure.sparsity_targets(step)[0]),
                 "lambda_edge1": lam["edge1"].detach().clone(), "lambda_edge2": lam["edge2"].detach().clone()}
        if share is not None:  # averaged over ranks, its gradient is the global batch's
            terms["objective"] = local * (self.dist.world_size / global_n) + penalty
        if self.config.objective == "logit_diff":
            terms["logit_diff_gap"], terms["kl"] = terms.pop("kl"), shown
        return terms

    def update(self, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip the gradients, then the optimiser's step, kept only where the loss and the gradient
        norm are finite (a device bool: nothing waits for the device). A non-finite step changes
        neither the gates nor the optimiser's state (AdamW would turn every gate NaN)."""
        norm = torch.nn.utils.clip_grad_norm_(self._clipped, self.config.max_grad_norm)
        if self._constants:
            norm = norm + torch.nn.utils.clip_grad_norm_(self._constants, self.config.max_grad_norm)
        finite = torch.isfinite(loss) & torch.isfinite(norm)
        tensors = list(self.params)
        tensors += [v for state in self.optimizer.state.values() for v in state.values()
                    if torch.is_tensor(v) and v.device == finite.device]
        before = [t.detach().clone() for t in tensors]
        self._optimizer_step()
        with torch.no_grad():
            for t, old in zip(tensors, before):
                t.copy_(torch.where(finite, t, old))
        return finite, norm.detach()

    # ------------------------------------------------------------------ the optimiser and its schedule
    capturable = False

    def _optimizer(self) -> torch.optim.AdamW:
        """AdamW over the gates, the multipliers (by gradient ascent) and optimal ablation's constants
        (no decay: it would pull them to zero ablation), with its state made now (with_state)."""
        c, g, lam = self.config, self.pm.gates, self.pressure.multipliers
        lam_decay = c.weight_decay if c.lambda_weight_decay is None else c.lambda_weight_decay
        groups = [
            {"params": [g.edge_log_alpha], "lr": c.lr},
            {"params": [g.node_log_alpha], "lr": c.node_lr if c.node_lr is not None else c.lr},
            {"params": [lam["edge1"], lam["edge2"]], "lr": c.lambda_lr, "maximize": True, "weight_decay": lam_decay},
        ]
        if c.node_sparsity is not None:
            groups.append({"params": [lam["node1"], lam["node2"]], "lr": c.lambda_lr, "maximize": True,
                           "weight_decay": lam_decay})
        if self.pm.constants is not None and self.pm.kind.learned:
            groups.append({"params": list(self.pm.constants.parameters()), "lr": c.ablation_lr, "weight_decay": 0.0,
                           "name": "ablation"})
        return with_state(torch.optim.AdamW(groups, weight_decay=c.weight_decay, capturable=self.capturable))

    def _optimizer_step(self) -> None:
        self.optimizer.step()

    def set_lr(self, step: int) -> None:
        """Each group's learning rate at this step (lr_factor)."""
        factor = lr_factor(self.config, step)
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base * factor

    def load_optimizer(self, state: dict) -> None:
        """The optimiser's state from a checkpoint, or from a compiled step that fell back to this one:
        torch's own AdamW with float learning rates."""
        self.optimizer.load_state_dict(state)
        for group in self.optimizer.param_groups:
            group["capturable"], group["lr"] = False, float(group["lr"])


class CompiledStep(Step):
    """The same step as one static-shape graph for the objective (fullgraph: a break is an error)
    and one for the update; on CUDA both replay as CUDA graphs (TrainConfig.cuda_graphs)."""

    stack = "blocks"
    capturable = True   # AdamW's step count on the device

    def __init__(self, pm, data, config: TrainConfig, pressure, device, backend: str, dist=None):
        super().__init__(pm, data, config, pressure, device, backend, dist)
        self._step = torch.zeros((), dtype=torch.int64, device=device)  # the graphs' step number
        self._valid: dict[int, torch.Tensor] = {}                       # real examples -> their weights
        self.set_lr(0)
        self._static_for_graphs()
        graphs = config.cuda_graphs and device.type == "cuda"
        self._objective = compiled(self.objective, graphs)
        self._update = compiled(self.update, graphs)

    def __call__(self, idx, step):
        if self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the last replay's outputs are copies by now (_kept)
        return super().__call__(idx, step)

    def _inputs(self, idx, step):
        """One graph for every step: the step as a device tensor, every batch of one size (an epoch's
        smaller last batch filled up with repeats of its first example, weighted 0)."""
        self._step.fill_(step)
        size = min(self.config.batch_size, len(self.data))
        n = len(idx)
        if n not in self._valid:
            self._valid[n] = (torch.arange(size, device=self.device) < n).float()
        if n < size:
            idx = torch.cat([idx, idx[:1].expand(size - n)])
        return self.data.batch(idx), self._step, self._valid[n]

    def _kept(self, t):
        """A copy: a CUDA graph's outputs live in its own memory, which its next replay rewrites."""
        return t.detach().clone()

    def _optimizer_step(self) -> None:
        adamw_step(self.optimizer)

    def set_lr(self, step: int) -> None:
        """Tensors filled in place: a float would be a constant of the graph, recompiled at every change."""
        factor = lr_factor(self.config, step)
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(base * factor)
            else:
                group["lr"] = torch.tensor(base * factor, device=self.device)

    def load_optimizer(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)
        self._static_for_graphs()

    def _static_for_graphs(self) -> None:
        """On CUDA, the tensors the graphs read and update in place between steps (the step number,
        the learning rates, the optimiser's state) at fixed addresses: a CUDA graph then uses them
        where they are instead of copying them in, and may update them."""
        if self.device.type != "cuda":
            return
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        state = [v for s in self.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
        for t in (self._step, *lrs, *state):
            torch._dynamo.mark_static_address(t)


class FiniteGuard:
    """The steps' finite flags, read back only at a check (reading one waits for the device)."""

    def __init__(self):
        self._unchecked: list = []  # (step, finite, loss, gradient norm)

    def record(self, step: int, finite: torch.Tensor, loss: torch.Tensor, norm: torch.Tensor) -> None:
        self._unchecked.append((step, finite, loss, norm))

    def check(self, last_checkpoint: str | None) -> None:
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
        kept = (f"; the last good checkpoint is {last_checkpoint}" if last_checkpoint else
                "; no checkpoint was written yet (pass checkpoint_dir to keep one)")
        raise NonFiniteLoss(f"{what} at step {step}; its update was skipped, as is every non-finite step's{kept}. "
                            "Lower the learning rates, or check the model's dtype (fp32 is safest).")


def _mean(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    return values.mean() if valid is None else (values * valid).sum() / valid.sum()


def with_state(optimizer: torch.optim.AdamW) -> torch.optim.AdamW:
    """AdamW with its state made now, as its first step would make it (zero moments, step 0), so
    that a first step that is not finite is undone like any other (Step.update)."""
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


__all__ = ["CompiledStep", "FiniteGuard", "NonFiniteLoss", "Step", "lr_factor", "sparsity_pressure", "with_state"]
