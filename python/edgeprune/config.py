"""`TrainConfig`: every setting of a pruning run, with its default, in one place.

The defaults are the paper's GPT-2 runs (docs/method.md 4.2). `edgeprune.train(..., **overrides)`
takes any field by name, and the command line's training options are generated from these fields
(cli.add_config_options), so a default is written once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from .errors import UserError
from .models.ablations import ABLATIONS, describe
from .models.prunable import RECOMPUTE_READERS

MAX_TARGET = 1.4          # the largest sparsity target: the paper's "as sparse as possible" targets are 1.01-1.4
# train_budgets' defaults (prune --budgets): the recipe measured most faithful on MIB's curve, a pruning path
# warm-started from EAP-IG-inputs with half the edges open, on the objective matched to the logit difference
CURVE = {"path": True, "objective": "logit_diff", "init_sparsity": 0.5}
CURVE_INIT = "eap-ig-inputs"
CACHE_BYTES = 4 << 30     # targets and ablation records are cached per example up to this size


def kv_edges_for(kv_edges: str | None, sweep: bool = False) -> str:
    """TrainConfig.kv_edges resolved: as given, else per query head ("query", MIB's graph) for a
    budget sweep, whose budgets are fractions of MIB's edges, and per KV group ("group") otherwise."""
    return kv_edges or ("query" if sweep else "group")


def check_target(name: str, value) -> None:
    """A sparsity target is a fraction of edges removed, in [0, 1]; above 1, up to MAX_TARGET, it means
    "as sparse as possible" (it can never be met, so the pressure keeps growing), as in the paper."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= MAX_TARGET):
        raise UserError(f"{name}={value} is outside [0, {MAX_TARGET:g}]: a target sparsity is the fraction of edges "
                        f"removed, in [0, 1]; targets above 1, up to the paper's {MAX_TARGET:g}, mean 'as sparse as "
                        "possible'")


def schedule_warnings(config: "TrainConfig") -> list[str]:
    """What a run of these settings will not do: reach its target (the ramp outlasts the run) or
    finish its learning-rate warm-up. Said before the first step, with the settings that would."""
    out = []
    target = config.edge_sparsity
    if config.steps < config.ramp_steps and target > config.ramp_from:
        last = config.ramp_from + (target - config.ramp_from) * config.steps / config.ramp_steps
        out.append(f"this run never reaches its target {target:g}: the target ramps up over ramp_steps="
                   f"{config.ramp_steps} and the run stops at steps={config.steps}, where the target is {last:.3g}. "
                   f"Pass ramp_steps <= {config.steps} (--ramp-steps; the paper ramps over 2500 of 3000 steps) or "
                   f"steps >= {config.ramp_steps} (--steps)")
    if config.steps < config.warmup_steps:
        out.append(f"the learning rate never finishes its warm-up: warmup_steps={config.warmup_steps} and steps="
                   f"{config.steps}. Pass warmup_steps < {config.steps} (--warmup-steps)")
    return out


def option(default, help: str, *, cli: bool = True, choices=None, flag: str | None = None):
    """A TrainConfig field with its help text; cli=False keeps it off the command line."""
    return field(default=default, metadata={"help": help, "cli": cli, "choices": choices, "flag": flag})


@dataclass
class TrainConfig:
    edge_sparsity: float = field(metadata={"help": "edge-sparsity target (fraction of edges removed; above 1: as "
                                           "sparse as possible)", "cli": False})
    node_sparsity: float | None = option(None, "node-sparsity target (default: no node term, the paper's "
                                         "--disable_node_loss)")
    steps: int = option(3000, "optimisation steps")
    batch_size: int = option(32, "examples per step")
    lr: float = option(0.8, "edge-gate learning rate")
    node_lr: float | None = option(None, "node-gate learning rate (default: --lr)")
    lambda_lr: float = option(0.8, "the Lagrange multipliers' learning rate (gradient ascent)")
    warmup_steps: int = option(200, "linear learning-rate warm-up steps (then linear decay to 0)")
    ramp_steps: int = option(2500, "steps over which the sparsity target rises linearly from 0 to its final value "
                             "(a run shorter than this never reaches its target)")
    ramp_from: float = option(0.0, "the sparsity target at step 0 (a budget sweep's stage starts from the last "
                              "stage's target)", cli=False)
    weight_decay: float = option(0.01, "AdamW weight decay on the gates (and on the multipliers unless "
                                 "--lambda-weight-decay says otherwise)")
    lambda_weight_decay: float | None = option(None, "AdamW weight decay on the Lagrange multipliers (default: "
                                               "--weight-decay, the paper's). Decay holds a multiplier below about "
                                               "1/decay, which can stop a run short of its target; 0 lifts that cap")
    max_grad_norm: float = option(1.0, "global gradient-norm clip")
    ablation: str = option("corrupted", f"what a pruned edge carries: {describe()}", choices=ABLATIONS)
    ablation_lr: float = option(2e-3, "learning rate of optimal ablation's constants (Li and Janson's; no weight "
                                "decay, no sparsity penalty)")
    optimal_per_position: bool = option(False, "optimal ablation: one constant per component and position (Li and "
                                        "Janson's variant) instead of one per component")
    objective: str = option("kl", "what the circuit fits: KL(full || circuit) (the paper's), or the squared gap "
                            "between its logit difference and the full model's", choices=("kl", "logit_diff"))
    init_sparsity: float = option(0.9, "warm start (--init): the fraction of edges starting closed")
    init_temperature: float = option(0.2, "warm start (--init): log alpha = -1.6 + d / temperature, d in [-1, 1] an "
                                     "edge's rank distance from the cut")
    init_ranking: str = option("score", "warm start (--init): rank edges by |score|, or by connected cuts of it (the "
                               "edges starting open lie on whole paths from the input to the logits; "
                               "Circuit.connected)", choices=("score", "connected"))
    embedding_nodes: int | None = option(None, "embedding writers: 2 (token, position), 1 or 0 (clean, "
                                         "unmasked); default per family", choices=(0, 1, 2))
    attention_writers: str = option("heads", "a layer's attention as one writer per head, or one per layer (a "
                                    "coarser graph; docs/design.md)", choices=("heads", "layer"))
    kv_edges: str | None = option(None, "grouped-query models' key and value edges: one per KV group ('group') or one "
                                  "per query head, MIB's graph ('query'); default: 'query' for budget sweeps "
                                  "(train_budgets, prune --budgets), 'group' otherwise. The same graph without "
                                  "grouping", choices=("group", "query"))
    path: bool = option(False, "a pruning path: the target falls geometrically in edges kept from the start to "
                        "edge_sparsity over ramp_steps, a steered penalty keeps the circuit on it, and the step at "
                        "which each edge leaves ranks the edges: every prefix a circuit trained at that size "
                        "(edgeprune.path; docs/method.md 11.5)")
    steer: bool = option(False, "hold the run on its target with the path's steered penalty on the expected edges "
                         "kept instead of the paper's Lagrangian, whose multipliers grow too slowly to reach tight "
                         "targets in short runs (docs/method.md 11.5; no node target)")
    path_rate: float = option(0.05, "a path or steered run's penalty weight is multiplied by e^rate after each step with more "
                              "edges in than the target, by e^-rate after each with fewer")
    seed: int = option(0, "seed of the gates' initialisation, the data order and the gate noise")
    eval_every: int = option(64, "steps between evaluations on the validation split (0: never)")
    log_every: int = option(8, "steps between log lines in metrics.jsonl", cli=False)
    checkpoint_every: int = option(256, "steps between checkpoints (with a checkpoint folder)", cli=False)
    pad_to: int | None = option(None, "pad every batch to this length (default: the longest example; attention "
                                "is causal, so the result is the same)", cli=False)
    cache_bytes: int = option(CACHE_BYTES, "budget for cached targets and ablation records", cli=False)
    backend: str | None = option(None, "kernel backend (default: EDGEPRUNE_BACKEND, else the device's)",
                                 choices=("torch", "cpp", "cuda", "triton"))
    recompute_readers: bool = option(RECOMPUTE_READERS, "recompute the attention readers' mixtures in backward (saves memory)")
    checkpointing: bool = option(False, "recompute each decoder layer in backward (non-reentrant)")
    cpu_offload: bool = option(False, "FSDP under torchrun: keep the weight shards in CPU memory")
    compile: str = option("auto", "compile the step with torch.compile (CUDA graphs on a GPU): on, off, or auto (on "
                          "for CUDA runs of at least 500 steps without FSDP or layer checkpointing)",
                          choices=("auto", "on", "off"))
    cuda_graphs: bool = option(True, "a compiled CUDA step replays as CUDA graphs (off: the compiled kernels "
                               "launched one by one, for timing them apart)", cli=False)
    threads: int | None = option(None, "CPU threads for the run (default: 1 for small per-step work, else "
                                 "torch's); fixed for the run and recorded with it")

    def __post_init__(self):
        self.validate()

    def validate(self):
        for name in ("edge_sparsity", "node_sparsity"):
            value = getattr(self, name)
            if value is not None:
                check_target(name, value)
        if self.steps < 1 or self.batch_size < 1:
            raise UserError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")
        if (self.path or self.steer) and self.node_sparsity is not None:
            raise UserError("a path or steered run (path=True, steer=True) steers edges only and has no node target: "
                            "leave node_sparsity unset")
        if (self.path or self.steer) and not self.path_rate > 0:
            raise UserError(f"path_rate is the steered weight's step in log space and must be above 0, got {self.path_rate}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"threads must be at least 1, got {self.threads}")
        choices = {f.name: f.metadata.get("choices") for f in fields(self)}
        if isinstance(self.compile, bool):  # compile=True / False from Python
            self.compile = "on" if self.compile else "off"
        for name in ("ablation", "embedding_nodes", "backend", "attention_writers", "kv_edges", "objective", "compile",
                     "init_ranking"):
            value = getattr(self, name)
            if value is not None and choices[name] and value not in choices[name]:
                raise UserError(f"{name}={value!r} is not one of {choices[name]}")
        return self

    @classmethod
    def with_overrides(cls, config: "TrainConfig | None", overrides: dict) -> "TrainConfig":
        """`config` (or the defaults) with the given fields replaced; unknown names are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown training option(s) {', '.join(unknown)}; TrainConfig has {', '.join(sorted(names))}")
        if config is None:
            if "edge_sparsity" not in overrides:
                raise TypeError("give the edge-sparsity target: edge_sparsity=0.98 (or a TrainConfig)")
            return cls(**overrides).validate()
        values = {f.name: getattr(config, f.name) for f in fields(cls)} | overrides
        return cls(**values).validate()
