"""benchmarks/gpu/scale.py end to end on tiny shapes (CPU), and its RESULTS.md section handling."""
import importlib.util
import pathlib
import sys

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "gpu" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("_bench_scale", _PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_tiny_run_prints_and_appends_its_table(scale, tmp_path, capsys):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Training step\n\nold text\n")
    rows = scale.main(["--tiny", "--shapes", "llama13b", "--results", str(results), "--iters", "1"])
    assert [(r["checkpointing"], r["readers"], r["status"]) for r in rows] == \
        [("on", "recomputed", "ok"), ("off", "recomputed", "ok"), ("off", "kept", "ok")]
    for r in rows:
        raw = r["_raw"]
        assert raw["peak_bytes"] > 0 and raw["step_s"] > 0 and raw["baseline"]["peak"] > 0
        assert 0.7 < raw["plan_bytes"] / raw["peak_bytes"] < 1.4     # tiny shapes: fixed costs weigh more
    out = capsys.readouterr().out
    assert "| llama13b-tiny | bfloat16 | 1 x 32 | on | recomputed |" in out and "plan / measured" in out
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\n## Training step\n\nold text\n\n## Scale\n")
    assert text.count("| llama13b-tiny |") == 3


def test_results_block_goes_at_the_end_of_the_scale_section(scale, tmp_path):
    path = tmp_path / "R.md"
    path.write_text("# Results\n\n## A\n\na\n")
    scale.append_section(path, "### run 1\n\nx\n")
    path.write_text(path.read_text() + "\n## B\n\nb\n")
    scale.append_section(path, "### run 2\n\ny\n")
    text = path.read_text()
    assert text.index("## A") < text.index("## Scale") < text.index("### run 1") < text.index("### run 2") \
        < text.index("## B")
    assert text.count("## Scale") == 1 and text.endswith("## B\n\nb\n")
