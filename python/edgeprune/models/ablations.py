"""The ablation kinds: what a pruned edge carries in place of its writer's clean output.

Each kind is one object: its name and meaning, what it records before a run, what it refuses and
what the memory planner charges for it. The parts that differ between kinds ask it
(PrunableModel.ablation_record, the training data, attribution, faithfulness, evaluation, the
planner, the command line), so a new kind is a new object here.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..errors import RunError, UserError
from .optimal_ablation import AblationConstants
from .records import WriterRecord

# Refusals name the use (an API, or an attribution method) and the kind: {use}, {name}; {serving}
# lists the kinds that can serve the use.
_INTERPOLATES = "{use} interpolates between the clean and corrupted inputs: it needs ablation='corrupted', not '{name}'"
_NEEDS_CORRUPTED = (("eap-ig-inputs", _INTERPOLATES), ("clean-corrupted", _INTERPOLATES))


@dataclass(frozen=True)
class Ablation(ABC):
    """One ablation kind. Subclasses say how its record is made; the fields say the rest."""
    name: str
    meaning: str                    # what a pruned edge carries, in one line
    per_example: bool = False       # its values depend on each example (a record of the corrupted run per batch)
    from_means: bool = False        # before a run it records each writer's mean over the data (set_mean_ablation)
    learned: bool = False           # its values are constants learned with the gates, saved with the circuit
    refuses: tuple[tuple[str, str], ...] = ()   # (use, why): the uses it cannot serve

    def check(self, use: str) -> None:
        """Refuse `use` (an API such as "attribution" or "faithfulness", or an attribution method) if
        this kind cannot serve it."""
        why = dict(self.refuses).get(use)
        if why is not None:
            raise UserError(why.format(use=use, name=self.name, serving=_listed(serving(use))))

    @abstractmethod
    def record(self, pm, corrupted_input_ids=None, attention_mask=None, seq_len=None) -> WriterRecord | None:
        """The ablated writers' values for a batch (PrunableModel.ablation_record)."""

    def start_constants(self, pm, input_ids, attention_mask, batch_size: int,
                        per_position: bool) -> AblationConstants | None:
        """The learned constants' start, once the means are recorded (None: this kind learns none)."""
        return None

    def prepare_evaluation(self, pm, dataset, circuit=None, pad_to=None) -> None:
        """Make pm's ablated values ready to evaluate `circuit` on `dataset` (none needed here)."""

    def planned_bytes(self, per_example: int, examples: int, batch: int, cache_bytes: int) -> int | None:
        """What the memory planner charges for this kind's records, given one example's record bytes
        (None: nothing beyond the model's own)."""
        return None


@dataclass(frozen=True)
class Interchange(Ablation):
    def record(self, pm, corrupted_input_ids=None, attention_mask=None, seq_len=None):
        if corrupted_input_ids is None:
            raise UserError("corrupted (interchange) ablation needs corrupted_input_ids of the same shape as "
                            "input_ids; or build with ablation='zero' or 'mean'")
        return pm.record(corrupted_input_ids, attention_mask)

    def planned_bytes(self, per_example, examples, batch, cache_bytes):
        # cached for the dataset while they fit cache_bytes (edgeprune.batches), plus the batch's copy
        cached = examples * per_example if examples * per_example <= cache_bytes else 0
        return cached + batch * per_example


@dataclass(frozen=True)
class Zero(Ablation):
    def record(self, pm, corrupted_input_ids=None, attention_mask=None, seq_len=None):
        return None


@dataclass(frozen=True)
class Mean(Ablation):
    def record(self, pm, corrupted_input_ids=None, attention_mask=None, seq_len=None):
        if pm.mean_record is None:
            raise RunError("mean ablation needs its means first: call set_mean_ablation(input_ids)")
        have = pm.mean_record.resid_final.shape[1]
        if seq_len is not None and seq_len > have:
            raise UserError(f"mean ablation was computed for {have} positions but the input has {seq_len}; "
                            "compute the means on inputs padded to at least that length")
        return pm.mean_record if seq_len is None else pm.mean_record.map(lambda t: t[:, :seq_len])

    def prepare_evaluation(self, pm, dataset, circuit=None, pad_to=None):
        if pm.mean_record is None:  # the means of the data evaluated
            set_means(pm, dataset, pad_to)


@dataclass(frozen=True)
class Optimal(Ablation):
    def record(self, pm, corrupted_input_ids=None, attention_mask=None, seq_len=None):
        # held fixed: the constants learn through forward's reader term; its first position is the
        # clean run's, which forward puts in
        constants = pm.constants
        if constants is None:
            raise RunError("optimal ablation starts from the means: call set_mean_ablation(input_ids), or "
                           "set_optimal_ablation(circuit.ablation_values) to evaluate a trained circuit")
        if seq_len is None and corrupted_input_ids is None and not constants.per_position:
            raise UserError("optimal ablation's record needs a length: pass seq_len (or the corrupted inputs)")
        seq_len = seq_len if seq_len is not None else (
            corrupted_input_ids.shape[1] if corrupted_input_ids is not None else constants.positions)
        if seq_len > constants.positions:
            raise UserError(f"optimal ablation has constants for {constants.positions} positions but the "
                            f"input has {seq_len}; train on inputs padded to at least that length")
        return constants.record(pm.adapter, seq_len)

    def start_constants(self, pm, input_ids, attention_mask, batch_size, per_position):
        # per position: the means per position; else one per component, its mean over every real
        # position after the first
        if per_position:
            return AblationConstants.from_record(pm.mean_record).to(pm.adapter.device)
        batches = ((pm.record(input_ids[i:i + batch_size], None if attention_mask is None else
                              attention_mask[i:i + batch_size]),
                    None if attention_mask is None else attention_mask[i:i + batch_size])
                   for i in range(0, len(input_ids), batch_size))
        return AblationConstants.component_means(batches).to(pm.adapter.device)

    def prepare_evaluation(self, pm, dataset, circuit=None, pad_to=None):
        if pm.constants is None:  # the circuit's own, learned with its gates
            values = getattr(circuit, "ablation_values", None)
            if values is None:
                raise UserError("optimal ablation evaluates with the circuit's learned constants, and this circuit "
                                "has none (train it with ablation='optimal')")
            pm.set_optimal_ablation(values)


CORRUPTED = Interchange("corrupted", "the writer's output on the corrupted input (interchange ablation)",
                        per_example=True)
ZERO = Zero("zero", "nothing: the writer's output is removed (a head's share of its output bias stays)",
            refuses=(("faithfulness", "faithfulness ablates with {serving}, not '{name}'"), *_NEEDS_CORRUPTED,
                     ("eap-ig-activations", "eap-ig-activations interpolates each node group between its ablated "
                      "and clean outputs, which zero ablation's gated forward does not hold (its output biases "
                      "stay in the heads); use ablation='corrupted' or 'mean', or method='eap-ig-gates'")))
MEAN = Mean("mean", "the writer's mean output over the data, per position", from_means=True,
            refuses=_NEEDS_CORRUPTED)
OPTIMAL = Optimal("optimal", "a constant learned with the gates, starting from the writer's mean (Li and Janson)",
                  from_means=True, learned=True,
                  refuses=(("attribution", "attribution ablates with {serving}, not '{name}'"),))

KINDS: dict[str, Ablation] = {kind.name: kind for kind in (CORRUPTED, ZERO, MEAN, OPTIMAL)}
ABLATIONS = tuple(KINDS)


def ablation_kind(name: str) -> Ablation:
    """The kind of that name; a clear error for any other."""
    if name not in KINDS:
        raise UserError(f"unknown ablation {name!r}; choose one of {ABLATIONS}")
    return KINDS[name]


def serving(use: str) -> tuple[str, ...]:
    """The kinds that can serve `use`: a command's choices, and refusals' messages."""
    return tuple(kind.name for kind in KINDS.values() if use not in dict(kind.refuses))


def describe() -> str:
    """Every kind and its meaning, for help texts."""
    return "; ".join(f"{kind.name}: {kind.meaning}" for kind in KINDS.values())


def set_means(pm, dataset, pad_to=None, device=None, per_position: bool = False) -> None:
    """Mean ablation's values (and optimal ablation's start) over a whole dataset, as one batch
    padded to pad_to (default: its longest example), on `device` (default: the model's)."""
    batch = dataset.batch(list(range(len(dataset))), pad_to=pad_to)
    device = pm.adapter.device if device is None else device
    pm.set_mean_ablation(batch.clean.to(device), batch.attention_mask.to(device), per_position=per_position)


def _listed(names) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


__all__ = ["ABLATIONS", "Ablation", "KINDS", "ablation_kind", "describe", "serving", "set_means"]
