"""The shipped Tracr weights: load without JAX, compute the programs, match the adapter's forward."""
import itertools
import os
import subprocess
import sys

import pytest
import torch

import edgeprune.tracr as T
from edgeprune.graph import num_edges
from edgeprune.models import prunable
from helpers.models import gated

SHAPES = {  # layers, heads, d_model, key size, MLP hidden, BOS id, edges (method.md 1.4, 7)
    "reverse": (4, 1, 29, 8, 12, 3, 94),
    "xproportion": (2, 1, 13, 6, 1, 0, 32),
}


@pytest.mark.parametrize("name", T.PROGRAMS)
def test_shapes(name):
    c = T.load_model(name).config
    L, H, D, dk, M, bos, edges = SHAPES[name]
    assert (c.num_layers, c.num_heads, c.d_model, c.key_size, c.mlp_hidden_size, c.bos_id) == (L, H, D, dk, M, bos)
    assert num_edges(L, H, 2) == edges
    assert c.causal is False
    assert c.model_type == "tracr"


def test_loads_without_jax():
    code = ("import sys\n"
            "for m in ('jax', 'jaxlib', 'haiku', 'tracr'): sys.modules[m] = None\n"
            "import edgeprune.tracr as T\n"
            "for n in T.PROGRAMS:\n"
            "    p = T.load(n); assert len(p.dataset) and p.ground_truth\n"
            "assert 'jax' not in [k for k, v in sys.modules.items() if v is not None]\n")
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(__file__), "..", "..", "python")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=os.path.dirname(__file__))


def _by_length(model, vocab):
    """Every input of every length, one unpadded batch per length: (sequences, outputs)."""
    for n in range(1, model.config.max_seq_len + 1):
        seqs = list(itertools.product(vocab, repeat=n))
        yield seqs, model(torch.tensor([model.encode(s) for s in seqs]))


def test_reverse_exact():
    model = T.load_model("reverse")
    for seqs, outs in _by_length(model, [1, 2, 3]):
        for seq, out in zip(seqs, outs):
            assert model.decode(out) == list(reversed(seq))


def test_xproportion_fractions():
    model = T.load_model("xproportion")
    for seqs, outs in _by_length(model, "wxyz"):
        truth = torch.tensor([[0.0] + [sum(t == "x" for t in s[:i + 1]) / (i + 1) for i in range(len(s))]
                              for s in seqs])
        torch.testing.assert_close(outs[..., 0], truth, rtol=0, atol=1e-4)  # BOS position: 0
        assert model.decode(outs[-1]) == pytest.approx(truth[-1, 1:].tolist(), abs=1e-4)


@pytest.mark.parametrize("name", T.PROGRAMS)
def test_padded_batch_matches_single(name):
    prog = T.load(name, )
    ds = T.tasks.dataset(name, lengths=range(1, prog.model.config.max_seq_len + 1))
    batch = ds.batch(range(len(ds)))
    out = prog.model(batch.clean, batch.attention_mask)
    for i in range(0, len(ds), 7):
        n = int(batch.attention_mask[i].sum())
        single = prog.model(batch.clean[i:i + 1, :n])[0]
        torch.testing.assert_close(out[i, :n], single, rtol=0, atol=1e-6)
    # Padding with the compiler's pad token masks it without an explicit attention mask.
    torch.testing.assert_close(prog.model(batch.clean) * batch.attention_mask[..., None],
                               out * batch.attention_mask[..., None], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", T.PROGRAMS)
@pytest.mark.parametrize("ablation", ["zero", "corrupted"])
def test_adapter_forward_equals_model(name, ablation):
    """All gates on: the gated forward through TracrAdapter is the model's own forward."""
    prog = T.load(name)
    batch = prog.dataset.batch(range(len(prog.dataset)))
    pm = prunable(prog.model, ablation=ablation)
    assert pm.adapter.family == "tracr" and pm.adapter.causal is False
    assert pm.graph.embedding_nodes == 2 and pm.graph.num_edges == SHAPES[name][-1]
    corrupted = batch.clean.flip(0) if ablation == "corrupted" else None
    if corrupted is not None:  # equal lengths needed for interchange: keep full-length rows only
        keep = batch.attention_mask.all(-1)
        batch_clean, corrupted, mask = batch.clean[keep], corrupted[keep], batch.attention_mask[keep]
        corrupted = batch_clean.flip(0)
    else:
        batch_clean, mask = batch.clean, batch.attention_mask
    got = gated(pm, batch_clean, corrupted, attention_mask=mask)
    want = prog.model(batch_clean, mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-5, atol=1e-5)


def test_empty_components_are_zero():
    for name, empty in (("reverse", ["a1.h0", "a2.h0", "m3"]), ("xproportion", ["a0.h0", "m1"])):
        writes, _ = T.supports(T.load_model(name))
        assert [w for w, dims in writes.items() if not dims] == empty
