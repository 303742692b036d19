"""edgeprune.plan: the estimate against measurements on the CPU, and CodeLlama-13B's numbers.

Measured: what autograd saves (SavedTensors, per layer, counted from the code path by the plan) and
the peak of live storages during a real training step (the storage-tracking dispatch mode of
benchmarks/_memory.py), on small configs shaped like the targets: a Llama with H = K and an MLP of
2.7 D at sequence 64 (CodeLlama-13B's proportions), a GPT-2 with MLP 4 D, Pythia's, two Gemma and one
OLMo 2 shape.
"""
import importlib.util
import pathlib
import sys
from dataclasses import replace

import edgeprune
import pytest
import torch
from edgeprune.recomputation import SavedTensors, checkpointed
from edgeprune.planning import layer_saved_bytes
from transformers import (AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig, GPT2Config, GPTNeoXConfig, LlamaConfig,
                          Olmo2Config, Qwen3Config)

GIB = 2 ** 30
VOCAB = 61
SPECIAL = dict(bos_token_id=2, eos_token_id=1, pad_token_id=0)


def _bench_module(name):
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}_plan", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


CpuMemoryTracker = _bench_module("_memory").CpuMemoryTracker
TrainStep = _bench_module("train_step").TrainStep

SHAPES = {  # (config, batch, seq)
    "llama": (lambda: LlamaConfig(num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=16, hidden_size=256,
                                  intermediate_size=688, vocab_size=VOCAB, max_position_embeddings=128), 1, 64),
    "gpt2": (lambda: GPT2Config(n_layer=4, n_head=10, n_embd=160, n_positions=128, vocab_size=VOCAB, bos_token_id=0,
                                eos_token_id=0), 4, 64),
    "gpt_neox": (lambda: GPTNeoXConfig(num_hidden_layers=4, num_attention_heads=8, hidden_size=256,  # Pythia's shape
                                       intermediate_size=1024, vocab_size=VOCAB, max_position_embeddings=128,
                                       use_parallel_residual=True, rotary_pct=0.25), 2, 64),
    # Gemma-2-2B's and Gemma-3-1B's proportions (H dh = 0.89 D; MLP 4 D and 6 D) and OLMo-2-1B's. The
    # soft-cap is off: the CPU then runs SDPA, as the GPU runs FlexAttention, instead of the math path.
    "gemma2": (lambda: Gemma2Config(num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4, head_dim=32,
                                    hidden_size=288, intermediate_size=1152, vocab_size=VOCAB, sliding_window=32,
                                    attn_logit_softcapping=None, max_position_embeddings=128, **SPECIAL), 2, 64),
    "gemma3": (lambda: Gemma3TextConfig(num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1, head_dim=64,
                                        hidden_size=288, intermediate_size=1728, vocab_size=VOCAB, sliding_window=32,
                                        max_position_embeddings=128, **SPECIAL), 2, 64),
    "olmo2": (lambda: Olmo2Config(num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=16, hidden_size=256,
                                  intermediate_size=1024, vocab_size=VOCAB, max_position_embeddings=128, **SPECIAL), 2, 64),
    # Qwen3-0.6B's proportions (H dh = 2 D, K = H / 2, MLP 3 D): a Llama-family model with per-head q and k norms
    "qwen3": (lambda: Qwen3Config(num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                                  hidden_size=128, intermediate_size=384, vocab_size=VOCAB, max_position_embeddings=128,
                                  **SPECIAL), 2, 64),
}


def _model(family, dtype):
    torch.manual_seed(0)
    cfg = SHAPES[family][0]()
    return AutoModelForCausalLM.from_config(cfg).to(dtype).eval()


def _ids(batch, seq, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, VOCAB, (batch, seq), generator=g), torch.randint(2, VOCAB, (batch, seq), generator=g)


# every mode for the first three families; for the families with norms on the branch outputs, each
# dtype and each reader mode once per family
SAVED_CASES = [(f, d, r) for f in ("llama", "gpt2", "gpt_neox") for d in (torch.float32, torch.bfloat16)
               for r in (True, False)] + \
              [("gemma2", torch.float32, True), ("gemma2", torch.bfloat16, False), ("gemma3", torch.bfloat16, True),
               ("gemma3", torch.float32, False), ("olmo2", torch.float32, True), ("olmo2", torch.bfloat16, False),
               ("qwen3", torch.float32, True), ("qwen3", torch.bfloat16, False)]


@pytest.mark.parametrize("family,dtype,recompute_readers", SAVED_CASES)
def test_saved_activations_formula_matches_autograd(family, dtype, recompute_readers):
    model = _model(family, dtype)
    _, batch, seq = SHAPES[family]
    pm = edgeprune.prunable(model)
    ids, cids = _ids(batch, seq)
    record = pm.record(cids)
    edges, nodes = pm.gates.sample(0, 0)
    pos = torch.full((batch, 1), seq - 1)
    cached = [t for name in ("embeds", "ctx", "mlp", "resid_pre", "resid_mid") for t in getattr(record, name)]
    with SavedTensors(exclude=list(model.parameters()) + list(pm.gates.parameters()) + cached) as saved:
        pm(ids, positions=pos, edges=edges, nodes=nodes, record=record, recompute_readers=recompute_readers)
    per_layer = layer_saved_bytes(edgeprune.plan(model, batch, seq, dtype).shape, batch, seq, dtype,
                                  readers_saved=not recompute_readers)
    # the layers' saved tensors, plus a little for the final read and the gates
    assert 0.98 * 4 * per_layer <= saved.bytes <= 1.03 * 4 * per_layer
    pm.set_layer_runner(checkpointed(pm.layer_runner))
    with SavedTensors(exclude=list(model.parameters()) + list(pm.gates.parameters())) as saved_ck:
        pm(ids, positions=pos, edges=edges, nodes=nodes, record=record, recompute_readers=recompute_readers)
    assert saved_ck.bytes < 0.05 * saved.bytes


def test_qwen3_shape_counts_its_query_and_key_norms():
    """Qwen3 runs on the Llama adapter, whose structure says it norms each head's query and key:
    the planner counts those norms' fp32 inputs and rms where the readers are saved (a Llama of
    the same shape has none; recomputed readers recompute them too)."""
    _, batch, seq = SHAPES["qwen3"]
    shape = edgeprune.planning.model_shape(SHAPES["qwen3"][0]())
    assert shape.family == "llama" and shape.structure.qk_norm == "head"
    assert edgeprune.planning.model_shape(SHAPES["llama"][0]()).structure.qk_norm is None
    without = replace(shape, structure=replace(shape.structure, qk_norm=None))
    norms = (shape.heads + shape.kv_heads) * batch * seq * (shape.head_dim + 1) * 4
    for readers_saved, counted in ((True, norms), (False, 0)):
        assert layer_saved_bytes(shape, batch, seq, torch.float32, readers_saved) - \
            layer_saved_bytes(without, batch, seq, torch.float32, readers_saved) == counted


def _measured_step_peak(model, batch, seq, checkpointing, recompute_readers):
    """Peak bytes of storages created by one Trainer step (weights, caches and data pre-exist)."""
    ids, cids = _ids(batch, seq)
    step = TrainStep.build(model, ids, cids, torch.full((batch,), seq - 1), checkpointing=checkpointing,
                           recompute_readers=recompute_readers)
    t = step.trainer
    t.step()  # the optimiser's state exists from here on
    resident = [*model.parameters(), *model.buffers(), *t.pm.gates.parameters(), *t.pressure.parameters(),
                *t.data.tensors()]
    resident += [v for s in t.train_step.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    with CpuMemoryTracker() as tracker:
        tracker.ignore(*resident)
        t.step()
    return tracker.peak


CASES = [("llama", torch.bfloat16, True, True), ("llama", torch.bfloat16, False, True),
         ("llama", torch.float32, True, True), ("gpt2", torch.float32, True, True),
         ("gpt2", torch.float32, False, True), ("llama", torch.bfloat16, False, False),
         ("gpt2", torch.float32, False, False), ("gpt_neox", torch.float32, True, True),
         ("gpt_neox", torch.bfloat16, False, True), ("gpt_neox", torch.float32, False, False),
         ("gemma2", torch.bfloat16, False, True), ("gemma3", torch.float32, True, False),
         ("olmo2", torch.bfloat16, False, True), ("olmo2", torch.float32, True, False)]


@pytest.mark.parametrize("family,dtype,checkpointing,recompute_readers", CASES)
def test_step_peak_estimate_matches_cpu_measurement(family, dtype, checkpointing, recompute_readers):
    _, batch, seq = SHAPES[family]
    model = _model(family, dtype)
    measured = _measured_step_peak(model, batch, seq, checkpointing, recompute_readers)
    p = edgeprune.plan(model, batch, seq, dtype, checkpointing=checkpointing, recompute_readers=recompute_readers)
    per_example = p.parts["ablation records"] // (2 * batch)      # cached for the batch + the step's copy
    resident = p.parts["weights"] + p.parts["targets"] + batch * per_example
    estimate = p.peak_bytes - resident
    assert estimate == pytest.approx(measured, rel=0.10), (estimate, measured, p.parts)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_accepts_configs_models_dicts_and_counts_on_meta(family):
    model = _model(family, torch.float32)
    n = sum(p.numel() for p in model.parameters())      # GPT-2's tied unembedding counted once
    cfg = model.config
    as_dict = cfg.to_dict()
    for obj in (model, cfg, as_dict, edgeprune.prunable(model)):
        shape = edgeprune.plan(obj, 2, 8).shape
        assert shape.params == n and shape.family == family
        assert shape.layer_params == sum(p.numel() for p in (model.transformer.h if family == "gpt2"
                                                             else model.model.layers)[0].parameters())
    with pytest.raises(ValueError, match="model_type"):
        edgeprune.plan({"hidden_size": 8}, 1, 1)


CODELLAMA_13B = {"model_type": "llama", "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 40,
                     "hidden_size": 5120, "intermediate_size": 13824, "vocab_size": 32016}


def test_codellama_13b_estimate():
    """The 13B Llama shape (CodeLlama-13B's layout, built on the meta device only), batch 1 x 512, bf16."""
    def plan(checkpointing, recompute_readers, **kw):
        return edgeprune.plan(CODELLAMA_13B, 1, 512, torch.bfloat16, checkpointing=checkpointing,
                              recompute_readers=recompute_readers, gpu_memory_gib=80, **kw)
    ck = plan(True, True)
    assert ck.shape.params == 13_016_028_160
    assert ck.parts["weights"] == 13_016_028_160 * 2
    assert ck.parts["delta stack"] == ck.parts["delta gradient"] == 1640 * 512 * 5120 * 2   # 8.0 GiB each
    assert 44 < ck.peak_gib < 46 and ck.fits                                               # about 45.0 GiB
    # attention readers recomputed (the trainer's default): no layer checkpointing needed on 80 GB
    lean = plan(False, True)
    assert 46 < lean.peak_gib < 49 and lean.fits                                           # about 47.7 GiB
    # readers kept for backward, no checkpointing: 40 x 120 fp32 reader inputs of 1 x 512 x 5120
    full = plan(False, False)
    assert 90 < full.peak_gib < 97 and not full.fits and "fits a 141" in full.verdict(141)  # about 93.5 GiB
    assert 44 < plan(True, False).peak_gib < 47                                             # about 45.5 GiB
    # the paper's setting (method.md 8): 32 GPUs, batch 1 each at S = 64, checkpointing, CPU offload
    paper = edgeprune.plan(CODELLAMA_13B, 32, 64, torch.bfloat16, n_gpus=32, checkpointing=True, cpu_offload=True,
                           examples=8000)
    assert paper.parts["delta stack"] == 1640 * 64 * 5120 * 2                               # 1.0 GiB
    assert paper.peak_gib < 6
    text = str(ck)
    assert "delta stack" in text and "peak (allocated)" in text and "fits a 80 GiB card" in text


# The driver's figures for the two cards (H100 80 GB: 81,559 MiB; H200 141 GB: 143,771 MiB).
CARDS = {"H100": 81_559 / 1024, "H200": 143_771 / 1024}


def mib_table_rows() -> list[str]:
    """README's planner table for MIB's four models (one GPU, default settings, checkpointing off / on)."""
    from helpers.mib import MIB_FOUR, PUBLISHED
    rows = []
    for name in MIB_FOUR:
        for dtype, label in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            for batch, seq in ((32, 64), (8, 128)):
                off, on = (edgeprune.plan(PUBLISHED[name], batch, seq, dtype, checkpointing=ck).needed_gib
                           for ck in (False, True))
                verdicts = ["fits" if off <= gib else "with checkpointing" if on <= gib else "no"
                            for gib in CARDS.values()]
                rows.append(f"| {name} | {label} | {batch} x {seq} | {off:.1f} / {on:.1f} | {verdicts[0]} | {verdicts[1]} |")
    return rows


def test_readme_table_of_mib_models():
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [row for row in mib_table_rows() if row not in readme]
    assert not missing, "README's planner table is out of date; its rows now read:\n" + "\n".join(mib_table_rows())


def test_one_attention_writer_per_layer_shrinks_the_stack():
    """Gemma-2-2B with a layer's attention as one writer: W = 2L = 52 rows instead of 234."""
    from helpers.mib import PUBLISHED
    heads, layer = (edgeprune.plan(PUBLISHED["google/gemma-2-2b"], 8, 128, torch.bfloat16, attention_writers=w)
                    for w in ("heads", "layer"))
    assert heads.parts["delta stack"] == 234 * 8 * 128 * 2304 * 2
    assert layer.parts["delta stack"] == 52 * 8 * 128 * 2304 * 2
    assert layer.parts["gates, optimiser"] < heads.parts["gates, optimiser"] / 4


@pytest.mark.parametrize("family,recompute_readers", [("gemma2", True), ("gemma3", False)])
def test_saved_activations_with_key_and_value_readers_per_query_head(family, recompute_readers):
    """kv_edges="query" on grouped-query shapes (8 heads / 4 KV, 4 / 1): the formula against autograd."""
    model = _model(family, torch.float32)
    _, batch, seq = SHAPES[family]
    pm = edgeprune.prunable(model, kv_edges="query")
    ids, cids = _ids(batch, seq)
    record = pm.record(cids)
    edges, nodes = pm.gates.sample(0, 0)
    cached = [t for name in ("embeds", "ctx", "mlp", "resid_pre", "resid_mid") for t in getattr(record, name)]
    with SavedTensors(exclude=list(model.parameters()) + list(pm.gates.parameters()) + cached) as saved:
        pm(ids, positions=torch.full((batch, 1), seq - 1), edges=edges, nodes=nodes, record=record,
           recompute_readers=recompute_readers)
    plan = edgeprune.plan(model, batch, seq, torch.float32, kv_edges="query")
    per_layer = layer_saved_bytes(plan.shape, batch, seq, torch.float32, readers_saved=not recompute_readers,
                                  kv_edges="query")
    assert 0.98 * 4 * per_layer <= saved.bytes <= 1.03 * 4 * per_layer
    assert per_layer > layer_saved_bytes(plan.shape, batch, seq, torch.float32, readers_saved=not recompute_readers)
    grouped = edgeprune.plan(model, batch, seq, torch.float32)
    assert plan.shape.kv_heads < plan.shape.heads and plan.parts["gates, optimiser"] > grouped.parts["gates, optimiser"]
