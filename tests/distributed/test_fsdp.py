"""FSDP2 on 2 CPU processes (gloo, launched by torchrun) against one process: same logits and
gradients through the per-layer FSDP hooks, same losses and gates after several training steps,
and an interrupted run resumes from its checkpoint to the same gates."""
import json
import os
import subprocess
import sys
from pathlib import Path

import edgeprune
import pytest
import torch
from edgeprune.training import train
from fsdp_common import FROM_PATH, TRAIN_KW, hook_inputs, train_data, trainer_for
from helpers.models import tiny
from helpers.processes import python_path
from helpers.tokenizers import word_level

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    for family in FROM_PATH:  # saved folders: under torchrun only rank 0 reads their weights
        tiny(family).save_pretrained(out / family)
        word_level(["unused"]).save_pretrained(out / family)
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=python_path(HERE))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(HERE / "fsdp_worker.py"), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return out


def _log(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_fsdp_hooks_gather_layers_for_forward_and_backward(fsdp_run):
    got = torch.load(fsdp_run / "hooks.pt")
    # each layer was freed after its forward and after its backward: its backward re-gathered it
    assert got["after_forward"] == [True, True] and got["after_backward"] == [True, True]
    assert not got["root_sharded"]          # the root (embeddings, unembedding) stays gathered
    pm = edgeprune.prunable(tiny("llama"))
    ids, record_ids, edges, nodes, weights = hook_inputs(pm)
    logits = pm(ids, edges=edges, nodes=nodes, record=pm.record(record_ids))
    grads = torch.autograd.grad((logits * weights).sum(), (edges, nodes))
    torch.testing.assert_close(got["logits"], logits.detach(), rtol=1e-5, atol=1e-6)
    for a, b in zip(got["grads"], grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _assert_same_logs(got, want, keys):
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(1, 7))
    for a, b in zip(got, want):
        for key in keys:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-7), (a["step"], key, a[key], b[key])


def test_two_processes_train_like_one(fsdp_run):
    """Unsaturated gates, so the KL (about 5e-3 here) drives them: losses and gates agree to float error."""
    history, edges, nodes = torch.load(fsdp_run / "gates.pt")["trainer"]
    pm = edgeprune.prunable(tiny("llama"))
    single = trainer_for(pm)
    single.run(progress=False)
    assert min(r["kl"] for r in single.history) > 1e-3
    _assert_same_logs(history, single.history, ("loss", "kl", "edge_sparsity", "node_sparsity", "lambda_edge1"))
    torch.testing.assert_close(edges, pm.gates.edge_log_alpha.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nodes, pm.gates.node_log_alpha.detach(), rtol=1e-5, atol=1e-5)


def test_train_under_torchrun_matches_one_process_and_resumes(fsdp_run, tmp_path):
    assert json.loads((fsdp_run / "world.json").read_text()) == {"world_size": 2}
    single = train(tiny("llama"), train_data(), checkpoint_dir=str(tmp_path), **TRAIN_KW)
    _assert_same_logs(_log(fsdp_run / "full" / "metrics.jsonl"), _log(tmp_path / "metrics.jsonl"),
                      ("loss", "kl", "edge_sparsity", "lambda_edge1", "lambda_edge2"))
    gates = torch.load(fsdp_run / "gates.pt")
    start = edgeprune.prunable(tiny("llama")).gates
    start.reset_parameters(torch.Generator().manual_seed(TRAIN_KW["seed"]))  # as train() starts them
    assert (single.edge_scores - start.edge_log_alpha.detach()).abs().max() > 1e-3  # the gates moved
    torch.testing.assert_close(gates["full"][0], single.edge_scores, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gates["full"][1], single.node_scores, rtol=1e-4, atol=1e-4)
    # interrupted after the step-3 checkpoint and resumed: the same gates as the uninterrupted run
    assert _log(fsdp_run / "resumed" / "metrics.jsonl")[-1]["step"] == 6
    torch.testing.assert_close(gates["resumed"][0], gates["full"][0], rtol=0, atol=0)
    torch.testing.assert_close(gates["resumed"][1], gates["full"][1], rtol=0, atol=0)


@pytest.mark.parametrize("family", FROM_PATH)
def test_weights_read_on_rank_0_reach_every_rank(fsdp_run, family):
    """Every rank's gathered weights and buffers (Llama's rotary frequencies, in no state dict) are
    the saved model's, though only rank 0 read them."""
    want = tiny(family)
    for rank in (0, 1):
        got = torch.load(fsdp_run / f"from_rank0_{family}_rank{rank}.pt")
        names = [name for name, _ in want.named_parameters()]
        assert sorted(got["params"]) == sorted(names)
        for name, p in want.named_parameters():
            torch.testing.assert_close(got["params"][name], p.detach(), rtol=0, atol=0)
        assert sorted(got["buffers"]) == sorted(name for name, _ in want.named_buffers())
        for name, b in want.named_buffers():
            torch.testing.assert_close(got["buffers"][name], b, rtol=0, atol=0)


@pytest.mark.parametrize("family", FROM_PATH)
def test_train_from_a_folder_reads_weights_on_rank_0_only(fsdp_run, family, tmp_path):
    """The other rank built its model on the meta device; its shards came from rank 0 (GPT-2's tied
    unembedding and Llama's rotary buffers included): the same run as one process."""
    assert json.loads((fsdp_run / "from_path.json").read_text())[family] == {"rank0": False, "rank1": True}
    single = train(tiny(family), train_data(), checkpoint_dir=str(tmp_path), **TRAIN_KW)
    _assert_same_logs(_log(fsdp_run / f"from_{family}" / "metrics.jsonl"), _log(tmp_path / "metrics.jsonl"),
                      ("loss", "kl", "edge_sparsity", "lambda_edge1"))
    got = torch.load(fsdp_run / "gates.pt")[f"from_{family}"]
    torch.testing.assert_close(got, single.edge_scores, rtol=1e-4, atol=1e-4)
