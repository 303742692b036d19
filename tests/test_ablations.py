"""The ablation kinds (models/ablations.py): every refusal a kind declares is raised, with its
message, by the use it names; the command line, TrainConfig and the planner take the kinds from
there; the evaluating APIs set up each kind's values the same way."""
import pytest
import torch

import edgeprune
from edgeprune import cli
from edgeprune.models.ablations import ABLATIONS, KINDS, ablation_kind, serving
from edgeprune.errors import UserError
from helpers.data import answer_pairs
from helpers.models import tiny

MODEL = tiny("gpt2")
REFUSALS = [(kind.name, use) for kind in KINDS.values() for use, _ in kind.refuses]


def _use(use: str, ablation: str):
    """Run `use` (an API, or an attribution method) with that ablation, on a model built for it."""
    data = answer_pairs(n=2)
    if use == "faithfulness":
        return edgeprune.faithfulness(MODEL, torch.zeros(1), data, ablation=ablation)
    if use == "attribution":
        return edgeprune.attribute(MODEL, data, "eap", ablation=ablation)
    return edgeprune.attribute(edgeprune.prunable(MODEL, ablation=ablation), data, use, ablation=ablation)


@pytest.mark.parametrize("name,use", REFUSALS, ids=[f"{n}-{u}" for n, u in REFUSALS])
def test_every_declared_refusal_is_raised_by_its_use(name, use):
    with pytest.raises(UserError) as caught:
        _use(use, name)
    with pytest.raises(UserError) as expected:
        ablation_kind(name).check(use)
    assert str(caught.value) == str(expected.value) and name in str(caught.value)


def test_refusal_messages():
    messages = {}
    for name, use in REFUSALS:
        with pytest.raises(UserError) as caught:
            ablation_kind(name).check(use)
        messages[name, use] = str(caught.value)
    assert messages["optimal", "attribution"] == "attribution ablates with 'corrupted', 'zero' or 'mean', not 'optimal'"
    assert messages["zero", "faithfulness"] == "faithfulness ablates with 'corrupted', 'mean' or 'optimal', not 'zero'"
    assert messages["mean", "eap-ig-inputs"] == ("eap-ig-inputs interpolates between the clean and corrupted inputs: "
                                                 "it needs ablation='corrupted', not 'mean'")
    assert "use ablation='corrupted' or 'mean'" in messages["zero", "eap-ig-activations"]


def test_a_prunable_model_must_ablate_as_asked():
    built = "the model was built with ablation='corrupted' but attribution asked for 'mean'"
    with pytest.raises(UserError, match=built):
        edgeprune.attribute(edgeprune.prunable(MODEL), answer_pairs(n=2), "eap", ablation="mean")


def test_the_kinds_are_the_choices():
    choices = {f.name: f.metadata.get("choices") for f in edgeprune.TrainConfig.__dataclass_fields__.values()}
    assert choices["ablation"] == ABLATIONS == ("corrupted", "zero", "mean", "optimal")
    parser = cli.build_parser()
    attribute = next(a for a in parser._subparsers._group_actions[0].choices["attribute"]._actions
                     if a.dest == "ablation")
    assert tuple(attribute.choices) == serving("attribution") == ("corrupted", "zero", "mean")
    unknown = r"unknown ablation 'x'; choose one of \('corrupted', 'zero', 'mean', 'optimal'\)"
    with pytest.raises(UserError, match=unknown):
        ablation_kind("x")


def test_the_planner_charges_records_for_interchange_only():
    parts = {name: edgeprune.plan(MODEL, 4, 8, ablation=name).parts for name in ABLATIONS}
    assert parts["corrupted"]["ablation records"] > 0
    assert all("ablation records" not in parts[name] for name in ("zero", "mean", "optimal"))


def test_mean_ablation_takes_the_evaluated_datas_means():
    """evaluate, faithfulness and attribute record the means of the data they run on, as set_mean_ablation
    does on one batch of it."""
    data = answer_pairs(n=3)
    batch = data.batch(list(range(len(data))))
    reference = edgeprune.prunable(MODEL, ablation="mean")
    reference.set_mean_ablation(batch.clean, batch.attention_mask)
    for run in (lambda pm: edgeprune.evaluate(pm, None, data, progress=False),
                lambda pm: edgeprune.attribute(pm, data, "eap", ablation="mean", progress=False)):
        pm = edgeprune.prunable(MODEL, ablation="mean")
        run(pm)
        for a, b in zip(pm.mean_record.tensors(), reference.mean_record.tensors()):
            assert torch.equal(a, b)
