"""edgeprune.train / evaluate on a saved model folder with its own tokenizer, as a user runs them."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

import edgeprune
from helpers.task_tokenizers import tokenizer_for


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tok = tokenizer_for("ioi", "bpe")
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=64, vocab_size=len(tok),
                        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_train_ioi_from_folder_then_evaluate(model_folder, tmp_path):
    circuit = edgeprune.train(model_folder, "ioi", edge_sparsity=0.9, steps=6, batch_size=8, n=16,
                              warmup_steps=2, ramp_steps=4, eval_every=3, progress=False,
                              checkpoint_dir=str(tmp_path / "run"))
    assert circuit.task == "ioi" and circuit.graph.num_edges == edgeprune.num_edges(2, 4, 2)
    assert {"kl", "logit_difference", "accuracy", "exact_match"} <= set(circuit.metrics)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert any("eval_kl" in r for r in rows) and rows[-1]["step"] == 6
    metrics = edgeprune.evaluate(model_folder, circuit, "ioi", split="test", n=12)
    assert metrics["n"] == 12 and len(metrics["per_example"]["kl"]) == 12
    full = edgeprune.evaluate(model_folder, None, "ioi", split="test", n=12)
    assert full["kl"] == pytest.approx(0, abs=1e-6) and full["exact_match"] == 1.0


def test_train_custom_pairs_and_length_mismatch(model_folder):
    pairs = [{"clean": "Then Mary and John went to the store. John gave a drink to <predict>Mary</predict>",
              "corrupted": "Then Anna and Paul went to the store. Paul gave a drink to"}] * 4
    circuit = edgeprune.train(model_folder, pairs, edge_sparsity=0.5, steps=2, batch_size=4, warmup_steps=1,
                              ramp_steps=1, progress=False)
    assert circuit.edge_scores.shape == (circuit.graph.num_edges,)
    bad = [{"clean": "Then Mary and John went to the store. John gave a drink to <predict>Mary</predict>",
            "corrupted": "Then Anna went to the store. Paul gave a drink to"}]
    with pytest.raises(ValueError, match="same length"):
        edgeprune.train(model_folder, bad, edge_sparsity=0.5, steps=1, progress=False)
