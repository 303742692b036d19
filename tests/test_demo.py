"""`edgeprune demo`: runs both Tracr recoveries, prints found vs ground truth, writes drawings."""
import shutil

from edgeprune.cli import main


def test_demo_runs_and_draws(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "== Tracr reverse" in out and "== Tracr xproportion" in out and "recovered:" in out
    for name in ("reverse", "xproportion"):
        folder = tmp_path / name
        assert (folder / "circuit.json").exists() and (folder / "circuit.dot").exists()
        assert (folder / "circuit.svg").exists() == (shutil.which("dot") is not None)
