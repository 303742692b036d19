"""The compiled training step (edgeprune.compiling): what it traces equals the eager step.

Compiling is slow on two cores, so the compiler runs in few tests: the forward and loss under
aot_eager for every family (one graph, zero graph breaks, against the eager step's in-place delta
stack), and one tiny GPT-2 through inductor for the whole step. The parts it rests on (the
traceable Philox, the written-out AdamW) are checked here against their eager counterparts
without compiling.
"""
import contextlib

import numpy as np
import pytest
import torch
from torch._dynamo import compiled_autograd

import edgeprune
from edgeprune import compiling, ops, training
from edgeprune import step as step_module
from edgeprune.step import Step, with_state
from edgeprune.errors import UserError
from edgeprune.ops import reference as R
from edgeprune.training import NonFiniteLoss, TrainConfig, Trainer
from helpers.data import random_pairs
from helpers.models import EVERY_FAMILY, any_family, family_ids, tiny


# ------------------------------------------------------------------ the pieces, without compiling

@pytest.mark.parametrize("seed", [0, 7, 2**32 + 5, 2**63 - 1])
def test_philox_in_tensor_arithmetic_equals_the_reference(seed):
    """Every bit of the traceable generator equals the numpy reference, across the 32-bit counter carry."""
    for offset in (0, 3, 2**32 - 100, 2**45 + 17):
        counters = np.arange(offset, offset + 300, dtype=np.uint64)
        expect = R.philox_uint32(seed, counters).astype(np.int64)
        got = R.philox_uint32_torch(seed, torch.from_numpy(counters.astype(np.int64)))
        assert np.array_equal(got.numpy(), expect)
        assert torch.equal(R.uniform_at(300, seed, torch.tensor(offset), 1e-6),
                           R.uniform_reference(300, seed, offset, 1e-6))


def test_hard_concrete_with_a_tensor_offset_equals_the_op():
    """Gates and their gradient with the offset as a device tensor equal the kernels' (int offset)."""
    log_alpha = torch.randn(5, 13, dtype=torch.float64) * 2
    grad_z = torch.randn(5, 13, dtype=torch.float64)
    out = []
    for offset in (977, torch.tensor(977)):
        la = log_alpha.clone().requires_grad_()
        z = ops.hard_concrete(la, 11, offset, backend="torch")
        z.backward(grad_z)
        out.append((z.detach(), la.grad))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=0, atol=1e-12)
    assert 0 < (out[0][0] == 0).sum() < out[0][0].numel()      # the clamp acts on some gates, not all


def test_adamw_step_equals_torch_adamw():
    """The written-out update equals torch.optim.AdamW, with a zero learning rate, maximised groups
    and weight decay, over several steps."""
    torch.manual_seed(0)
    params = [[torch.randn(7, requires_grad=True), torch.randn((), requires_grad=True)] for _ in range(2)]
    for p, q in zip(*params):
        q.data.copy_(p.data)
    opts = [with_state(torch.optim.AdamW(
        [{"params": [group[0]], "lr": 0.0}, {"params": [group[1]], "lr": 0.0, "maximize": True}],
        weight_decay=0.01, capturable=compiled)) for group, compiled in zip(params, (False, True))]
    for step in range(6):
        grads = [torch.randn(7), torch.randn(())]
        for group in params:
            for p, g in zip(group, grads):
                p.grad = g.clone()
        for g_eager, g_mine in zip(opts[0].param_groups, opts[1].param_groups):
            g_eager["lr"] = 0.8 * step / 5
            g_mine["lr"] = torch.tensor(0.8 * step / 5)
        opts[0].step()
        compiling.adamw_step(opts[1])
        for p, q in zip(*params):
            torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)
    for a, b in zip(opts[0].state.values(), opts[1].state.values()):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(b[key], a[key], rtol=1e-6, atol=1e-9)


def test_compile_auto_is_on_for_long_cuda_runs_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    use = compiling.use_compile
    assert not use("auto", cpu, 3000, checkpointing=False, distributed=False)
    assert use("auto", cuda, compiling.AUTO_MIN_STEPS, checkpointing=False, distributed=False)
    assert not use("auto", cuda, compiling.AUTO_MIN_STEPS - 1, checkpointing=False, distributed=False)
    assert not use("auto", cuda, 3000, checkpointing=True, distributed=False)
    assert not use("auto", cuda, 3000, checkpointing=False, distributed=True)
    assert use("on", cpu, 10, checkpointing=False, distributed=False)
    assert not use("off", cuda, 3000, checkpointing=False, distributed=False)
    with pytest.raises(UserError, match="compile='on' is not possible here: this run runs under FSDP"):
        use("on", cuda, 3000, checkpointing=False, distributed=True)
    assert TrainConfig(edge_sparsity=0.5, compile=True).validate().compile == "on"
    assert TrainConfig(edge_sparsity=0.5).compile == "auto"
    with pytest.raises(UserError, match="compile='sometimes' is not one of"):
        TrainConfig(edge_sparsity=0.5, compile="sometimes").validate()


def test_each_run_compiles_its_own_copy_of_the_step():
    """Dynamo's cache is per code object: two runs must not share one (see compiling._own_code)."""
    a, b = (Trainer(edgeprune.prunable(tiny("gpt2")), random_pairs(4), TrainConfig(edge_sparsity=0.5, compile="off"))
            for _ in range(2))
    fa, fb = compiling._own_code(a.train_step.objective), compiling._own_code(b.train_step.objective)
    assert fa.__func__.__code__ is not fb.__func__.__code__
    assert fa.__self__ is a.train_step and fa.__func__.__code__.co_code == Step.objective.__code__.co_code


# ------------------------------------------------------------------ traced: aot_eager, every family

def _loss(pm, ids, cids, positions, step, backend, stack):
    edges, nodes = pm.gates.sample(3, step)
    logits = pm(ids, None, positions, edges=edges, nodes=nodes, record=pm.ablation_record(cids), backend=backend,
                stack=stack)
    # (not the log-softmax's logsumexp: that is 0 whatever the gates, and its gradient rounding noise)
    return logits.float().logsumexp(-1).sum()


SLOW_TO_TRACE = {"gemma3"}   # six layers (five sliding-window ones before a global one)
TRACR = ("reverse", "xproportion")


@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f in SLOW_TO_TRACE else f
                                    for f in EVERY_FAMILY])
def test_forward_and_loss_trace_as_one_graph(family):
    """Sampled gates, the gated forward on the functional stack and the loss: one graph, no break
    (fullgraph=True, one graph counted), under aot_eager; its backward traced too, by compiled
    autograd (fullgraph=True, one graph); the loss and the gates' gradients equal the eager step's,
    on the in-place delta stack."""
    from torch._dynamo.testing import CompileCounterWithBackend
    pm = edgeprune.prunable(any_family(family))
    # gates strictly between 0 and 1 for some edges and nodes; Tracr's, mostly open (with many edges
    # half ablated its piecewise-constant MLPs leave no gradient at all)
    edge_mean, node_mean = (2, 2) if family in TRACR else (0, 1)
    with torch.no_grad():
        pm.gates.edge_log_alpha.normal_(edge_mean, 1, generator=torch.Generator().manual_seed(1))
        pm.gates.node_log_alpha.normal_(node_mean, 1, generator=torch.Generator().manual_seed(2))
    ids, cids = family_ids(family, b=3, s=7)
    S = ids.shape[1]
    positions = torch.tensor([[S - 1], [S - 2], [1]])
    backend = ops.choose("mix", ids.device, torch.float32).name  # chosen outside: a trace takes the name

    forward_graphs, backward_graphs = CompileCounterWithBackend("aot_eager"), CompileCounterWithBackend("aot_eager")
    # its own copy of _loss: Dynamo's graphs are kept per code object, up to 8 (one per family here)
    compiled = torch.compile(compiling._own_code(_loss), backend=forward_graphs, fullgraph=True, dynamic=False)
    backward_compiler = compiled_autograd._enable(torch.compile(backend=backward_graphs, fullgraph=True))
    results = []
    for fn, step, stack, backward in ((compiled, torch.tensor(4), "blocks", backward_compiler),
                                      (_loss, 4, "delta", contextlib.nullcontext())):
        pm.gates.zero_grad(set_to_none=True)
        loss = fn(pm, ids, cids, positions, step, backend, stack)
        with backward:
            loss.backward()
        results.append((loss.detach(), pm.gates.edge_log_alpha.grad.clone(), pm.gates.node_log_alpha.grad.clone()))
    assert (forward_graphs.frame_count, backward_graphs.frame_count) == (1, 1)
    for got, expect in zip(*results):
        torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-6)
    assert results[1][1].abs().max() > 1e-3
    assert results[1][2].abs().max() > 1e-5 or family == "reverse"   # its sampled nodes get none


# ------------------------------------------------------------------ the whole step, inductor

def _run(compile: str, steps: int = 5):
    pm = edgeprune.prunable(tiny("gpt2"))
    with torch.no_grad():
        pm.gates.edge_log_alpha.normal_(0, 1.5, generator=torch.Generator().manual_seed(1))
        pm.gates.node_log_alpha.normal_(1, 1.5, generator=torch.Generator().manual_seed(2))
    # 10 examples in batches of 4: step 2 is an epoch's last batch, of 2
    t = Trainer(pm, random_pairs(10, seq=6), TrainConfig(edge_sparsity=0.5, steps=20, batch_size=4, warmup_steps=2,
                                                          ramp_steps=4, compile=compile))
    logs, grads = [], []
    for step in range(steps):
        # compiled, the first step compiles, and no later one (the last batch too) compiles again
        with torch.compiler.set_stance("fail_on_recompile" if step > 0 else "default"):
            logs.append(t.step())
        grads.append(pm.gates.edge_log_alpha.grad.clone())
    t.check()
    return t, logs, grads


def test_compiled_step_equals_eager_and_skips_a_nan_step():
    """Five steps through inductor, one graph for all (an epoch's smaller last batch included): the
    logged terms, the gates' gradients and the updated log alphas equal the eager step's; a second
    compiled run repeats the first exactly; a non-finite step updates nothing and is reported at
    the next check."""
    eager, eager_logs, eager_grads = _run("off")
    t, logs, grads = _run("on")
    assert t.compiled and not eager.compiled
    for a, b in zip(logs, eager_logs):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    for a, b in zip(grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for p, q in zip(t.pm.gates.parameters(), eager.pm.gates.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-5)
    assert 0.2 < float(logs[-1]["edge_sparsity"]) < 0.8 and float(logs[-1]["kl"]) > 0

    again, again_logs, again_grads = _run("on")
    for a, b in zip(again_logs, logs):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert all(torch.equal(a, b) for a, b in zip(again_grads, grads))

    with torch.no_grad():
        t.pm.model.lm_head.weight.fill_(float("nan"))
    before = [p.detach().clone() for p in t.pm.gates.parameters()]
    state = [v.clone() for s in t.train_step.optimizer.state.values() for v in s.values()]
    t.step()
    assert all(torch.equal(a, p) for a, p in zip(before, t.pm.gates.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(state, [v for s in t.train_step.optimizer.state.values() for v in s.values()]))
    with pytest.raises(NonFiniteLoss, match="loss became nan at step 5"):
        t.check()


def test_a_compiled_run_resumes_exactly(monkeypatch):
    """A compiled run's checkpoint (tensor learning rates, the step count on the device) resumed by a
    new compiled Trainer continues as the run would have (aot_eager: the Trainer's code, traced)."""
    import io
    monkeypatch.setattr(step_module, "compiled", lambda fn, graphs: torch.compile(
        compiling._own_code(fn), backend="aot_eager", fullgraph=True, dynamic=False))
    whole, whole_logs, _ = _run("on", steps=5)
    first, _, _ = _run("on", steps=3)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = Trainer(edgeprune.prunable(first.pm.model), first.dataset, first.config)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    logs = [resumed.step() for _ in range(2)]
    for a, b in zip(logs, whole_logs[3:]):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=key)
    for p, q in zip(resumed.pm.gates.parameters(), whole.pm.gates.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_auto_falls_back_to_the_eager_step_when_compiling_fails(monkeypatch):
    """compile="auto" turns a compiler failure at the first step into a warning and runs eagerly (the
    same results); compile="on" raises it."""
    def broken(fn, graphs):
        def call(*args, **kwargs):
            raise RuntimeError("inductor: no kernel for this op")
        return call
    monkeypatch.setattr(step_module, "compiled", broken)
    monkeypatch.setattr(training, "use_compile", lambda setting, *args, **kwargs: setting != "off")
    eager, eager_logs, _ = _run("off", steps=3)
    with pytest.warns(RuntimeWarning, match=r"compiled step failed \(RuntimeError: inductor: no kernel.*continues "
                                            r"eagerly"):
        t, logs, _ = _run("auto", steps=3)
    assert not t.compiled
    for a, b in zip(logs, eager_logs):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    with pytest.raises(RuntimeError, match="no kernel for this op"):
        _run("on", steps=1)


def _saved_for_backward(pm, ids, cids, recompute_readers: bool) -> int:
    """Bytes the compiled forward saves for backward, as inductor's partitioner (min-cut) splits it."""
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.partitioners import min_cut_rematerialization_partition
    saved = {}

    def forward_compiler(gm, example_inputs):
        outputs = next(n for n in gm.graph.nodes if n.op == "output").args[0]
        values = [getattr(o, "meta", {}).get("val") for o in outputs[1:]]   # after the loss: what is saved
        saved["bytes"] = sum(v.numel() * v.element_size() for v in values if isinstance(v, torch.Tensor))
        return gm

    def loss(step):
        edges, nodes = pm.gates.sample(0, step)
        return pm(ids, None, None, edges=edges, nodes=nodes, record=pm.ablation_record(cids), backend="torch",
                  recompute_readers=recompute_readers, stack="blocks").float().logsumexp(-1).sum()

    backend = aot_autograd(fw_compiler=forward_compiler, bw_compiler=lambda gm, example_inputs: gm,
                           partition_fn=min_cut_rematerialization_partition)
    torch.compile(loss, backend=backend, fullgraph=True, dynamic=False)(torch.tensor(1)).backward()
    return saved["bytes"]


def test_compiled_forward_recomputes_the_attention_readers():
    """recompute_readers holds under compilation too: the readers' mixtures (H + 2K full-width tensors
    per layer) are recomputed in backward, not saved."""
    pm = edgeprune.prunable(tiny("gpt2", layers=3))
    g = torch.Generator().manual_seed(0)
    ids, cids = torch.randint(0, 61, (4, 16), generator=g), torch.randint(0, 61, (4, 16), generator=g)
    kept, recomputed = (_saved_for_backward(pm, ids, cids, r) for r in (False, True))
    a = pm.adapter
    mixtures = a.num_layers * (a.num_heads + 2 * a.num_kv_heads) * ids.numel() * a.d_model * 4
    assert kept - recomputed >= mixtures, (kept, recomputed, mixtures)
