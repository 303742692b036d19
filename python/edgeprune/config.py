"""`TrainConfig`: every setting of a pruning run, with its default, in one place.

The defaults are the paper's GPT-2 runs (docs/method.md 4.2). `edgeprune.train(..., **overrides)`
takes any field by name, and the command line's training options are generated from these fields
(cli.add_config_options), so a default is written once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from .errors import UserError

CACHE_BYTES = 4 << 30     # targets and ablation records are cached per example up to this size
RECOMPUTE_READERS = True  # the attention readers' mixtures are recomputed in backward (edgeprune.planning reads it)


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
    ramp_steps: int = option(2500, "steps over which the sparsity target rises linearly from --ramp-from")
    ramp_from: float = option(0.0, "the sparsity target at step 0 (a budget sweep's stage starts from the last "
                              "stage's target)", cli=False)
    weight_decay: float = option(0.01, "AdamW weight decay on every group, multipliers included")
    max_grad_norm: float = option(1.0, "global gradient-norm clip")
    ablation: str = option("corrupted", "what a pruned edge carries: the writer's output on the corrupted input, "
                           "its mean, zero, or a constant learned with the gates from the mean (optimal)",
                           choices=("corrupted", "zero", "mean", "optimal"))
    ablation_lr: float = option(0.01, "learning rate of optimal ablation's constants (no weight decay, no sparsity "
                                "penalty)")
    objective: str = option("kl", "what the circuit fits: KL(full || circuit) (the paper's), or the squared gap "
                            "between its logit difference and the full model's", choices=("kl", "logit_diff"))
    init_sparsity: float = option(0.9, "warm start (--init): the fraction of edges starting closed")
    init_temperature: float = option(0.2, "warm start (--init): log alpha = -1.6 + d / temperature, d in [-1, 1] an "
                                     "edge's rank distance from the cut")
    embedding_nodes: int | None = option(None, "embedding writers: 2 (token, position), 1 or 0 (clean, "
                                         "unmasked); default per family", choices=(0, 1, 2))
    attention_writers: str = option("heads", "a layer's attention as one writer per head, or one per layer (a "
                                    "coarser graph; docs/design.md)", choices=("heads", "layer"))
    kv_edges: str | None = option(None, "grouped-query models' key and value edges: one per KV group ('group') or one "
                                  "per query head, MIB's graph ('query'); default: 'query' for budget sweeps "
                                  "(train_budgets, prune --budgets), 'group' otherwise. The same graph without "
                                  "grouping", choices=("group", "query"))
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
    threads: int | None = option(None, "CPU threads for the run (default: 1 for small per-step work, else "
                                 "torch's); fixed for the run and recorded with it")

    def validate(self):
        for name in ("edge_sparsity", "node_sparsity"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0 <= value < 2):
                raise UserError(f"{name}={value} is outside [0, 2): a target sparsity is a fraction of edges "
                                 "removed (values above 1 mean 'as sparse as possible', as in the paper)")
        if self.steps < 1 or self.batch_size < 1:
            raise UserError(f"steps and batch_size must be positive, got {self.steps} and {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"threads must be at least 1, got {self.threads}")
        choices = {f.name: f.metadata.get("choices") for f in fields(self)}
        if isinstance(self.compile, bool):  # compile=True / False from Python
            self.compile = "on" if self.compile else "off"
        for name in ("ablation", "embedding_nodes", "backend", "attention_writers", "kv_edges", "objective", "compile"):
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
