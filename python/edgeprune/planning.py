"""`edgeprune.plan(...)`: the peak memory per GPU of a pruning run, estimated before it runs.

    cfg = transformers.LlamaConfig(num_hidden_layers=40, num_attention_heads=40, hidden_size=5120,
                                   intermediate_size=13824, vocab_size=32016)
    print(edgeprune.plan(cfg, batch_size=1, seq_len=512, dtype=torch.bfloat16, checkpointing=True,
                         gpu_memory_gib=141))

The estimate follows what a training step of edgeprune.train keeps alive at its peak (the start of
the backward of the last decoder layer, or of the layer being recomputed under checkpointing):
  weights            the frozen model (FSDP: this rank's shard, the gathered root and two gathered
                     layers, the running one and the prefetched one; CPU offload: no shard on the GPU)
  delta stack        W writers x (B, S, D) in the model dtype, written once (models/delta_stack.py)
  delta gradient     the same shape again, allocated by the first backward
  ablation records   the corrupted run's writer outputs: cached for the dataset if within cache_bytes,
                     plus the batch's copy
  saved activations  what autograd keeps per layer (counted from the code path: the readers' norm
                     inputs dominate, in fp32 for RMSNorm); under checkpointing only the layer being
                     recomputed
  layer working set  one layer's backward temporaries, in units of its attention readers' inputs
                     (calibrated on the CPU against a storage-tracking measurement, tests/test_plan.py)
  gates, optimiser   fp32 gates, their gradients and AdamW's two moments
  loss               logits and log-probabilities at the loss positions, the final read's gathered rows
Parameters are counted on the meta device, so a 13B config costs nothing to plan. The figure is what
torch.cuda.max_memory_allocated reports; a card also needs its CUDA context and allocator slack
(`reserve_gib`, default 2 GiB plus 5%).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from .config import CACHE_BYTES, RECOMPUTE_READERS
from .errors import UserError
from .graph import num_edges
from .loading import load_config
from .models import ablation_kind, record_bytes
from .models.base import LayerStructure
from .models.families import adapter_class

GIB = 2 ** 30
# (B, S, intermediate) tensors an MLP's autograd saves, by the kind its family declares (frozen
# Linears save none): gated, its gate and up projections and their product's activation; GPT-2's
# composite GELU-tanh, four; exact GELU (or ReLU), its input
MLP_SAVED = {"gated": 3, "gelu_tanh": 4, "gelu": 1, "relu": 1}

# One layer's working set beyond what autograd saves, in units of its attention readers' norm
# inputs (R x B x S x D, fp32 for RMSNorm, which upcasts; the model dtype for LayerNorm), keyed by
# (family, half precision, checkpointing, attention readers recomputed). Measured on the CPU with a
# storage-tracking dispatch mode (tests/test_plan.py) on configs shaped like the targets (Llama:
# H = K, MLP 2.7 D, S = 64; GPT-2: MLP 4 D). Checkpointing keeps the recomputed layer's outputs
# live beside its backward; recomputed readers exist again during their layer's backward.
BACKWARD_WORKING_SET = {("llama", False, False, False): 2.1, ("llama", False, True, False): 3.2,
                        ("llama", True, False, False): 1.6, ("llama", True, True, False): 1.95,
                        ("gpt2", False, False, False): 1.8, ("gpt2", False, True, False): 3.0,
                        ("gpt2", True, False, False): 1.8, ("gpt2", True, True, False): 3.0,
                        ("llama", False, False, True): 2.65, ("llama", False, True, True): 3.05,
                        ("llama", True, False, True): 2.35, ("llama", True, True, True): 2.5,
                        ("gpt2", False, False, True): 2.0, ("gpt2", False, True, True): 2.6,
                        ("gpt2", True, False, True): 2.0, ("gpt2", True, True, True): 2.6}
FORWARD_WORKING_SET = {("llama", False, False, False): 0.6, ("llama", False, True, False): 1.8,
                       ("llama", True, False, False): 1.1, ("llama", True, True, False): 1.25,
                       ("gpt2", False, False, False): 0.7, ("gpt2", False, True, False): 2.2,
                       ("gpt2", True, False, False): 0.7, ("gpt2", True, True, False): 2.2,
                       ("llama", False, False, True): 1.4, ("llama", False, True, True): 1.7,
                       ("llama", True, False, True): 1.0, ("llama", True, True, True): 1.15,
                       ("gpt2", False, False, True): 0.7, ("gpt2", False, True, True): 1.5,
                       ("gpt2", True, False, True): 0.7, ("gpt2", True, True, True): 1.5}

# GPT-NeoX (LayerNorm and an MLP of 4 D, like GPT-2; parallel residual; Pythia's shape, S = 64): GPT-2's
# values fit when the readers are kept; with them recomputed its working set measured larger.
for _table in (BACKWARD_WORKING_SET, FORWARD_WORKING_SET):
    _table |= {("gpt_neox", *k[1:]): v for k, v in _table.items() if k[0] == "gpt2"}
BACKWARD_WORKING_SET |= {("gpt_neox", half, checkpointing, True): 3.5 if checkpointing else 2.9
                         for half in (False, True) for checkpointing in (False, True)}
# Gemma 2 and 3 and OLMo 2 (RMSNorm, norms on the branch outputs): their backward working sets,
# fitted by the same measurement on two Gemma shapes (Gemma-2-2B's and Gemma-3-1B's proportions, soft-cap
# off so that the CPU runs SDPA as the GPU runs FlexAttention; within 4.3% of both in every mode) and
# one OLMo 2 shape (OLMo-2-1B's). Their forward peaks stay below the backward ones: Llama's forward values.
BACKWARD_WORKING_SET |= {
    ("gemma", False, False, False): 0.8, ("gemma", False, False, True): 3.1,
    ("gemma", False, True, False): 2.55, ("gemma", False, True, True): 3.0,
    ("gemma", True, False, False): 0.75, ("gemma", True, False, True): 2.55,
    ("gemma", True, True, False): 1.6, ("gemma", True, True, True): 2.45,
    ("olmo2", False, False, False): 2.2, ("olmo2", False, False, True): 2.65,
    ("olmo2", False, True, False): 2.6, ("olmo2", False, True, True): 2.65,
    ("olmo2", True, False, False): 1.05, ("olmo2", True, False, True): 1.3,
    ("olmo2", True, True, False): 1.25, ("olmo2", True, True, True): 1.3}
FORWARD_WORKING_SET |= {(family, *k[1:]): v for k, v in FORWARD_WORKING_SET.items() if k[0] == "llama"
                        for family in ("gemma", "olmo2")}
CALIBRATED = sorted({key[0] for key in BACKWARD_WORKING_SET})


@dataclass
class ModelShape:
    family: str              # the adapter's family: the key of the working-set calibration
    layers: int
    heads: int
    kv_heads: int
    d_model: int
    head_dim: int
    intermediate: int
    vocab: int
    params: int              # distinct parameters (tied embeddings once)
    layer_params: int        # one decoder layer
    name: str = ""
    parallel: bool = False   # parallel residual (GPT-NeoX): a layer's MLP does not read its own heads
    embedding_outputs: int = 1           # GPT-2: token and position embeddings
    default_embedding_nodes: int = 0
    structure: LayerStructure = LayerStructure()   # the norms, MLP and positions the family declares

    @property
    def root_params(self) -> int:
        return self.params - self.layers * self.layer_params


@dataclass
class Plan:
    """Peak memory per GPU, by part. str() is a table; `fits` says whether it fits the card."""
    shape: ModelShape
    batch_size: int
    seq_len: int
    dtype: torch.dtype
    n_gpus: int
    checkpointing: bool
    cpu_offload: bool
    parts: dict[str, int]                          # bytes at the peak, per GPU
    forward_peak_bytes: int
    gpu_memory_gib: float | None = None
    reserve_gib: float = 2.0
    reserve_fraction: float = 0.05
    notes: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        return max(sum(self.parts.values()), self.forward_peak_bytes)

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    @property
    def needed_gib(self) -> float:
        """Peak plus the CUDA context and allocator slack: what a card must have."""
        return self.peak_gib * (1 + self.reserve_fraction) + self.reserve_gib

    @property
    def fits(self) -> bool | None:
        return None if self.gpu_memory_gib is None else self.needed_gib <= self.gpu_memory_gib

    def verdict(self, gpu_memory_gib: float | None = None) -> str:
        card = gpu_memory_gib if gpu_memory_gib is not None else self.gpu_memory_gib
        if card is None:
            return f"needs about {self.needed_gib:.1f} GiB per GPU"
        ok = self.needed_gib <= card
        return (f"{'fits' if ok else 'does NOT fit'} a {card:g} GiB card "
                f"(needs about {self.needed_gib:.1f} GiB per GPU)")

    def __str__(self) -> str:
        s = self.shape
        dt = str(self.dtype).replace("torch.", "")
        head = (f"edgeprune plan: {s.name or s.family} ({s.layers} layers, {s.heads} heads"
                f"{'' if s.kv_heads == s.heads else f' / {s.kv_heads} KV'}, width {s.d_model}, "
                f"{s.params / 1e9:.2f}B parameters), {dt}, batch {self.batch_size} x seq {self.seq_len}, "
                f"{self.n_gpus} GPU{'s' if self.n_gpus > 1 else ''}"
                f"{', checkpointing' if self.checkpointing else ''}{', CPU offload' if self.cpu_offload else ''}")
        width = max(len(k) for k in self.parts) + 2
        lines = [head, f"  {'part':<{width}}{'GiB':>9}"]
        for k, v in self.parts.items():
            lines.append(f"  {k:<{width}}{v / GIB:>9.2f}")
        lines.append(f"  {'peak (allocated)':<{width}}{self.peak_gib:>9.2f}")
        lines.append(f"  {'+ context, slack':<{width}}{self.needed_gib - self.peak_gib:>9.2f}")
        lines.append(f"  -> {self.verdict()}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------- model shapes

def _config_of(obj):
    from transformers import AutoConfig, PretrainedConfig
    if isinstance(obj, PretrainedConfig):
        return obj
    if isinstance(obj, dict):
        d = dict(obj)
        if "model_type" not in d:
            raise UserError("a config dict needs its 'model_type' (e.g. 'llama' or 'gpt2'), as in a hub config.json")
        return AutoConfig.for_model(d.pop("model_type"), **d)
    if isinstance(obj, str):
        return load_config(obj)
    inner = getattr(obj, "model", obj)        # a PrunableModel holds the HF model
    cfg = getattr(inner, "config", None)
    if cfg is None:
        raise TypeError(f"plan() takes a Hugging Face config, config dict, model or prunable model; got "
                        f"{type(obj).__name__}")
    return cfg


def _count(module) -> int:
    seen, total = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def model_shape(model_or_config) -> ModelShape:
    """The sizes a plan needs; parameters counted on the meta device (nothing is allocated)."""
    cfg = _config_of(model_or_config)
    adapter_cls = adapter_class(cfg)
    if adapter_cls.family not in CALIBRATED:
        raise UserError(f"plan() has no memory calibration for {adapter_cls.family} models (calibrated: "
                        f"{', '.join(CALIBRATED)})")
    model = model_or_config if isinstance(model_or_config, torch.nn.Module) else None
    model = getattr(model, "model", model) if model is not None and hasattr(model, "adapter") else model
    if model is None:
        from transformers import AutoModelForCausalLM
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
    a = adapter_cls(model)
    layers = a.decoder_layers()
    return ModelShape(a.family, a.num_layers, a.num_heads, a.num_kv_heads, a.d_model, a.head_dim,
                      a.intermediate_size, cfg.vocab_size, _count(model), _count(layers[0]),
                      getattr(cfg, "_name_or_path", "") or "", parallel=a.parallel_residual,
                      embedding_outputs=a.embedding_outputs, default_embedding_nodes=a.default_embedding_nodes,
                      structure=a.structure)


# ---------------------------------------------------------------------------------- the estimate

def layer_saved_bytes(shape: ModelShape, batch: int, seq: int, dtype: torch.dtype,
                      readers_saved: bool = True, embedding_nodes: int | None = None,
                      attention_writers: str = "heads", kv_edges: str = "group") -> int:
    """What autograd saves for one gated decoder layer (weights frozen: only activations).

    readers_saved: False when the forward recomputes the attention readers' mixtures, norms and
    rotary in backward (gated_forward's recompute_readers); the recomputation then keeps its
    inputs: the readers' gates and, with no embedding nodes, their base (a new (B, S, D) sum; with
    embedding nodes it is a view of the cached record). Counted from the code path, and checked
    against SavedTensors on small models (tests/test_plan.py). kv_edges="query": key and value
    readers per query head, which keep what a model with H key-value heads keeps.
    """
    b = torch.finfo(dtype).bits // 8
    s = _per_query_head(shape) if kv_edges == "query" else shape
    st = s.structure
    bs = batch * seq
    n = bs * s.d_model
    readers = s.heads + 2 * s.kv_heads
    att = (2 * s.heads + 2 * s.kv_heads) * bs * s.head_dim * b + s.heads * bs * 4      # q, k, v, out; lse
    # one norm's saved input of width D: RMSNorm upcasts it to fp32 and keeps its rsqrt; LayerNorm
    # keeps it in the model dtype, with its mean and rstd
    per_norm = {"rms": n * 4 + bs * 4, "layer": n * b + 2 * bs * 4, None: 0}[st.norm]
    attn_reads = readers * per_norm if st.reader_norms else 0
    if st.qk_norm == "head":                                                           # per head, in fp32
        attn_reads += (s.heads + s.kv_heads) * bs * (s.head_dim + 1) * 4
    elif st.qk_norm == "projection":                                                   # over all heads, in fp32
        attn_reads += (s.heads + s.kv_heads) * bs * s.head_dim * 4 + 2 * bs * 4
    if st.rotary:
        attn_reads += 2 * bs * s.head_dim * b                                          # cos, sin
    if st.output_norms:
        # the norm on the heads' sum: that sum in fp32, the contexts' fp32 copy (half precision
        # only), the rms; the output projection with the norm's gain folded in
        ctx_copy = bs * s.heads * s.head_dim * 4 if b < 4 else 0
        att += n * 4 + ctx_copy + bs * 4 + s.heads * s.head_dim * s.d_model * b
    mlp = MLP_SAVED[st.mlp] * bs * s.intermediate * b
    mlp += (int(st.mlp_input_norm) + int(st.output_norms)) * per_norm                 # its input and output norms
    if embedding_nodes is None:
        embedding_nodes = s.default_embedding_nodes
    if readers_saved:
        return attn_reads + att + mlp
    per_layer = (s.heads if attention_writers == "heads" else 1) + 1
    mean_prefix = embedding_nodes + (s.layers - 1) * per_layer / 2
    kept = int(readers * mean_prefix * 4) + (n * b if embedding_nodes == 0 else 0)
    return kept + att + mlp


def _per_query_head(shape: ModelShape) -> ModelShape:
    """The shape as the graph with key and value readers per query head uses memory: H KV heads."""
    return replace(shape, kv_heads=shape.heads)


def _reader_unit(shape: ModelShape, batch: int, seq: int, dtype: torch.dtype) -> int:
    """Bytes of one layer's attention-reader norm inputs: the unit of the working set."""
    b = 4 if shape.structure.norm == "rms" else torch.finfo(dtype).bits // 8
    return (shape.heads + 2 * shape.kv_heads) * batch * seq * shape.d_model * b


def plan(model_or_config, batch_size: int, seq_len: int, dtype: torch.dtype = torch.float32, n_gpus: int = 1,
         checkpointing: bool = False, gpu_memory_gib: float | None = None, *, embedding_nodes: int | None = None,
         positions: int = 1, examples: int | None = None, ablation: str = "corrupted", cache_bytes: int = CACHE_BYTES,
         cpu_offload: bool = False, recompute_readers: bool = RECOMPUTE_READERS, reserve_gib: float = 2.0,
         attention_writers: str = "heads", kv_edges: str = "group") -> Plan:
    """Estimate the peak GPU memory of edgeprune.train on this model and say whether it fits.

    Args:
        model_or_config: a Hugging Face config, a config dict with its model_type, a model (HF or
            prunable) or a hub id / local folder (its config.json only).
        batch_size, seq_len: the global batch and the padded length; with n_gpus > 1 each GPU runs
            its slice of the batch (FSDP).
        dtype: the model's dtype (the compute dtype; gates are always fp32).
        positions: loss positions per example (1 for next-token tasks).
        examples: training examples; their targets and ablation records are cached when they fit
            cache_bytes (as the trainer does). None: the dataset is one batch.
        gpu_memory_gib: the card, for the verdict (`Plan.fits`).
        recompute_readers: whether the forward recomputes the attention readers in backward
            (TrainConfig.recompute_readers, whose default this is).
        attention_writers: "heads", or "layer" for the graph whose layers' attention is one writer.
        kv_edges: "group", or "query" for key and value readers per query head (grouped-query
            models: more readers and edges, attention with H key-value heads).
    """
    shape = model_shape(model_or_config)
    s = _per_query_head(shape) if kv_edges == "query" else shape
    b = torch.finfo(dtype).bits // 8
    local = math.ceil(batch_size / n_gpus)
    n = local * seq_len * s.d_model
    if embedding_nodes is None:
        embedding_nodes = s.default_embedding_nodes
    writers = embedding_nodes + s.layers * ((s.heads if attention_writers == "heads" else 1) + 1)
    edges = num_edges(s.layers, s.heads, embedding_nodes, s.kv_heads, s.parallel, attention_writers)
    notes = []

    parts: dict[str, int] = {}
    if n_gpus == 1 and not cpu_offload:
        parts["weights"] = s.params * b
    else:
        shard = 0 if cpu_offload else math.ceil(s.params / n_gpus) * b
        parts["weights"] = shard + s.root_params * b + min(2, s.layers) * s.layer_params * b
        notes.append("FSDP: weights are this rank's shard + the gathered root + 2 gathered layers")
    parts["delta stack"] = writers * n * b
    parts["delta gradient"] = writers * n * b

    examples = batch_size if examples is None else examples
    per_example = record_bytes(seq_len, s.embedding_outputs, s.layers, s.heads, s.head_dim, s.d_model, dtype)
    records = ablation_kind(ablation).planned_bytes(per_example, examples, local, cache_bytes)
    if records is not None:
        parts["ablation records"] = records
    targets = examples * positions * s.vocab * 4
    parts["targets"] = targets if targets <= cache_bytes else local * positions * s.vocab * 4

    saved = layer_saved_bytes(s, local, seq_len, dtype, not recompute_readers, embedding_nodes, attention_writers)
    parts["saved activations"] = saved if checkpointing else s.layers * saved
    unit = _reader_unit(s, local, seq_len, dtype)
    key = (s.family, b < 4, checkpointing, bool(recompute_readers))
    parts["layer working set"] = int(BACKWARD_WORKING_SET[key] * unit)
    if recompute_readers:  # the readers' rerun keeps its q, k, v and their incoming gradients alive
        parts["layer working set"] += 2 * local * seq_len * (s.heads + 2 * s.kv_heads) * s.head_dim * b
    parts["gates, optimiser"] = (edges + writers) * 4 * 4 + 2 * edges * 4
    # logits, log-probabilities and their gradients; the final read's gathered rows and their gradient
    parts["loss"] = local * positions * (s.vocab * (b + 3 * 4) + 2 * writers * s.d_model * b)

    # the forward's peak: no stack gradient yet; under checkpointing no layer's activations are kept
    skip = ("delta gradient", "layer working set") + (("saved activations",) if checkpointing else ())
    forward = sum(v for k, v in parts.items() if k not in skip)
    forward += int(FORWARD_WORKING_SET[key] * unit)
    return Plan(shape, batch_size, seq_len, dtype, n_gpus, checkpointing, cpu_offload, parts, forward,
                gpu_memory_gib, reserve_gib, notes=notes)


__all__ = ["ModelShape", "Plan", "layer_saved_bytes", "model_shape", "plan"]
