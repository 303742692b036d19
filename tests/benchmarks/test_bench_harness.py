"""The benchmarks' helpers (_memory, _results, _machine, _timing) and the step.py harness on a tiny
shape (deterministic checks; no timings asserted)."""
import argparse
import importlib.util
import pathlib
import sys

import torch

_BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    if str(_BENCH) not in sys.path:
        sys.path.insert(0, str(_BENCH))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", _BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod            # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


machine, memory, results, timing = (_load(name) for name in ("_machine", "_memory", "_results", "_timing"))
step = _load("step")


def test_cpu_tracker_counts_what_autograd_keeps():
    w = torch.randn(256, 256, requires_grad=True)
    mib = 256 * 256 * 4
    with memory.CpuMemoryTracker() as tr:
        tr.ignore(w)
        x = torch.randn(256, 256)           # 1 buffer
        y = torch.tanh(x @ w)               # mm output dies, tanh output is saved by autograd
        loss = y.sum()
        del y
        assert tr.current == 2 * mib + 4    # x, the saved tanh output, the scalar loss
        loss.backward()                     # frees the saved output, creates w.grad
        del loss
        assert tr.current == 2 * mib        # x and w.grad
        assert tr.peak >= 3 * mib
    assert memory.resident_bytes(w) == mib


def test_tables_ratios_and_files(tmp_path):
    t = results.markdown_table([{"a": 1, "b": "x"}], [("a", "A"), ("b", "B")])
    assert t.splitlines() == ["| A | B |", "|---|---|", "| 1 | x |"]
    assert results.ratio(2.0, 4.0) == 0.5 and results.ratio(None, 1.0) is None and results.fmt_ratio(None) == "-"
    results.append_jsonl(tmp_path / "r.jsonl", {"x": 1, "cfg": {"b": 2}})
    results.append_csv(tmp_path / "r.csv", {"x": 1, "cfg": {"b": 2}})
    results.append_csv(tmp_path / "r.csv", {"x": 2, "cfg": {"b": 3}})
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 1
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 3
    info = machine.run_info("cpu")
    assert {"card", "torch", "git_commit"} <= set(info)


def test_interleaved_timing_drops_failing_variant():
    calls = {"ok": 0}

    def ok():
        calls["ok"] += 1

    def bad():
        raise RuntimeError("boom")

    out = timing.time_interleaved({"ok": ok, "bad": bad}, "cpu", iters=4)
    assert out["ok"]["iters"] == 4 and calls["ok"] == 4
    assert isinstance(out["bad"], RuntimeError)


def test_step_harness_tiny_shape(capsys):
    shape = step.Shape("tiny", "gpt2", 2, 4, 64, 2, 8, vocab=101)
    args = argparse.Namespace(warmup=2, iters=2, target_s=0.1, no_cpu_memory=False, verbose=False, keep_readers=False)
    model = step.build_model(shape, "cpu")
    inputs = step.make_inputs(shape, "cpu")
    res = step.measure_cpu(shape, ["b", "c"], model, inputs, "cpu", args)
    for v in "bc":
        assert res[v].status == "ok", res[v].status
        assert res[v].time_s > 0 and res[v].iters == 2 and res[v].peak_bytes > memory.resident_bytes(model)
    assert res["c"].peak_bytes > res["b"].peak_bytes          # the stacks and the reference copy
    assert all(p.requires_grad for p in model.parameters())    # flags restored after the naive step froze them
    text = step.report_shape(shape, res, "cpu")
    assert "c/b: time" in text and "(c) naive reference" in text
