"""`PrunableModel`: a stock model with edge and node gates over its computation graph."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..gates import Gates
from ..graph import Graph
from .ablations import Ablation, ablation_kind
from .families import adapter_for
from .forward import DIRECT, RECOMPUTE_READERS, LayerRunner, gated_forward, record_writers
from .optimal_ablation import AblationConstants
from .records import WriterRecord


class PrunableModel(nn.Module):
    """A frozen model, its edge graph and learnable gates; forward runs the gated (pruned) model.

        edges, nodes = pm.gates.deterministic()          # or pm.gates.sample(seed, step), pm.circuit_gates(edges)
        record = pm.ablation_record(corrupted_ids, attention_mask)
        logits = pm(input_ids, attention_mask, edges=edges, nodes=nodes, record=record)

    `layer_runner` says how the layers run (directly, recomputed in backward, or sharded with FSDP);
    change it with set_layer_runner (edgeprune.recomputation, edgeprune.distributed). `kind` is the
    ablation (models/ablations.py).
    """

    def __init__(self, model: nn.Module, embedding_nodes: int | None = None, ablation: str = "corrupted",
                 backend: str | None = None, attention_writers: str = "heads", kv_edges: str = "group"):
        super().__init__()
        adapter = adapter_for(model)
        if embedding_nodes is None:
            embedding_nodes = adapter.default_embedding_nodes
        if embedding_nodes not in adapter.embedding_nodes_allowed:
            raise UserError(f"embedding_nodes={embedding_nodes} is not valid for {adapter.family} models; "
                            f"choose one of {adapter.embedding_nodes_allowed} (2 = separate token and position "
                            "embeddings, GPT-2 only; 1 = one 'embeds' node; 0 = clean embeddings, unmasked).")
        kind = ablation_kind(ablation)
        model.requires_grad_(False)
        model.eval()
        self.model = model
        self.adapter = adapter
        self.kind: Ablation = kind
        self.backend = backend
        self.graph = Graph(adapter.num_layers, adapter.num_heads, adapter.num_kv_heads, embedding_nodes,
                           adapter.parallel_residual, attention_writers, kv_edges)
        self.gates = Gates(self.graph, eps=adapter.gate_eps).to(adapter.device)
        self.mean_record: WriterRecord | None = None
        self.constants: AblationConstants | None = None   # optimal ablation's learned values
        self.layer_runner: LayerRunner = DIRECT

    def set_layer_runner(self, runner: LayerRunner) -> None:
        self.layer_runner = runner

    @property
    def ablation(self) -> str:
        """The ablation kind's name ("corrupted", "zero", "mean" or "optimal")."""
        return self.kind.name

    # ------------------------------------------------------------------ ablation values
    def record(self, input_ids, attention_mask=None) -> WriterRecord:
        """The unpruned model's writer outputs on `input_ids` (no gradient)."""
        return record_writers(self.adapter, input_ids, attention_mask, self.layer_runner)

    def set_mean_ablation(self, input_ids, attention_mask=None, batch_size: int = 32, per_position: bool = False):
        """Mean ablation's values: each writer's mean output per position over these inputs. Under
        optimal ablation, the constants' start: one per component, its mean over every real position
        after the first; per_position, one per component and position, these means."""
        total, count = None, 0
        for i in range(0, len(input_ids), batch_size):
            mask = None if attention_mask is None else attention_mask[i:i + batch_size]
            part = self.record(input_ids[i:i + batch_size], mask).map(lambda t: t.double().sum(0, keepdim=True))
            total = part if total is None else WriterRecord.cat([total, part]).map(lambda t: t.sum(0, keepdim=True))
            count += len(input_ids[i:i + batch_size])
        self.mean_record = total.map(lambda t: (t / count).to(self.adapter.dtype))
        self.constants = self.kind.start_constants(self, input_ids, attention_mask, batch_size, per_position)

    def set_optimal_ablation(self, tensors: dict[str, torch.Tensor]):
        """Optimal ablation's constants from a circuit (Circuit.ablation_values), to evaluate it with them."""
        if not self.kind.learned:
            raise UserError(f"this model ablates with {self.ablation!r}; build it with ablation='optimal'")
        self.constants = AblationConstants.from_tensors(tensors).to(self.adapter.device)

    @property
    def ablation_per_example(self) -> bool:
        """Whether the ablated values depend on each example (interchange) or are fixed (mean, zero)."""
        return self.kind.per_example

    def ablation_record(self, corrupted_input_ids=None, attention_mask=None, seq_len=None) -> WriterRecord | None:
        """The ablated writers' values for a batch, as the model's ablation kind makes them.

        corrupted: the unpruned model's record on the corrupted inputs; mean: the stored means, cut
        to seq_len positions; optimal: the learned constants' record over seq_len positions (default:
        the corrupted inputs' length), held fixed (they learn through forward's reader term; its
        first position is the clean run's, which forward puts in); zero: None.
        """
        return self.kind.record(self, corrupted_input_ids, attention_mask, seq_len)

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids, attention_mask=None, positions=None, *, edges: torch.Tensor, nodes: torch.Tensor,
                record: WriterRecord | None, recompute_readers: bool = RECOMPUTE_READERS, backend: str | None = None,
                stack: str = "delta"):
        """Logits of the model gated by `edges` and `nodes` (flat, graph order), ablated with `record`.

        (B, S, V), or (B, P, V) at `positions` (B, P): the unembedding runs only where it is read.
        backend: the kernels' backend for this call (default: the model's). stack: "delta" (eager
        steps) or "blocks" (the functional stack a compiled step traces; models/forward.py). Under
        optimal ablation the first position is never ablated (its record values are the clean run's,
        computed here), and with gradients the constants learn by Li and Janson's rule
        (models/optimal_ablation.py).
        """
        if record is not None and record.resid_final.shape[1] != input_ids.shape[1]:
            raise UserError(f"the ablation record covers {record.resid_final.shape[1]} positions but the input has "
                            f"{input_ids.shape[1]}; pad the clean and corrupted inputs to the same length")
        term = None
        if self.constants is not None and record is not None:  # optimal ablation's constants
            first = self.record(input_ids[:, :1], None if attention_mask is None else attention_mask[:, :1])
            record = self.constants.with_first(record, first)
            if torch.is_grad_enabled() and any(p.requires_grad for p in self.constants.parameters()):
                term = self.constants.reader_term(self.adapter, self.graph, input_ids.shape[1])
        return gated_forward(self.adapter, self.graph, input_ids, edges=edges, nodes=nodes, record=record,
                             attention_mask=attention_mask, positions=positions, backend=backend or self.backend,
                             recompute_readers=recompute_readers, runner=self.layer_runner, reader_term=term,
                             stack=stack)

    @torch.no_grad()
    def full_logits(self, input_ids, attention_mask=None, positions=None):
        """The unpruned model's logits (all positions, or at `positions` (B, P))."""
        rec = self.record(input_ids, attention_mask)
        x = rec.resid_final
        if positions is not None:
            x = x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))
        return self.adapter.unembed(x)

    def circuit_gates(self, edges=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary gates of a circuit: the listed (writer, reader) edges kept, every node kept.

        edges None keeps every edge (the full model); [] keeps none (the fully ablated model).
        """
        device = self.adapter.device
        mask = torch.ones(self.graph.num_edges) if edges is None else self.graph.edge_mask(edges)
        return mask.to(device), torch.ones(self.graph.num_writers, device=device)


def prunable(model: nn.Module, embedding_nodes: int | None = None, ablation: str = "corrupted",
             backend: str | None = None, attention_writers: str = "heads", kv_edges: str = "group") -> PrunableModel:
    """Wrap a Hugging Face GPT-2 / Llama-family / GPT-NeoX / Gemma 2 and 3 / OLMo 2 model (or a Tracr
    model) for edge pruning.

    attention_writers: "heads" (each head is a writer) or "layer" (a layer's attention is one writer,
    a coarser graph; docs/design.md, "Norms on the branch outputs").
    kv_edges: under grouped-query attention, "group" (one key and one value reader per key-value
    head, shared by its query heads) or "query" (each query head reads its own key and value input,
    projected with its group's weights: MIB's graph). Without grouping both are the same graph.
    """
    return PrunableModel(model, embedding_nodes, ablation, backend, attention_writers, kv_edges)


__all__ = ["RECOMPUTE_READERS", "PrunableModel", "prunable"]
