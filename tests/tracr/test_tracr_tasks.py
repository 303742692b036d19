"""The Tracr tasks: datasets, log-probabilities, KL reduction and metrics (method.md 4.1)."""
import pytest
import torch

import edgeprune.tracr as T
from edgeprune.tasks.metrics import kl_per_example


def _gather(out, batch):
    return out.gather(1, batch.positions[..., None].expand(-1, -1, out.shape[-1]))


def test_reverse_dataset_and_metrics():
    prog = T.load("reverse")
    ds = prog.dataset
    assert len(ds) == 3 + 9 + 27 and ds.task.name == "tracr-reverse"
    ex = ds[len(ds) - 1]
    assert ex.clean[0] == prog.model.config.bos_id == 3 and ex.corrupted == ex.clean
    assert ex.positions == [1, 2, 3] and ex.text == "3 3 3"
    batch = ds.batch(range(len(ds)))
    full = _gather(prog.model(batch.clean, batch.attention_mask), batch)
    m = ds.task.metrics(full, full, batch)
    assert m["accuracy"].min() == 1 and m["kl"].abs().max() < 1e-6
    wrong = full.clone()
    wrong[0, 0] = wrong[0, 0].flip(-1)
    assert ds.task.metrics(wrong, full, batch)["accuracy"][0] == 0
    assert ds.task.position_reduction == "sum"


def test_xproportion_log_probs_and_kl():
    prog = T.load("xproportion")
    ds, task = prog.dataset, prog.dataset.task
    assert len(ds) == 256 and all(e.positions == [0, 1, 2, 3, 4] for e in ds)
    assert prog.model.config.bos_id == 0 and prog.model.config.output_dim == 0
    batch = ds.batch(range(16))
    full = _gather(prog.model(batch.clean), batch)
    lp = task.log_probs(full)
    assert lp.shape == (16, 1, 5)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(16, 1))
    noisy = full + 0.1 * torch.randn_like(full)
    want = torch.nn.functional.kl_div(task.log_probs(noisy), task.log_probs(full), log_target=True,
                                      reduction="none").sum((-1, -2))
    # The trainer's call (mask (B, P), "mean") and the task's own kl agree with the reference.
    got = kl_per_example(task.log_probs(noisy), task.log_probs(full), batch.position_mask, task.position_reduction)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(task.kl(noisy, full, batch), want)
    m = task.metrics(full, full, batch)
    assert m["accuracy"].min() == 1 and m["max_abs_error"].max() < 1e-4
    off = full.clone()
    off[3, 2, 0] += 0.06
    m = task.metrics(off, full, batch)
    assert m["accuracy"][3] == 0 and m["max_abs_error"][3] == pytest.approx(0.06, abs=1e-4)


def test_dataset_options():
    ds = T.tasks.dataset("xproportion", n=10, seed=1)
    assert len(ds) == 10
    assert [e.text for e in ds] == [e.text for e in T.tasks.dataset("xproportion", n=10, seed=1)]
    with pytest.raises(ValueError):
        T.tasks.dataset("reverse", split="bogus")
    with pytest.raises(ValueError):
        T.tasks.dataset("reverse", lengths=[5])
    with pytest.raises(ValueError):
        T.load("sort")
    assert T.load("tracr-reverse").name == "reverse"


def test_registered_tasks():
    import edgeprune.tasks as tasks
    for name, size in (("tracr-reverse", 39), ("tracr-xproportion", 256)):
        assert name in tasks.names()
        ds = tasks.load(name, None, split="validation")
        assert len(ds) == size and ds.task.name == name
