"""`prunable(model)`: a stock model with edge and node gates over its computation graph."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..gates import Gates
from ..graph import Graph
from .base import Adapter
from .disentangled import WriterRecord, record_writers, run_disentangled

ABLATIONS = ("corrupted", "zero", "mean")


def _adapter_for(model) -> Adapter:
    from .gpt2 import GPT2Adapter
    from .gpt_neox import GPTNeoXAdapter
    from .llama import LlamaAdapter
    families = {"gpt2": GPT2Adapter, "llama": LlamaAdapter, "mistral": LlamaAdapter, "qwen2": LlamaAdapter,
                "qwen3": LlamaAdapter, "gpt_neox": GPTNeoXAdapter}
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type == "tracr":
        from .tracr import TracrAdapter
        return TracrAdapter(model)
    if model_type in families and hasattr(model, "lm_head"):
        return families[model_type](model)
    raise ValueError(
        f"edgeprune cannot prune {type(model).__name__} (model_type={model_type!r}). Supported: "
        "GPT2LMHeadModel, LlamaForCausalLM (CodeLlama included), MistralForCausalLM, Qwen2ForCausalLM, "
        "Qwen3ForCausalLM, GPTNeoXForCausalLM (Pythia) and Tracr models (edgeprune.tracr.load); pass the model with its language-modelling head.")


class PrunableModel(nn.Module):
    """A frozen model plus learnable gates; forward runs the gated (pruned) model.

    forward(input_ids, corrupted_input_ids=None, attention_mask=None, positions=None) -> logits.
    Gates: sampled in train mode (pass seed and step), deterministic soft masks in eval mode, or a
    fixed binary circuit after set_circuit(edges).
    """

    def __init__(self, model: nn.Module, embedding_nodes: int | None = None, ablation: str = "corrupted",
                 backend: str | None = None):
        super().__init__()
        adapter = _adapter_for(model)
        if embedding_nodes is None:
            embedding_nodes = adapter.default_embedding_nodes
        if embedding_nodes not in adapter.embedding_nodes_allowed:
            raise ValueError(f"embedding_nodes={embedding_nodes} is not valid for {adapter.family} models; "
                             f"choose one of {adapter.embedding_nodes_allowed} (2 = separate token and position "
                             "embeddings, GPT-2 only; 1 = one 'embeds' node; 0 = clean embeddings, unmasked).")
        if ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {ablation!r}; choose one of {ABLATIONS}")
        model.requires_grad_(False)
        model.eval()
        self.model = model
        self.adapter = adapter
        self.ablation = ablation
        self.backend = backend
        self.graph = Graph(adapter.num_layers, adapter.num_heads, adapter.num_kv_heads, embedding_nodes,
                           adapter.parallel_residual)
        self.gates = Gates(self.graph, eps=1e-8 if adapter.family == "llama" else 1e-6).to(adapter.device)
        self.mean_record: WriterRecord | None = None

    # ------------------------------------------------------------------ ablation values
    def record(self, input_ids, attention_mask=None) -> WriterRecord:
        """The unpruned model's writer outputs on `input_ids` (no gradient)."""
        return record_writers(self.adapter, input_ids, attention_mask)

    def set_mean_ablation(self, input_ids, attention_mask=None, batch_size: int = 32):
        """Mean ablation's values: each writer's mean output per position over these inputs."""
        total, count = None, 0
        for i in range(0, len(input_ids), batch_size):
            mask = None if attention_mask is None else attention_mask[i:i + batch_size]
            part = self.record(input_ids[i:i + batch_size], mask).map(lambda t: t.double().sum(0, keepdim=True))
            total = part if total is None else WriterRecord.cat([total, part]).map(lambda t: t.sum(0, keepdim=True))
            count += len(input_ids[i:i + batch_size])
        self.mean_record = total.map(lambda t: (t / count).to(self.adapter.dtype))

    def ablation_record(self, corrupted_input_ids=None, attention_mask=None, seq_len=None) -> WriterRecord | None:
        if self.ablation == "zero":
            return None
        if self.ablation == "mean":
            if self.mean_record is None:
                raise RuntimeError("mean ablation needs its means first: call set_mean_ablation(input_ids)")
            have = self.mean_record.resid_final.shape[1]
            if seq_len is not None and seq_len > have:
                raise ValueError(f"mean ablation was computed for {have} positions but the input has {seq_len}; "
                                 "compute the means on inputs padded to at least that length")
            return self.mean_record if seq_len is None else self.mean_record.map(lambda t: t[:, :seq_len])
        if corrupted_input_ids is None:
            raise ValueError("corrupted (interchange) ablation needs corrupted_input_ids of the same shape as "
                             "input_ids; or build with ablation='zero' or 'mean'")
        return self.record(corrupted_input_ids, attention_mask)

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids, corrupted_input_ids=None, attention_mask=None, positions=None, *,
                seed: int = 0, step: int = 0, record: WriterRecord | None = None):
        if corrupted_input_ids is not None and corrupted_input_ids.shape != input_ids.shape:
            raise ValueError(f"clean and corrupted inputs differ in shape: {tuple(input_ids.shape)} vs "
                             f"{tuple(corrupted_input_ids.shape)}; pad both to the same length")
        if record is None:
            record = self.ablation_record(corrupted_input_ids, attention_mask, input_ids.shape[1])
        edges, nodes = self.gates.current(seed, step)
        return run_disentangled(self.adapter, self.graph, input_ids, record, edges, nodes, attention_mask,
                                positions, self.backend)

    @torch.no_grad()
    def full_logits(self, input_ids, attention_mask=None, positions=None):
        """The unpruned model's logits (all positions, or at `positions` (B, P))."""
        rec = self.record(input_ids, attention_mask)
        x = rec.resid_final
        if positions is not None:
            x = x.gather(1, positions[..., None].expand(-1, -1, x.shape[-1]))
        return self.adapter.unembed(x)

    # ------------------------------------------------------------------ circuits
    def set_circuit(self, edges: Iterable[tuple[str, str]] | None):
        """Fix the gates to a binary circuit: listed edges kept, the rest ablated, every node kept.

        set_circuit(None) keeps every edge (the full model); learned gates return with clear_circuit().
        """
        if edges is None:
            self.gates.set_fixed(torch.ones(self.graph.num_edges))
            return
        mask = torch.zeros(self.graph.num_edges)
        index = self.graph.edge_index
        for edge in edges:
            edge = tuple(edge)
            if edge not in index:
                raise ValueError(f"edge {edge} is not in the graph of this model (writers like 'a0.h1', readers "
                                 "like 'a1.h2.q' or 'resid_post'; a reader may only read earlier writers)")
            mask[index[edge]] = 1.0
        self.gates.set_fixed(mask)

    def clear_circuit(self):
        self.gates.set_fixed(None)


def prunable(model: nn.Module, embedding_nodes: int | None = None, ablation: str = "corrupted",
             backend: str | None = None) -> PrunableModel:
    """Wrap a Hugging Face GPT-2 / Llama-family model (or a Tracr model) for edge pruning."""
    return PrunableModel(model, embedding_nodes, ablation, backend)


__all__ = ["prunable", "PrunableModel", "WriterRecord", "ABLATIONS"]
