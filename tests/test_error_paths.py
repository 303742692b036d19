"""Every user-facing error path of python/edgeprune is triggered by a test that checks its message.

Each CASE names an error site (tests/error_sites.py), triggers it and checks the exception's type
and message. test_every_error_site_is_tested collects the sites from the source and fails when one
is neither executed by its case (a line tracer watches) nor in ALLOWED, the sites no user can
reach, each with the reason. A new `raise` needs a case here.
"""
from __future__ import annotations

import argparse
import functools
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest
import torch

import edgeprune
import edgeprune.tasks.boolean_expressions
import edgeprune.tasks.custom
import edgeprune.tasks.encoding
import edgeprune.tasks.greater_than
import edgeprune.tasks.metrics
import edgeprune.tasks.mib
import edgeprune.tasks.splits
import edgeprune.tracr.tasks
from edgeprune import cli, compiling, curves, distributed, draw, errors, loading, mib, plotting, training
from edgeprune.models import families
from edgeprune.models import tracr as tracr_model
from error_sites import all_sites, find, lines_run, sites_in
from helpers import mib as mib_configs
from helpers.data import random_pairs
from helpers.models import tiny


@dataclass(frozen=True)
class Case:
    path: str
    function: str
    fragment: str
    error: type
    match: str
    trigger: Callable  # trigger(ctx): ctx.tmp is an empty folder, ctx.mp a pytest MonkeyPatch

    @property
    def id(self) -> str:
        return f"{self.path}:{self.function}:{self.fragment}"


# ---------------------------------------------------------------------------- shared inputs

@functools.lru_cache(maxsize=None)
def _gpt2():
    return tiny("gpt2")


def _pm(**kw):
    return edgeprune.prunable(_gpt2(), **kw)


@functools.lru_cache(maxsize=None)
def _words():
    from helpers.tokenizers import word_level
    return word_level(["Then Mary and John went home . Anna gave a drink to Paul the year 1700 1799 x y"])


def _graph():
    return edgeprune.Graph(2, 4, 4, 2)


def _scored():
    g = _graph()
    return edgeprune.Circuit.from_log_alphas(g, torch.randn(g.num_edges), torch.randn(g.num_writers))


def _saved(ctx, circuit=None):
    (circuit or _scored()).save(ctx.tmp / "c")
    return ctx.tmp / "c"


def _replace_file(ctx, name: str, content: bytes, circuit=None) -> Path:
    folder = _saved(ctx, circuit)
    path = folder / name
    path.unlink()
    path.write_bytes(content)
    return folder


def _missing_edges(ctx):
    folder = _saved(ctx)
    (folder / "edges.json").unlink()
    edgeprune.Circuit.load(folder)


def _short_ranking(ctx):
    from dataclasses import replace as with_fields

    from safetensors.torch import save
    circuit = _scored()
    ranked = with_fields(circuit, ranking=torch.rand(circuit.graph.num_edges))
    edgeprune.Circuit.load(_replace_file(ctx, "path.safetensors", save({"ranking": torch.rand(3)}), ranked))


def _trainer(**kw):
    from edgeprune.training import TrainConfig, Trainer
    config = TrainConfig(**({"edge_sparsity": 0.5, "steps": 4, "batch_size": 4, "eval_every": 0} | kw))
    return Trainer(_pm(), random_pairs(), config)


def _answers_outside_vocab(ctx):
    from edgeprune.training import TrainConfig, Trainer
    from helpers.data import answer_pairs
    data = answer_pairs()
    data.task.vocab = [2, 3]
    return Trainer(_pm(), data, TrainConfig(edge_sparsity=0.5, steps=4, batch_size=4, objective="logit_diff"))


def _nan_loss(ctx):
    from edgeprune.training import TrainConfig, Trainer
    pm = edgeprune.prunable(tiny("gpt2"))
    t = Trainer(pm, random_pairs(), TrainConfig(edge_sparsity=0.5, steps=4, batch_size=4, eval_every=0))
    with torch.no_grad():  # after the targets were computed: the circuit's logits alone are NaN
        pm.model.lm_head.weight.fill_(float("nan"))
    t.step()
    t.check()


def _nan_gradient(ctx):
    t = _trainer()
    t.pm.gates.edge_log_alpha.register_hook(lambda grad: grad * float("nan"))
    t.step()
    t.check()


def _file(ctx, name: str) -> Path:
    (ctx.tmp / name).write_text("x")
    return ctx.tmp / name


def _export_twice(ctx):
    (ctx.tmp / "mib").mkdir()
    (ctx.tmp / "mib" / "x.json").write_text("{}")
    circuit = _scored()
    circuit.d_model = 16
    _main("export", str(_saved(ctx, circuit)), "--mib", str(ctx.tmp / "mib"))


def _other_weights(ctx):
    circuit = _scored()
    circuit.weights = "0" * 16
    edgeprune.evaluate(_gpt2(), circuit, random_pairs(n=2))


def _signalled_twice(ctx):
    import os
    import signal
    from edgeprune.interrupts import deferred
    with deferred():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)


def _interrupted_trainer(ctx):
    import os
    import signal
    t = _trainer()
    step = t.step

    def step_then_signal():
        out = step()
        os.kill(os.getpid(), signal.SIGINT)
        return out
    t.step = step_then_signal
    t.run(progress=False)


def _main(*argv):
    from edgeprune.cli import main
    return main([*argv, "--debug"])


def _tracr():
    from edgeprune import tracr
    return tracr.load_model("reverse")


def _tracr_weights(**changes):
    from edgeprune.tracr import programs
    config, weights = programs._read("reverse")
    return tracr_model.TracrConfig.from_json(config), dict(weights) | changes


def _bench_missing(ctx):
    from edgeprune import cli
    ctx.mp.chdir(ctx.tmp)
    ctx.mp.setattr(cli, "__file__", str(ctx.tmp / "a" / "b" / "cli.py"))
    cli.cmd_bench(SimpleNamespace(which="step", rest=[]))


def _tracr_data_missing(ctx):
    from edgeprune.tracr import programs
    ctx.mp.setattr(programs, "DATA_DIR", str(ctx.tmp))
    programs._read.__wrapped__("reverse")


def _sharded_twice(ctx):
    from edgeprune.distributed import Distributed, FSDPLayers, apply_fsdp
    pm = _pm()
    pm.set_layer_runner(FSDPLayers(pm.model, pm.adapter.decoder_layers(), pm.layer_runner))
    apply_fsdp(pm, Distributed(0, 1, torch.device("cpu"), "gloo"))


def _meta_on_rank0(ctx):
    from edgeprune.distributed import Distributed, _fill_from_rank0
    with torch.device("meta"):
        model = torch.nn.Linear(2, 2)
    _fill_from_rank0(SimpleNamespace(model=model), Distributed(0, 1, torch.device("cpu"), "gloo"), {},
                     torch.device("cpu"))


def _custom(items, **kw):
    from edgeprune.tasks import custom
    return custom.dataset(items, _words(), **kw)


def _pair(clean, corrupted="Then Anna and Paul went home . Paul gave a drink to"):
    return [{"clean": clean, "corrupted": corrupted}]


CLEAN = "Then Mary and John went home . John gave a drink to <predict>Mary</predict>"


class _LongPrompts(edgeprune.tasks.Task):
    max_length = 1


def _build(ctx):
    from edgeprune.tasks import splits
    candidates = [splits.Candidate(key=f"k{i}", clean="Then Mary went home", corrupted="Then Anna went home")
                  for i in range(3)]
    splits.build(_LongPrompts(), candidates, _words(), "train", 2, family="t", fractions={"train": 1.0},
                 sizes={"train": 2})


def _encoder():
    from edgeprune.tasks.encoding import Encoder
    return Encoder(_words())


def _greater_than_make(clean, corrupted):
    from edgeprune.tasks import greater_than, splits
    vocab = list(range(100))
    return greater_than.make_maker(vocab)(splits.Candidate(key=clean, clean=clean, corrupted=corrupted, label=0),
                                          _encoder())


def _record(ctx):
    pm = _pm()
    ids = torch.randint(2, 60, (1, 6))
    record = pm.record(ids[:, :4])
    edges, nodes = pm.circuit_gates()
    pm(ids, edges=edges, nodes=nodes, record=record)


def _mean_too_short(ctx):
    pm = _pm(ablation="mean")
    pm.set_mean_ablation(torch.randint(2, 60, (2, 4)))
    pm.ablation_record(seq_len=6)


def _checkpoint(ctx, state):
    from edgeprune import checkpoints
    checkpoints.check(state, {"a": 1, "settings": {"steps": 5}}, "run")


def _garbage_checkpoint(ctx):
    from edgeprune import checkpoints
    (ctx.tmp / checkpoints.FILE).write_bytes(b"not a checkpoint")
    checkpoints.load(str(ctx.tmp), "cpu")


def _mib():
    return mib.MIBGraph(_graph())


def _answers(n: int = 2):
    from helpers.data import answer_pairs
    return answer_pairs(n=n) if n else edgeprune.tasks.TaskDataset(edgeprune.tasks.AnswerTask(), [])


def _attribute(method, model=None, data=None, **kw):
    return edgeprune.attribute(model if model is not None else _pm(), data if data is not None else _answers(),
                               method, **kw)


def _warm(init, **kw):
    return edgeprune.train(_gpt2(), random_pairs(n=4), init=init, edge_sparsity=0.5, steps=1, batch_size=4,
                           eval_every=0, progress=False, **kw)


def _mib_ioi(prompt, corrupted):
    return {"prompt": prompt, "metadata": {"indirect_object": "Mary", "subject": "John"},
            "s2_io_flip_counterfactual": {"prompt": corrupted}}


def _mib_rows(ctx, rows, split="train"):
    (ctx.tmp / "ioi").mkdir()
    (ctx.tmp / "ioi" / f"{split}.jsonl").write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))


def _optimal_too_short(ctx):
    pm = _pm(ablation="optimal")
    pm.set_mean_ablation(torch.randint(2, 60, (2, 4)), per_position=True)
    pm.ablation_record(seq_len=6)


def _optimal_without_length(ctx):
    pm = _pm(ablation="optimal")
    pm.set_mean_ablation(torch.randint(2, 60, (2, 4)))
    pm.ablation_record()


def _gate_sets_with_grad(ctx):
    pm = _pm()
    ids = torch.randint(2, 60, (2, 6))
    edges = torch.ones(2, pm.graph.num_edges, requires_grad=True)
    pm(ids, edges=edges, nodes=torch.ones(pm.graph.num_writers), record=pm.record(ids))


def _other_graph_circuit():
    g = edgeprune.Graph(1, 2, 2, 1)
    return edgeprune.Circuit(g, [], list(g.writers), edge_scores=torch.zeros(g.num_edges), score_kind="score")


def _same_pairs():
    """Examples whose corrupted input is the clean one: the empty circuit is the full model."""
    from edgeprune.tasks.base import Example, Task, TaskDataset
    return TaskDataset(Task(), [Example([2, 3, 4], [2, 3, 4], [2]) for _ in range(2)], pad_id=1)


E, M, R = errors.UserError, errors.MissingFile, errors.RunError
T = TypeError

CASES = [
    Case("__init__.py", "__getattr__", "has no attribute", AttributeError, "has no attribute 'nope'",
         lambda ctx: edgeprune.nope),
    Case("_ext.py", "ops", "reason()", R, "failed to load",
         lambda ctx: (ctx.mp.setattr("edgeprune._ext._state", {"ok": False, "reason": "edgeprune._C failed to load"}),
                      edgeprune._ext.ops())),
    # checkpoints
    Case("checkpoints.py", "load", "cannot read the checkpoint", E, r"cannot read the checkpoint .*checkpoint\.pt",
         _garbage_checkpoint),
    Case("checkpoints.py", "check", "does not say which run", E, "does not say which run it belongs to",
         lambda ctx: _checkpoint(ctx, {"step": 1})),
    Case("checkpoints.py", "check", "belongs to another run", E,
         r"belongs to another run: a: 2 in the checkpoint, 1 now",
         lambda ctx: _checkpoint(ctx, {"step": 1, "identity": {"a": 2, "settings": {"steps": 5}}})),
    Case("checkpoints.py", "check", "has finished", R, r"the run in run has finished \(5 of 5 steps\)",
         lambda ctx: _checkpoint(ctx, {"step": 5, "identity": {"a": 1, "settings": {"steps": 5}}})),
    # circuits and their folders
    Case("circuit.py", "Circuit.at_edges", "no learned scores", E, "no learned scores to rank edges by",
         lambda ctx: edgeprune.Circuit(_graph(), [], []).at_edges(1)),
    Case("circuit.py", "Circuit.at_edges", "is outside", E, r"k=1000 is outside \[0, 137\]",
         lambda ctx: _scored().at_edges(1000)),
    Case("circuit.py", "Circuit.at_sparsity", "sparsity must lie", E, r"sparsity must lie in \[0, 1\], got 1.5",
         lambda ctx: _scored().at_sparsity(1.5)),
    Case("circuit.py", "Circuit.check", "does not fit", E, r"does not fit .*1 of its edges are not in the graph, "
         r"e\.g\. a9\.h0 -> m9", lambda ctx: edgeprune.Circuit(_graph(), [("a9.h0", "m9")], []).check(_graph())),
    Case("circuit.py", "Circuit._read", "is not a circuit file", E, r"circuit\.json is not a circuit file",
         lambda ctx: edgeprune.Circuit.load(_replace_file(ctx, "circuit.json", b"{}"))),
    Case("circuit.py", "Circuit._read", "lists other edges", E, r"edges\.json lists other edges than",
         lambda ctx: edgeprune.Circuit.load(_replace_file(ctx, "edges.json", b'[["a0.h0", "m1"]]'))),
    Case("circuit.py", "Circuit._read", "{folder}: {error}", E, r"c: the circuit does not fit .*a9\.h0 -> m9",
         lambda ctx: edgeprune.Circuit.load(_saved(ctx, edgeprune.Circuit(_graph(), [("a9.h0", "m9")], [])))),
    Case("circuit.py", "_read_json", "is missing", M, r"edges\.json is missing", _missing_edges),
    Case("circuit.py", "_read_json", "not valid JSON", E, r"circuit\.json is not valid JSON",
         lambda ctx: edgeprune.Circuit.load(_replace_file(ctx, "circuit.json", b'{"graph": {'))),
    Case("circuit.py", "_read_tensors", "not a readable safetensors", E, "is not a readable safetensors file",
         lambda ctx: edgeprune.Circuit.load(_replace_file(ctx, "log_alphas.safetensors", b"\x00" * 16))),
    Case("circuit.py", "_read_scores", "the scores", E, r"the scores edge\.\S+ are missing, expected",
         lambda ctx: edgeprune.Circuit.load(_replace_file(ctx, "log_alphas.safetensors", _empty_safetensors()))),
    Case("folders.py", "read", "no {record}", M, "no circuit.json in",
         lambda ctx: edgeprune.Circuit.load(str(ctx.tmp))),
    Case("graph.py", "Graph.edge_mask", "not in this model's graph", E, r"1 edge\(s\) are not in this model's graph",
         lambda ctx: _graph().edge_mask([("a9.h0", "m9")])),
    # the command line
    Case("cli.py", "_sparsity", "not a number", argparse.ArgumentTypeError, "not a number: 'x'",
         lambda ctx: cli._sparsity("x")),
    Case("cli.py", "_sparsity", "str(error)", argparse.ArgumentTypeError, r"3.0 is outside \[0, 1.4\]",
         lambda ctx: cli._sparsity("3")),
    Case("cli.py", "_budget_fractions", "--budgets takes", E, r"--budgets takes fractions .* got \['x'\]",
         lambda ctx: _main("prune", "m", "ioi", "--budgets", "x", "--out", str(ctx.tmp))),
    Case("cli.py", "_check_no_foreign_circuits", "did not", E, r"sparsity-0\.5 holds a circuit that this command's "
         r"run \(.*run\) did not make", lambda ctx: (_scored().save(str(ctx.tmp / "sparsity-0.5")),
                                                   _main("prune", "m", "ioi", "--sparsity", "0.5", "--one-run",
                                                         "--out", str(ctx.tmp)))),
    Case("cli.py", "cmd_export", "already holds", E, r"already holds 1 file\(s\) \(x\.json\)", _export_twice),
    Case("cli.py", "_d_model", "pass --d-model", E, "does not record its model's width",
         lambda ctx: _main("export", str(_saved(ctx)), "--mib", str(ctx.tmp / "mib"))),
    Case("outputs.py", "_check", "is a folder, not a file", E, r"the drawing .* is a folder, not a file",
         lambda ctx: _main("draw", str(_saved(ctx)), "-o", str(ctx.tmp))),
    Case("outputs.py", "_check", "is a file, not a folder: remove", E, r"the output folder .*f is a file",
         lambda ctx: (_file(ctx, "f"), _main("attribute", "m", "ioi", "--out", str(ctx.tmp / "f")))),
    Case("outputs.py", "_check", "cannot be made below it", E, r"f is a file, not a folder: the output folder .*f/x "
         "cannot be made",
         lambda ctx: (_file(ctx, "f"), _main("attribute", "m", "ioi", "--out", str(ctx.tmp / "f" / "x")))),
    Case("outputs.py", "_check", "is not writable", E, r"cannot write the circuit folder .*: .* is not writable",
         lambda ctx: (ctx.mp.setattr("edgeprune.outputs.os.access", lambda path, mode: False),
                      _scored().save(str(ctx.tmp / "c")))),
    Case("folders.py", "read", "changed every time", R, "changed every time it was read",
         lambda ctx: (ctx.mp.setattr("edgeprune.folders._state", lambda folder, record: object()),
                      edgeprune.Circuit.load(_saved(ctx)))),
    Case("interrupts.py", "deferred.note", "KeyboardInterrupt", KeyboardInterrupt, "^$", _signalled_twice),
    Case("training.py", "Trainer._stop_if_signalled", "Interrupted", KeyboardInterrupt,
         "interrupted by SIGINT at step 1 of 4: nothing was saved", _interrupted_trainer),
    Case("cli.py", "_check_data", "neither a task", E, "'nope' is neither a task",
         lambda ctx: _main("prune", "m", "nope", "--sparsity", "0.5", "--out", str(ctx.tmp))),
    Case("cli.py", "cmd_eval", "does not say where", E, "does not say where its model",
         lambda ctx: _main("eval", str(_saved(ctx, edgeprune.Circuit(_graph(), [], []))), "ioi")),
    Case("cli.py", "cmd_demo", "--seeds must be", E, "--seeds must be at least 1, got 0",
         lambda ctx: _main("demo", "--seeds", "0")),
    Case("cli.py", "cmd_demo", "fewer than two seeds", R, "recovered for fewer than two seeds",
         lambda ctx: (ctx.mp.setattr("edgeprune.demo.recovery_rate", lambda n, steps, mode: {"reverse": [0]}),
                      _main("demo", "--seeds", "1", "--check"))),
    Case("cli.py", "cmd_demo", "not recovered exactly", R, "was not recovered exactly",
         lambda ctx: (ctx.mp.setattr("edgeprune.demo.run_demo", lambda out, seed, steps, mode: False),
                      _main("demo", "--check", "--out", str(ctx.tmp)))),
    Case("cli.py", "cmd_bench", "is not installed with the package", M, "the step benchmark .* is not installed",
         _bench_missing),
    Case("circuit.py", "load_run", "holds neither a circuit", M, "holds neither a circuit",
         lambda ctx: _main("curve", str(ctx.tmp))),
    # settings
    Case("config.py", "check_target", "is outside", E, r"edge_sparsity=3 is outside \[0, 1.4\]",
         lambda ctx: edgeprune.TrainConfig(edge_sparsity=3)),
    Case("config.py", "TrainConfig.validate", "must be positive", E, "steps and batch_size must be positive, got 0",
         lambda ctx: edgeprune.TrainConfig(edge_sparsity=0.5, steps=0).validate()),
    Case("config.py", "TrainConfig.validate", "threads must", E, "threads must be at least 1, got 0",
         lambda ctx: edgeprune.TrainConfig(edge_sparsity=0.5, threads=0).validate()),
    Case("config.py", "TrainConfig.validate", "is not one of", E, "ablation='x' is not one of",
         lambda ctx: edgeprune.TrainConfig(edge_sparsity=0.5, ablation="x").validate()),
    Case("config.py", "TrainConfig.validate", "no node target", E, "steers edges only and has no node target",
         lambda ctx: edgeprune.TrainConfig(edge_sparsity=0.9, path=True, node_sparsity=0.5)),
    Case("config.py", "TrainConfig.validate", "path_rate is", E, "path_rate is .* must be above 0, got 0",
         lambda ctx: edgeprune.TrainConfig(edge_sparsity=0.9, steer=True, path_rate=0)),
    Case("circuit.py", "Circuit._read", "must hold one score per edge", E, r"'ranking' must hold one score per edge",
         _short_ranking),
    Case("config.py", "TrainConfig.with_overrides", "unknown training option", T, "unknown training option.s. nope",
         lambda ctx: edgeprune.TrainConfig.with_overrides(None, {"edge_sparsity": 0.5, "nope": 1})),
    Case("config.py", "TrainConfig.with_overrides", "give the edge-sparsity", T, "give the edge-sparsity target",
         lambda ctx: edgeprune.TrainConfig.with_overrides(None, {})),
    # sharding
    Case("distributed.py", "decoder_layers", "FSDP is not supported", E, "FSDP is not supported for tracr",
         lambda ctx: distributed.decoder_layers(edgeprune.prunable(_tracr()).adapter)),
    Case("distributed.py", "apply_fsdp", "already sharded", R, "already sharded with FSDP", _sharded_twice),
    Case("distributed.py", "_fill_from_rank0", "rank 0 must hold", E, "rank 0 must hold the model's weights",
         _meta_on_rank0),
    # drawing
    Case("draw.py", "render", "cannot draw to", E, r"cannot draw to '.*x\.txt'",
         lambda ctx: draw.render(_scored(), str(ctx.tmp / "x.txt"))),
    Case("draw.py", "render", "was not found", R, "Graphviz's `dot` program was not found",
         lambda ctx: (ctx.mp.setattr("edgeprune.draw.shutil.which", lambda name: None),
                      draw.render(_scored(), str(ctx.tmp / "x.svg")))),
    Case("draw.py", "render", "failed to render", R, "Graphviz failed to render",
         lambda ctx: (ctx.mp.setattr("edgeprune.draw.shutil.which", lambda name: "false"),
                      draw.render(_scored(), str(ctx.tmp / "x.svg")))),
    # models
    Case("loading.py", "load_model", "cannot load the model", E, r"cannot load the model '.*' \(ValueError: ",
         lambda ctx: loading.load_model(str(ctx.tmp))),  # a folder without the model's files
    Case("loading.py", "load_config", "cannot read the config", E, r"cannot read the config of the model '.*' \(",
         lambda ctx: loading.load_config(str(ctx.tmp))),
    Case("loading.py", "_check_folder", "does not exist", M, r"the model folder '.*missing' does not exist",
         lambda ctx: loading.load_model(str(ctx.tmp / "missing"))),
    Case("provenance.py", "check_weights", "other weights", E, r"found on other weights than those of the model "
         r"given .*check_weights=False \(--other-weights\)", _other_weights),
    Case("models/prunable.py", "PrunableModel.__init__", "is not valid for", E,
         r"embedding_nodes=2 is not valid for llama models", lambda ctx: edgeprune.prunable(tiny("llama"),
                                                                                          embedding_nodes=2)),
    Case("models/ablations.py", "ablation_kind", "unknown ablation", E, "unknown ablation 'x'",
         lambda ctx: _pm(ablation="x")),
    Case("models/ablations.py", "Mean.record", "needs its means first", R,
         "mean ablation needs its means first", lambda ctx: _pm(ablation="mean").ablation_record()),
    Case("models/ablations.py", "Mean.record", "was computed for", E,
         "mean ablation was computed for 4 positions but the input has 6", _mean_too_short),
    Case("models/ablations.py", "Interchange.record", "needs corrupted_input_ids", E,
         "needs corrupted_input_ids", lambda ctx: _pm().ablation_record()),
    Case("models/prunable.py", "PrunableModel.forward", "the ablation record covers", E,
         "the ablation record covers 4 positions but the input has 6", _record),
    Case("models/forward.py", "gated_forward", "is not a delta stack kind", E,
         r"stack='buffer' is not a delta stack kind; choose one of \('delta', 'blocks'\)",
         lambda ctx: _pm()(torch.zeros(1, 3, dtype=torch.long), **dict(zip(("edges", "nodes"), _pm().circuit_gates())),
                           record=None, stack="buffer")),
    Case("models/families.py", "adapter_class", "cannot prune model_type", E, "cannot prune model_type='bert'",
         lambda ctx: families.adapter_class(SimpleNamespace(model_type="bert"))),
    Case("models/families.py", "adapter_for", "cannot prune {type(model)", E, r"cannot prune Linear \(model_type=None\)",
         lambda ctx: edgeprune.prunable(torch.nn.Linear(2, 2))),
    Case("models/gpt2.py", "GPT2Adapter.__init__", "reorder_and_upcast_attn", E,
         "reorder_and_upcast_attn=True is not supported",
         lambda ctx: edgeprune.prunable(tiny("gpt2", reorder_and_upcast_attn=True))),
    Case("models/tracr.py", "TracrTransformer.__init__.frozen", "shape", E, r"token_embed: shape \(1, 1\), expected",
         lambda ctx: tracr_model.TracrTransformer(*_tracr_weights(token_embed=torch.zeros(1, 1)))),
    Case("models/tracr.py", "TracrTransformer.__init__", "unknown output kind", E, "unknown output kind 'x'",
         lambda ctx: tracr_model.TracrTransformer(replace(_tracr_weights()[0], output_kind="x"),
                                                             _tracr_weights()[1])),
    Case("models/tracr.py", "TracrTransformer.embed_positions", "exceeds the compiled", E,
         "sequence length 99 exceeds the compiled",
         lambda ctx: _tracr().embed_positions(torch.zeros(1, 99, dtype=torch.long))),
    Case("ops/dispatch.py", "choose", "unknown edgeprune backend", E, "unknown edgeprune backend 'nope'",
         lambda ctx: edgeprune.ops.choose("mix", torch.device("cpu"), torch.float32, "nope")),
    Case("ops/dispatch.py", "choose", "cannot run", errors.Unsupported, "'cuda' .* cannot run mix on cpu float32",
         lambda ctx: edgeprune.ops.choose("mix", torch.device("cpu"), torch.float32, "cuda")),
    # planning
    Case("planning.py", "_config_of", "needs its 'model_type'", E, "a config dict needs its 'model_type'",
         lambda ctx: edgeprune.plan({"n_layer": 2}, 1, 8)),
    Case("planning.py", "_config_of", "plan() takes", T, r"plan\(\) takes a Hugging Face config.*got int",
         lambda ctx: edgeprune.plan(42, 1, 8)),
    Case("planning.py", "model_shape", "no memory calibration", E, "no memory calibration for tracr",
         lambda ctx: edgeprune.plan(_tracr(), 1, 8)),
    # tasks
    Case("tasks/__init__.py", "load", "no such file", E, "no such file: 'nope.jsonl'",
         lambda ctx: edgeprune.tasks.load("nope.jsonl", None)),
    Case("tasks/__init__.py", "load", "data must be", T, "data must be a task name.*got int",
         lambda ctx: edgeprune.tasks.load(42, None)),
    Case("tasks/base.py", "TaskDataset.batch", "from no examples", E, "cannot build a batch from no examples",
         lambda ctx: random_pairs().batch([])),
    Case("tasks/base.py", "TaskDataset.batch", "more than", E, "task example 0 has 6 tokens, more than pad_to=2",
         lambda ctx: random_pairs().batch([0], pad_to=2)),
    Case("tasks/base.py", "_check_example", "same length", E, "example 0: the clean input has 2 tokens but the "
         "corrupted input has 1", lambda ctx: edgeprune.tasks.TaskDataset(
             edgeprune.tasks.Task(), [edgeprune.tasks.Example([2, 3], [2], [1])], pad_id=1)),
    Case("tasks/base.py", "_check_example", "no loss positions", E, "example 0 has no loss positions",
         lambda ctx: edgeprune.tasks.TaskDataset(
             edgeprune.tasks.Task(), [edgeprune.tasks.Example([2, 3], [2, 4], [])], pad_id=1)),
    Case("tasks/base.py", "_check_example", "fall outside", E, r"loss positions \[5\] fall outside its 2 tokens",
         lambda ctx: edgeprune.tasks.TaskDataset(
             edgeprune.tasks.Task(), [edgeprune.tasks.Example([2, 3], [2, 4], [5])], pad_id=1)),
    Case("tasks/boolean_expressions.py", "evaluate", "not a boolean expression", E,
         "not a boolean expression: 'True True'",
         lambda ctx: edgeprune.tasks.boolean_expressions.evaluate("True True")),
    Case("tasks/boolean_expressions.py", "_not", "unbalanced", E, "unbalanced parentheses in '\\( True'",
         lambda ctx: edgeprune.tasks.boolean_expressions.evaluate("( True")),
    Case("tasks/boolean_expressions.py", "_not", "unexpected", E, "unexpected 'maybe' in 'maybe'",
         lambda ctx: edgeprune.tasks.boolean_expressions.evaluate("maybe")),
    Case("tasks/custom.py", "read_jsonl", "not valid JSON", E, r"pairs\.jsonl, line 2: not valid JSON",
         lambda ctx: ((ctx.tmp / "pairs.jsonl").write_text('{"clean": "a", "corrupted": "b"}\n{"clean\n'),
                      edgeprune.tasks.custom.read_jsonl(ctx.tmp / "pairs.jsonl"))),
    Case("tasks/custom.py", "dataset", "n must be", E, "n must be a positive number of examples, got 0",
         lambda ctx: _custom(_pair(CLEAN), n=0)),
    Case("tasks/custom.py", "dataset", "expected an object", E, "custom data, example 0: expected an object with string fields",
         lambda ctx: _custom([{"clean": 1}])),
    Case("tasks/custom.py", "dataset", "unknown split", E, "unknown split 'dev'",
         lambda ctx: _custom([_pair(CLEAN)[0] | {"split": "dev"}])),
    Case("tasks/custom.py", "dataset", "MissingSplit", edgeprune.tasks.MissingSplit, "has no 'test' examples",
         lambda ctx: _custom([_pair(CLEAN)[0] | {"split": "train"}], split="test")),
    Case("tasks/custom.py", "dataset", "is more than", E, "n=5 is more than the 1 'train' examples",
         lambda ctx: _custom(_pair(CLEAN), n=5)),
    Case("tasks/custom.py", "make_example", "must contain one", E, "'clean' must contain one <predict>answer",
         lambda ctx: _custom(_pair("Then Mary went home"))),
    Case("tasks/custom.py", "make_example", "no prompt before", E, "the clean text has no prompt before <predict>",
         lambda ctx: _custom(_pair("<predict>Mary</predict>"))),
    Case("tasks/custom.py", "make_example", "span is empty", E, "the <predict> span is empty",
         lambda ctx: _custom(_pair("Then Mary went <predict> </predict>"))),
    Case("tasks/custom.py", "make_example", "the corrupted prompt only", E, "'corrupted' must be the corrupted prompt",
         lambda ctx: _custom(_pair(CLEAN, "Then <predict>Anna</predict>"))),
    Case("tasks/custom.py", "make_example", "tokens change", E, "the prompt's tokens change when the answer follows",
         lambda ctx: _custom(_pair("Then Mary<predict>ann</predict>", "Then Anna"))),
    Case("tasks/custom.py", "make_example", "the clean prompt has", E, r"the clean prompt has \d+ tokens but the "
         "corrupted prompt has 2", lambda ctx: _custom(_pair(CLEAN, "Then Anna"))),
    Case("tasks/custom.py", "_counterfactual", "non-empty string", E, "'counterfactual' must be the corrupted "
         "prompt's answer", lambda ctx: _custom([_pair(CLEAN)[0] | {"counterfactual": 3}])),
    Case("tasks/custom.py", "_counterfactual", "merges with the prompt", E, "merges with the prompt's last token",
         lambda ctx: _custom([_pair(CLEAN.replace(" <predict>", "<predict> "))[0] | {"counterfactual": "John"}])),
    Case("tasks/custom.py", "_counterfactual", "same token as the answer", E, "starts with the same token",
         lambda ctx: _custom([_pair(CLEAN)[0] | {"counterfactual": " Mary"}])),
    Case("tasks/encoding.py", "Encoder.__init__", "needs a tokenizer", E, r"this task needs a tokenizer \(got None\)",
         lambda ctx: edgeprune.tasks.encoding.Encoder(None)),
    Case("tasks/encoding.py", "pad_id", "neither a pad token", E, "neither a pad token nor an EOS token",
         lambda ctx: edgeprune.tasks.encoding.pad_id(SimpleNamespace())),
    Case("tasks/greater_than.py", "digit_tokens", "greater-than needs", E, "greater-than needs a tokenizer whose",
         lambda ctx: edgeprune.tasks.greater_than.digit_tokens(_encoder())),
    Case("tasks/greater_than.py", "make_maker.make", "different lengths", edgeprune.tasks.splits.Drop,
         "clean and corrupted prompts tokenise to different lengths",
         lambda ctx: _greater_than_make("the year 1700", "the year")),
    Case("tasks/greater_than.py", "make_maker.make", "does not split", edgeprune.tasks.splits.Drop,
         "the start year does not split", lambda ctx: _greater_than_make("the year 1700 to the year 17",
                                                                         "the year 1799 to the year 17")),
    Case("tasks/metrics.py", "kl_per_example", "reduction must be", E, "reduction must be 'mean' or 'sum', got 'x'",
         lambda ctx: edgeprune.tasks.metrics.kl_per_example(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2),
                                                            torch.ones(1, 1, dtype=torch.bool), "x")),
    Case("tasks/mib.py", "dataset", "unknown MIB task", E, "unknown MIB task 'sva'; choose one of ioi",
         lambda ctx: edgeprune.tasks.mib.dataset("sva", _words(), path=ctx.tmp)),
    Case("tasks/mib.py", "dataset", "n must be", E, "n must be a positive number of examples, got 0",
         lambda ctx: edgeprune.tasks.mib.dataset("ioi", _words(), n=0, path=ctx.tmp)),
    Case("tasks/mib.py", "dataset", "usable examples", E, r"MIB ioi \(train\): 0 usable examples, none \(1 x clean",
         lambda ctx: (_mib_rows(ctx, [_mib_ioi("Then Mary went home", "Then Mary")]),
                      edgeprune.tasks.mib.dataset("ioi", _words(), path=ctx.tmp))),
    Case("tasks/mib.py", "_root", "ENVIRONMENT", E, "set EDGEPRUNE_MIB_DATA to the folder holding them",
         lambda ctx: (ctx.mp.delenv("EDGEPRUNE_MIB_DATA", raising=False), edgeprune.tasks.load("mib-ioi", _words()))),
    Case("tasks/mib.py", "read_rows", "no MIB dataset folder", errors.MissingFile, "no MIB dataset folder .*ioi",
         lambda ctx: edgeprune.tasks.mib.dataset("ioi", _words(), path=ctx.tmp)),
    Case("tasks/mib.py", "read_rows", "rows for MIB", edgeprune.tasks.MissingSplit,
         "no test rows for MIB's ioi under .*: expected test.jsonl",
         lambda ctx: (_mib_rows(ctx, []), edgeprune.tasks.mib.dataset("ioi", _words(), split="test", path=ctx.tmp))),
    Case("tasks/mib.py", "_parquet", "needs pyarrow", E, "is a parquet file, which needs pyarrow",
         lambda ctx: ((ctx.tmp / "ioi").mkdir(), (ctx.tmp / "ioi" / "train.parquet").write_bytes(b"PAR1"),
                      ctx.mp.setitem(__import__("sys").modules, "pyarrow.parquet", None),
                      edgeprune.tasks.mib.dataset("ioi", _words(), path=ctx.tmp))),
    Case("tasks/mib.py", "_example", "lacks what MIB reads", E, "lacks what MIB reads .KeyError: 's2_io_flip_counterfactual'",
         lambda ctx: (_mib_rows(ctx, [{"prompt": "Then Mary"}]), edgeprune.tasks.mib.dataset("ioi", _words(),
                                                                                                path=ctx.tmp))),
    Case("tasks/registry.py", "register", "already registered", E, "a task named 'ioi' is already registered",
         lambda ctx: edgeprune.tasks.register("ioi", lambda *a, **k: None)),
    Case("tasks/registry.py", "factory", "unknown task", E, "unknown task 'nope'; known tasks: ",
         lambda ctx: edgeprune.tasks.get("nope", None)),
    Case("tasks/splits.py", "check_split", "unknown split", E, "unknown split 'dev'; expected one of",
         lambda ctx: edgeprune.tasks.splits.check_split("dev")),
    Case("tasks/splits.py", "build", "n must be", E, "n must be a positive number of examples, got 0",
         lambda ctx: edgeprune.tasks.splits.build(_LongPrompts(), [], _words(), "train", 0, family="t",
                                                  fractions={"train": 1.0}, sizes={"train": 2})),
    Case("tasks/splits.py", "build", "the prompt is longer", E, "the prompt is longer than 1 tokens", _build),
    Case("tasks/splits.py", "build", "_shortfall", E, "could only build 0 train examples, but n=2 were asked", _build),
    Case("tasks/splits.py", "prompt_example", "different lengths", edgeprune.tasks.splits.Drop,
         "tokenise to different lengths", lambda ctx: edgeprune.tasks.splits.prompt_example(
             edgeprune.tasks.splits.Candidate(key="k", clean="Then Mary went home", corrupted="Then Anna"),
             _encoder())),
    Case("tasks/splits.py", "single_token", "merges with", edgeprune.tasks.splits.Drop,
         "the answer merges with the prompt's last token",
         lambda ctx: edgeprune.tasks.splits.single_token(_encoder(), _encoder().encode("Then Mary"), "Then Mary",
                                                         "ann", "answer")),
    Case("tasks/splits.py", "single_token", "is not a single token", edgeprune.tasks.splits.Drop,
         "the answer is not a single token",
         lambda ctx: edgeprune.tasks.splits.single_token(_encoder(), _encoder().encode("Then"), "Then",
                                                         " Mary went", "answer")),
    Case("tracr/programs.py", "check_name", "unknown Tracr program", E, "unknown Tracr program 'nope'",
         lambda ctx: edgeprune.tracr.load_model("nope")),
    Case("tracr/programs.py", "_read", "package data", M, "the package data for Tracr program 'reverse' is missing",
         _tracr_data_missing),
    Case("tracr/settings.py", "check_mode", "unknown Tracr demo mode", E, "unknown Tracr demo mode 'hot'",
         lambda ctx: edgeprune.tracr.settings.train_settings("reverse", "hot")),
    Case("tracr/tasks.py", "dataset", "unknown split", E, "unknown split 'dev' for tracr-reverse",
         lambda ctx: edgeprune.tracr.tasks.dataset("reverse", split="dev")),
    Case("tracr/tasks.py", "dataset", "must lie in", E, r"lengths \(99,\) must lie in 1\.\.",
         lambda ctx: edgeprune.tracr.tasks.dataset("reverse", lengths=[99])),
    Case("tracr/tasks.py", "dataset", "n must be positive", E, "n must be positive, got 0",
         lambda ctx: edgeprune.tracr.tasks.dataset("reverse", n=0)),
    # training
    Case("training.py", "Trainer.__init__", "dataset is empty", E, "the training dataset is empty",
         lambda ctx: training.Trainer(_pm(), random_pairs(n=0), edgeprune.TrainConfig(edge_sparsity=0.5))),
    Case("step.py", "FiniteGuard.check", "as is every non-finite step's", training.NonFiniteLoss,
         r"the loss became nan at step 0; .*no checkpoint was written yet", _nan_loss),
    Case("step.py", "FiniteGuard.check", "as is every non-finite step's", training.NonFiniteLoss,
         r"the gradient norm became nan with a finite loss .* at step 0", _nan_gradient),
    # families with norms on the attention's output: switches edgeprune refuses, named
    Case("models/gemma.py", "GemmaAdapter.__init__", "use_bidirectional_attention", errors.Unsupported,
         "use_bidirectional_attention=True is not supported",
         lambda ctx: edgeprune.prunable(mib_configs.tiny("google/gemma-2-2b", use_bidirectional_attention=True))),
    Case("models/gemma.py", "GemmaAdapter.__init__", "attention_bias=True", errors.Unsupported,
         "attention_bias=True is not supported",
         lambda ctx: edgeprune.prunable(mib_configs.tiny("google/gemma-2-2b", attention_bias=True))),
    Case("models/gemma.py", "GemmaAdapter.__init__", "attn_logit_softcapping set", errors.Unsupported,
         "Gemma 3 with attn_logit_softcapping set",
         lambda ctx: edgeprune.prunable(mib_configs.tiny("google/gemma-3-1b-pt", attn_logit_softcapping=50.0))),
    Case("models/olmo2.py", "Olmo2Adapter.__init__", "attention_bias=True", errors.Unsupported,
         "Olmo2ForCausalLM with attention_bias=True",
         lambda ctx: edgeprune.prunable(mib_configs.tiny("allenai/OLMo-2-0425-1B", attention_bias=True))),
    Case("graph.py", "Graph.__post_init__", "attention_writers=", E, "attention_writers='head'",
         lambda ctx: edgeprune.Graph(2, 4, 2, 1, attention_writers="head")),
    Case("graph.py", "Graph.__post_init__", "kv_edges=", E, "kv_edges='heads': choose one of",
         lambda ctx: edgeprune.Graph(2, 4, 2, 1, kv_edges="heads")),
    # MIB's format and budgets
    Case("mib.py", "MIBGraph.budget_edges", "fraction of edges kept", E, "a budget is a fraction of edges kept",
         lambda ctx: _mib().budget_edges(1.5)),
    Case("mib.py", "MIBGraph.top_edges", "MIB's edge count", E, r"n=1000 is outside \[0, ",
         lambda ctx: _mib().top_edges(torch.zeros(_mib().n_forward, _mib().n_backward), 1000)),
    Case("mib.py", "MIBGraph.write", "json or pt", E, "MIB circuit files are json or pt, not 'xml'",
         lambda ctx: _scored().to_mib(str(ctx.tmp / "c.xml"), format="xml")),
    Case("mib.py", "MIBGraph.read", "no MIB circuit file", M, "no MIB circuit file at",
         lambda ctx: edgeprune.Circuit.from_mib(str(ctx.tmp / "none.json"), _graph())),
    Case("mib.py", "MIBGraph.read", "missing", E, "not a MIB circuit file .missing cfg",
         lambda ctx: (torch.save({"edges_scores": 1}, ctx.tmp / "c.pt"),
                      edgeprune.Circuit.from_mib(str(ctx.tmp / "c.pt"), _graph()))),
    Case("mib.py", "MIBGraph.read", "edge tensors are", E, r"edge tensors are \(2, 2\)",
         lambda ctx: (torch.save({"cfg": {"n_layers": 2, "n_heads": 4}, "edges_scores": torch.zeros(2, 2),
                                  "edges_in_graph": torch.zeros(2, 2)}, ctx.tmp / "c.pt"),
                      edgeprune.Circuit.from_mib(str(ctx.tmp / "c.pt"), _graph()))),
    Case("mib.py", "MIBGraph.read", "not valid JSON", E, "not valid JSON",
         lambda ctx: ((ctx.tmp / "c.json").write_text("{"), edgeprune.Circuit.from_mib(str(ctx.tmp / "c.json"), _graph()))),
    Case("mib.py", "MIBGraph.read", "needs 'cfg' and 'edges'", E, "it needs 'cfg' and 'edges'",
         lambda ctx: ((ctx.tmp / "c.json").write_text("[]"), edgeprune.Circuit.from_mib(str(ctx.tmp / "c.json"), _graph()))),
    Case("mib.py", "MIBGraph.read", "is not in this model's MIB graph", E, "'m1->m0' is not in this model's MIB graph",
         lambda ctx: ((ctx.tmp / "c.json").write_text('{"cfg": {"n_layers": 2, "n_heads": 4}, "edges": {"m1->m0": {}}}'),
                      edgeprune.Circuit.from_mib(str(ctx.tmp / "c.json"), _graph()))),
    Case("mib.py", "MIBGraph._check_cfg", "but this model has", E, "made for n_layers=3, but this model has 2",
         lambda ctx: ((ctx.tmp / "c.json").write_text('{"cfg": {"n_layers": 3}, "edges": {}}'),
                      edgeprune.Circuit.from_mib(str(ctx.tmp / "c.json"), _graph()))),
    Case("mib.py", "MIBGraph._check_cfg", "parallel_attn_mlp", E, "parallel_attn_mlp=True, but this model's graph",
         lambda ctx: ((ctx.tmp / "c.json").write_text('{"cfg": {"parallel_attn_mlp": true}, "edges": {}}'),
                      edgeprune.Circuit.from_mib(str(ctx.tmp / "c.json"), _graph()))),
    Case("mib.py", "for_budget", "no circuits to choose", E, "no circuits to choose a budget's circuit from",
         lambda ctx: mib.for_budget({}, 0.1)),
    Case("circuit.py", "Circuit.keep_scores", "no scores to rank", E, "no scores to rank edges by",
         lambda ctx: edgeprune.Circuit(_graph(), [], []).keep_scores()),
    # faithfulness, budgets, comparisons, plots
    Case("curves.py", "metric_values", "no counterfactual answer", E, "no counterfactual answer",
         lambda ctx: edgeprune.faithfulness(_pm(), torch.zeros(_pm().graph.num_edges), random_pairs(n=2),
                                            budgets=[1.0])),
    Case("curves.py", "faithfulness", "unknown metric", E, "unknown metric 'acc'",
         lambda ctx: edgeprune.faithfulness(_pm(), torch.zeros(1), random_pairs(n=2), metric="acc")),
    Case("curves.py", "faithfulness", "increasing fractions", E, "budgets must be increasing fractions",
         lambda ctx: edgeprune.faithfulness(_pm(), torch.zeros(1), random_pairs(n=2), budgets=[0.5, 0.1])),
    Case("curves.py", "faithfulness", "faithfulness is undefined", E, "faithfulness is undefined",
         lambda ctx: edgeprune.faithfulness(_pm(), torch.zeros(_pm().graph.num_edges), _same_pairs(),
                                            budgets=[1.0], metric="kl")),
    Case("curves.py", "circuit_faithfulness", "unknown metric", E, "unknown metric 'acc'",
         lambda ctx: curves.circuit_faithfulness(
             _pm(), _scored(), random_pairs(n=2), metric="acc")),
    Case("loading.py", "prunable_for", "was built with", E,
         "the model was built with ablation='zero' but faithfulness asked for 'corrupted'",
         lambda ctx: edgeprune.faithfulness(_pm(ablation="zero"), torch.zeros(1), random_pairs(n=2))),
    # every refusal an ablation kind declares, through its use: tests/test_ablations.py
    Case("models/ablations.py", "Ablation.check", "why", E,
         "faithfulness ablates with 'corrupted', 'mean' or 'optimal', not 'zero'",
         lambda ctx: edgeprune.faithfulness(_pm(), torch.zeros(1), random_pairs(n=2), ablation="zero")),
    Case("models/ablations.py", "Optimal.prepare_evaluation", "learned constants", E,
         "evaluates with the circuit's learned constants",
         lambda ctx: edgeprune.faithfulness(_gpt2(), _scored(), random_pairs(n=2), ablation="optimal")),
    # attribution, warm start, optimal ablation, the matched objective
    Case("attribution.py", "attribute", "unknown attribution method", E, "unknown attribution method 'eap-ig'",
         lambda ctx: _attribute("eap-ig")),
    Case("attribution.py", "attribute", "unknown metric", E, "unknown metric 'acc'",
         lambda ctx: _attribute("eap", metric="acc")),
    Case("attribution.py", "attribute", "steps must be", E, "steps must be at least 1, got 0",
         lambda ctx: _attribute("eap-ig-inputs", steps=0)),
    Case("attribution.py", "attribute", "exact_sets must be", E, "exact_sets must be 0 .* got -1",
         lambda ctx: _attribute("exact", exact_sets=-1)),
    Case("attribution.py", "attribute", "dataset is empty", E, "the attribution dataset is empty",
         lambda ctx: _attribute("eap", data=_answers(0))),
    Case("warmstart.py", "init_scores", "computed on the graph", E, "computed on the graph",
         lambda ctx: _warm(_other_graph_circuit())),
    Case("warmstart.py", "init_scores", "init must be a Circuit", E, "not list",
         lambda ctx: _warm([1.0, 2.0])),
    Case("warmstart.py", "init_scores", "scores but the model's graph", E, "init has 3 scores but the model's graph has",
         lambda ctx: _warm(torch.ones(3))),
    Case("warmstart.py", "init_scores", "must be finite", E, "init scores must be finite",
         lambda ctx: _warm(torch.full((_graph().num_edges,), float("nan")))),
    Case("warmstart.py", "init_log_alpha", "starting closed", E, r"in \(0, 1\); got 1.0",
         lambda ctx: _warm(torch.ones(_graph().num_edges), init_sparsity=1.0)),
    Case("warmstart.py", "init_log_alpha", "temperature must be", E, "temperature must be positive, got 0",
         lambda ctx: _warm(torch.ones(_graph().num_edges), init_temperature=0)),
    Case("models/prunable.py", "PrunableModel.set_optimal_ablation", "build it with", E,
         "ablates with 'corrupted'; build it with ablation='optimal'", lambda ctx: _pm().set_optimal_ablation({})),
    Case("models/ablations.py", "Optimal.record", "starts from the means", R,
         "optimal ablation starts from the means", lambda ctx: _pm(ablation="optimal").ablation_record(seq_len=4)),
    Case("models/ablations.py", "Optimal.record", "has constants for", E,
         "has constants for 4 positions but the input has 6", _optimal_too_short),
    Case("models/ablations.py", "Optimal.record", "needs a length", E,
         "optimal ablation's record needs a length", _optimal_without_length),
    Case("models/delta_stack.py", "read_sets", "gate sets", E, "are for forwards without gradients",
         _gate_sets_with_grad),
    Case("training.py", "check_objective", "objective='logit_diff' needs", E, "needs a counterfactual answer",
         lambda ctx: _trainer(objective="logit_diff")),
    Case("training.py", "check_objective", "reads answers within", E, r"answer tokens \[.*\] are not in it",
         _answers_outside_vocab),
    Case("compiling.py", "adamw_step", "does not implement", E, "compiled step's AdamW does not implement amsgrad",
         lambda ctx: compiling.adamw_step(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], amsgrad=True))),
    Case("training.py", "Trainer.__init__", "needs a model whose decoder layers recompute", E,
         r"checkpointing=True needs a model whose decoder layers recompute.*set_layer_runner",
         lambda ctx: _trainer(checkpointing=True)),
    Case("compiling.py", "use_compile", "is not possible here", E,
         r"compile='on' is not possible here: this run recomputes its decoder layers in backward",
         lambda ctx: _trainer(compile="on", checkpointing=True)),
    Case("models/ablations.py", "Optimal.prepare_evaluation", "this circuit", E, "this circuit has none",
         lambda ctx: edgeprune.evaluate(_pm(ablation="optimal"), edgeprune.Circuit(_graph(), [], []),
                                        random_pairs(n=2))),
    Case("budgets.py", "parse_budgets", "increasing fractions", E, "budgets must be increasing fractions of edges kept",
         lambda ctx: edgeprune.train_budgets(_gpt2(), random_pairs(n=2), budgets=[0.0])),
    Case("budgets.py", "train_budgets", "NO_INPUT_NODE", E, "no embedding node .* pass embedding_nodes=1",
         lambda ctx: edgeprune.train_budgets(tiny("llama"), random_pairs(n=2), budgets=[0.5], steps=1)),
    Case("mib.py", "MIBGraph.read", "to hold them", E, "this graph has no embedding node to hold them",
         lambda ctx: edgeprune.Circuit.from_mib(str(ctx.tmp / "none.json"), edgeprune.Graph(1, 2, 2, 0))),
    Case("mib.py", "MIBGraph.scores_from", "NO_INPUT_SCORES", E, r"without embedding nodes .*\(embedding_nodes=1",
         lambda ctx: mib.MIBGraph(edgeprune.Graph(1, 2, 2, 0)).scores_from(torch.zeros(1))),
    Case("comparison.py", "compare", "at least two circuits", E, "compare needs at least two circuits, got 1",
         lambda ctx: edgeprune.compare(_scored())),
    Case("comparison.py", "compare", "different graphs", E, "compare circuits of one model",
         lambda ctx: edgeprune.compare(_scored(), _other_graph_circuit())),
    Case("comparison.py", "consensus", "must lie in", E, r"k=3 must lie in \[1, 2\]",
         lambda ctx: edgeprune.consensus([_scored(), _scored()], 3)),
    Case("comparison.py", "consensus", "different graphs", E, "a consensus needs one model's circuits",
         lambda ctx: edgeprune.consensus([_scored(), _other_graph_circuit()], 1)),
    Case("plotting.py", "plot_curves", "needs matplotlib", errors.Unsupported, "plotting needs matplotlib",
         lambda ctx: (ctx.mp.setitem(__import__("sys").modules, "matplotlib", None),
                      plotting.plot_curves([], str(ctx.tmp / "p.png")))),
    Case("plotting.py", "check_plot_path", "use a .png or .svg", E, "use a .png or .svg file name",
         lambda ctx: plotting.plot_curves([], str(ctx.tmp / "p.gif"))),
]

# Sites no user can reach, each with why (at most 10).
ALLOWED = {
    ("models/delta_stack.py", "DeltaStack.write", "a recomputed layer"): "internal invariant of the gated forward "
                                                                         "(rows written once, in order)",
    ("models/delta_stack.py", "DeltaStack.write", "in order"): "internal invariant of the gated forward",
    ("models/delta_stack.py", "DeltaStack.read", "ran before writer"): "internal invariant of the gated forward",
    ("models/delta_stack.py", "BlockStack.write", "in order"): "internal invariant of the traced gated forward",
    ("models/delta_stack.py", "BlockStack._prefix", "does not end at"): "internal invariant of the traced gated "
                                                                        "forward (a reader's prefix is whole layers)",
    ("cli.py", "_option_type", "no command-line type"): "raised at import-time parser building for a TrainConfig "
                                                         "field of a new type: a developer's error, not a user's",
}


def _empty_safetensors() -> bytes:
    from safetensors.torch import save
    return save({"other": torch.zeros(1)})


# ---------------------------------------------------------------------------- running the cases

_RUN: dict[str, set] = {}


def run_case(case: Case) -> set:
    """The package lines the case ran; its exception must match its type and message."""
    if case.id not in _RUN:
        lines: set = set()
        with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
            with lines_run(lines), pytest.raises(case.error, match=case.match):
                case.trigger(SimpleNamespace(tmp=Path(tmp), mp=mp))
        _RUN[case.id] = lines
    return _RUN[case.id]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_error_path(case):
    site = find(all_sites(), case.path, case.function, case.fragment)
    ran = run_case(case)
    assert any((site.path, line) in ran for line in range(site.first, site.last + 1)), \
        f"{case.id}: the exception matched, but it was not raised at {site}"


def test_every_error_site_is_tested():
    sites = all_sites()
    allowed = {find(sites, *key) for key in ALLOWED}
    assert len(ALLOWED) <= 10
    tested = set()
    for case in CASES:
        site = find(sites, case.path, case.function, case.fragment)
        ran = run_case(case)
        if any((site.path, line) in ran for line in range(site.first, site.last + 1)):
            tested.add(site)
    untested = [s for s in sites if s not in tested and s not in allowed]
    reachable = len(sites) - len(allowed)
    print(f"error paths tested: {len(tested)} of {reachable} ({len(allowed)} unreachable, allowed)")
    assert not untested, "error sites with no case in tests/test_error_paths.py:\n" + "\n".join(map(str, untested))
    assert len(tested) == reachable


def test_the_census_finds_raises_and_error_helper_calls():
    source = '''
def fail(x):
    raise ValueError(x)

class A:
    def f(self, y):
        if y:
            raise KeyError("k")
        try:
            pass
        except OSError:
            raise
        fail("no")
        return 1
'''
    sites = sites_in(source, "m.py")
    assert [(s.function, s.first, s.source) for s in sites] == [
        ("fail", 3, "raise ValueError(x)"), ("A.f", 8, 'raise KeyError("k")'), ("A.f", 13, 'fail("no")')]
    with pytest.raises(LookupError, match="2 sites in m.py:A.f contain ''"):
        find(sites, "m.py", "A.f", "")
