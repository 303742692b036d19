"""Tracr programs with known circuits: `edgeprune.tracr.load("reverse" | "xproportion")`.

    prog = edgeprune.tracr.load("reverse")
    prog.model          # TracrTransformer (torch only; weights from package data, no JAX)
    prog.dataset        # the task dataset ("tracr-reverse"), every input sequence, BOS prepended
    prog.ground_truth   # [(writer, reader), ...]: the weight-support circuit, derived from the weights

The weights were compiled by scripts/compile_tracr.py (tracr-pypi 1.0.0; see its docstring):

| program     | RASP                          | vocab        | max_seq_len | L x H | d_model | key | MLP | BOS id | edges |
|-------------|-------------------------------|--------------|-------------|-------|---------|-----|-----|--------|-------|
| reverse     | make_reverse(tokens)          | {1, 2, 3}    | 3           | 4 x 1 | 29      | 8   | 12  | 3      | 94    |
| xproportion | make_frac_prevs(tokens=="x")  | {w, x, y, z} | 4           | 2 x 1 | 13      | 6   | 1   | 0      | 32    |

Inputs are BOS + at most max_seq_len tokens (the reference's sequence lengths 4 and 5). Batches
are right-padded, and padded keys are masked in attention (the attention mask, or the compiler's
pad token), which makes a padded row compute exactly what tracr computes on the unpadded input;
without the mask a pad would count towards reverse's `length`. Tracr's BOS id comes from sorting
"BOS" with the vocabulary and "compiler_pad" (method.md 7), hence 3 for reverse and 0 for
xproportion. The datasets (edgeprune.tracr.tasks) hold every input: reverse every length 1..3
(39), since with one fixed length the length head a0 would be constant and prunable;
xproportion length 4 only (256), since its loss is a softmax over the sequence axis.

Ground truth (method.md 7). A writer's output support is the set of residual dimensions it can
write (non-zero columns of the token / position embedding, of a head's rows of W_O plus the output
bias, of an MLP's W_2 plus its bias); a reader's input support is the set of dimensions it reads
(non-zero rows of the head's slice of W_Q, W_K or W_V, of W_1, or of the unembedding; for
xproportion's final read, the output dimension 0 only, since the loss and the metric read nothing
else). An edge (w, r) allowed by the graph is in the circuit when the two supports intersect, w is
not identically zero, and r belongs to a component that is not identically zero. With the
vocabularies and lengths above this gives exactly method.md 7's circuits: 15 of 94 edges for
reverse, 7 of 32 for xproportion. Components tracr leaves empty (reverse: a1, a2, m3;
xproportion: a0, m1) have all-zero weights and so no edges. Several tok_embeds edges carry only
tracr's "one" direction or the BOS token (attention-sink and bias plumbing). They are part of the
weight-support circuit all the same, but four of reverse's are not needed under zero ablation:
tok_embeds -> a0.h0.q / a0.h0.k (the selector-width head attends uniformly whatever its query and
key) and tok_embeds -> a3.h0.q / a3.h0.k; the other 11 reverse edges and all 7 xproportion edges
are each necessary for an exact output (tests/tracr/test_tracr_ground_truth.py). A recovered
circuit may therefore omit those four and still be exact.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..graph import Graph
from ..models.tracr import TracrAdapter, TracrConfig, TracrTransformer
from .programs import DATA_DIR, PROGRAMS, check_name, ground_truth, load_model, read_config, supports
from .settings import SETTINGS
from .tasks import dataset

__all__ = ["DATA_DIR", "PROGRAMS", "TracrAdapter", "TracrConfig", "TracrProgram", "TracrTransformer", "check_name",
           "ground_truth", "load", "load_model", "supports"]


@dataclass
class TracrProgram:
    name: str
    model: TracrTransformer
    dataset: object  # edgeprune.tasks.base.TaskDataset
    ground_truth: list[tuple[str, str]]
    config: dict  # the package-data JSON

    @property
    def task(self):
        return self.dataset.task

    @property
    def graph(self) -> Graph:
        c = self.model.config
        return Graph(c.num_layers, c.num_heads, c.num_heads, 2)

    @property
    def settings(self) -> dict:
        return dict(SETTINGS[self.name])

    def __repr__(self) -> str:
        c = self.model.config
        return (f"TracrProgram({self.name!r}: {c.num_layers} layers x {c.num_heads} heads, d_model {c.d_model}, "
                f"{len(self.dataset)} examples, ground truth {len(self.ground_truth)}/{self.graph.num_edges} edges)")


def load(name: str, split: str = "train") -> TracrProgram:
    """Model, task dataset and ground-truth circuit of "reverse" or "xproportion" (or "tracr-<name>")."""
    name = check_name(name)
    model = load_model(name)
    return TracrProgram(name=name, model=model, dataset=dataset(name, split=split, model=model),
                        ground_truth=ground_truth(model), config=read_config(name))
