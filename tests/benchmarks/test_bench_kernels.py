"""`edgeprune bench kernels` runs the packaged benchmark (no source checkout needed) and prints the table."""
import json

import torch

from edgeprune import _ext, bench_kernels
from edgeprune.cli import main


def test_bench_kernels_prints_the_bandwidth_table(capsys, tmp_path, monkeypatch):
    tiny = [bench_kernels.Case("tiny", 3, 7, 4, 32, torch.float32),
            bench_kernels.Case("tiny, half unread", 3, 8, 4, 32, torch.float32, 0.5)]
    monkeypatch.setattr(bench_kernels, "cases", lambda device, quick: tiny)  # the layer shapes take seconds
    assert main(["bench", "kernels", "--quick", "--json", str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    expected = {"copy", "einsum", "torch"} | ({"cpp"} if _ext.available() else set())
    for case in tiny:
        for pass_ in ("forward", "backward"):
            timed = {r["backend"]: r for r in rows if r["case"] == case.name and r["pass_"] == pass_}
            assert set(timed) == expected, (case.name, pass_)
            assert all(r["gbps"] > 0 and r["ms"] > 0 for r in timed.values())
    table = [line for line in out.splitlines() if line and not line.startswith("#")]
    assert table[0].split()[:4] == ["case", "pass", "backend", "ms"] and "x copy" in table[0]
    assert len(table) == 1 + len(rows) and all(line.startswith(r["case"]) for line, r in zip(table[1:], rows))
