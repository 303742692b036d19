"""The naive reference baseline (benchmarks/naive_reference.py) is a correct GPT-2 and saves what the
reference saves: (2L+1) stack-sized tensors plus corr_x (method.md 2.6). Deterministic counts only."""
import importlib.util
import pathlib
import sys

import pytest
import torch
from transformers import GPT2LMHeadModel

_PATH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "naive_reference.py"
_spec = importlib.util.spec_from_file_location("_bench_naive_reference", _PATH)
nr = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = nr
_spec.loader.exec_module(nr)

V, B, S = 101, 2, 8


def _hf(layers, heads=4, width=64, seed=0):
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(nr.gpt2_config(layers, heads, width, vocab_size=V, n_positions=32)).eval()
    with torch.no_grad():  # give every writer (biases, LN) a visible effect
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _ids(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, S), generator=g)


def _set_all_log_alphas(model, value):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "log_alpha" in n:
                p.fill_(value)


@pytest.mark.parametrize("layers,emb", [(2, True), (3, True), (2, False)])
def test_all_gates_one_is_the_hf_model(layers, emb):
    hf = _hf(layers)
    clean, corr = _ids(1), _ids(2)
    with torch.no_grad():
        want = hf(clean).logits
    step = nr.NaiveReferenceStep(hf, clean, corr, with_embedding_nodes=emb)
    for m in (step.reference, step.model):
        _set_all_log_alphas(m, 100.0)     # sampled and deterministic masks are then exactly 1
    with torch.no_grad():
        ref = step.reference(clean).logits                       # eval mode, deterministic masks
        corr_x = step.reference(corr, output_writer_states=True).writer_states
        pruned = step.model(clean, corr_x=corr_x).logits          # training mode, sampled masks
    torch.testing.assert_close(ref, want, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(pruned, want, atol=2e-5, rtol=1e-4)


def test_all_gates_zero_is_the_corrupted_run():
    hf = _hf(3)
    clean, corr = _ids(1), _ids(2)
    with torch.no_grad():
        want = hf(corr).logits
    step = nr.NaiveReferenceStep(hf, clean, corr, with_embedding_nodes=True)
    _set_all_log_alphas(step.reference, 100.0)
    _set_all_log_alphas(step.model, -100.0)
    with torch.no_grad():
        corr_x = step.reference(corr, output_writer_states=True).writer_states
        got = step.model(clean, corr_x=corr_x).logits
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_graph_counts():
    assert nr.n_writers(12, 12, 2) == 158 and nr.n_edges(12, 12, 2) == 32936
    assert nr.n_edges(12, 12, 0) == 32046


@pytest.mark.parametrize("layers", [2, 3])
def test_saved_bytes_follow_the_2L_plus_1_stacks_law(layers):
    hf = _hf(layers)
    step = nr.NaiveReferenceStep(hf, _ids(1), _ids(2), with_embedding_nodes=True)
    r = nr.saved_bytes(step)
    W = 2 + layers * 5
    assert r["stack_bytes"] == W * B * S * 64 * 4
    # (2L+1) stacks of the pruned pass (the embedding stack and two per layer) plus corr_x once
    assert r["n_stack_sized"] == 2 * layers + 2
    assert r["stack_sized_bytes"] < r["total_bytes"]


def test_step_trains_the_gates():
    hf = _hf(2)
    step = nr.NaiveReferenceStep(hf, _ids(1), _ids(2), positions=torch.tensor([S - 1, S - 3]),
                                 warmup_steps=0, max_steps=10)
    with torch.no_grad():  # leave the saturated init so the clamp passes gradient
        for n, p in step.model.named_parameters():
            if "log_alpha" in n:
                p.uniform_(-1, 2)
    before = step.model.layers[1].q_read_log_alpha.detach().clone()
    loss = step.forward_loss()
    loss.backward()
    g = step.model.layers[1].q_read_log_alpha.grad
    assert g is not None and g[: step.model.layers[1].attn_off].abs().sum() > 0
    assert torch.all(g[step.model.layers[1].attn_off:] == 0)      # dead rows: common mask
    step.optimizer.zero_grad(set_to_none=True)
    losses = [step.step() for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert not torch.equal(before, step.model.layers[1].q_read_log_alpha.detach())
    assert all(not p.requires_grad for p in hf.parameters())
