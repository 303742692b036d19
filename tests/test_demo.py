"""`edgeprune demo`: runs both Tracr recoveries, prints found vs ground truth, writes drawings."""
import shutil

from edgeprune.cli import main


def test_demo_runs_and_draws(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "== Tracr reverse" in out and "== Tracr xproportion" in out
    assert out.count("recovered: True") == 2 and "Both circuits recovered exactly" in out
    for name in ("reverse", "xproportion"):
        folder = tmp_path / name
        assert (folder / "circuit.json").exists() and (folder / "circuit.dot").exists()
        assert (folder / "circuit.svg").exists() == (shutil.which("dot") is not None)


def test_demo_seeds_reports_each_run_and_the_rate(capsys):
    # 30 steps is far too few to recover anything: every run is reported as not recovered, with why
    assert main(["demo", "--seeds", "2", "--steps", "30"]) == 0
    out = capsys.readouterr().out
    for name in ("reverse", "xproportion"):
        assert f"{name} seed 0: NOT recovered" in out and f"{name} seed 1: NOT recovered" in out
        assert f"{name}: recovered for 0 of 2 seeds []" in out
    assert "missing" in out
    assert main(["demo", "--seeds", "1", "--steps", "30", "--check"]) == 1
    assert "fewer than two seeds" in capsys.readouterr().err


def test_demo_mode_warm_exact_reaches_the_runs(capsys):
    # the same 30 steps from exact attribution's start keep the circuits that cold runs cannot reach
    assert main(["demo", "--seeds", "1", "--steps", "30", "--mode", "warm-exact"]) == 0
    out = capsys.readouterr().out
    assert "reverse: recovered for 1 of 1 seeds [0]" in out and "xproportion: recovered for 1 of 1 seeds [0]" in out


def test_demo_seeds_must_be_positive(capsys):
    assert main(["demo", "--seeds", "0"]) == 1
    assert "--seeds must be at least 1, got 0" in capsys.readouterr().err
