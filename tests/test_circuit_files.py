"""Circuit folders: replaced as a whole, every file parsed and checked, errors naming their file."""
import json
import os
import signal
import sys

import pytest
import torch

import edgeprune
from edgeprune import circuit as circuit_module
from edgeprune import folders
from edgeprune.circuit import Circuit
from edgeprune.errors import UserError
from edgeprune.graph import Graph

GRAPH = Graph(2, 4, 4, 2)


def _circuit(seed: int, scores: bool = True) -> Circuit:
    g = torch.Generator().manual_seed(seed)
    edge_scores = torch.randn(GRAPH.num_edges, generator=g)
    node_scores = torch.randn(GRAPH.num_writers, generator=g)
    return Circuit.from_log_alphas(GRAPH, edge_scores, node_scores, model="tiny", task="t") if scores else \
        Circuit(GRAPH, [GRAPH.edges[seed]], list(GRAPH.writers), model="tiny", task="t")


def _same(a: Circuit, b: Circuit) -> bool:
    scores = (a.edge_scores is None and b.edge_scores is None) or (
        a.edge_scores is not None and b.edge_scores is not None and torch.equal(a.edge_scores, b.edge_scores))
    return a.edges == b.edges and a.nodes == b.nodes and scores


def test_a_save_replaces_every_file_and_leaves_no_stale_scores(tmp_path):
    _circuit(0).save(tmp_path)
    fixed = _circuit(3, scores=False)
    fixed.save(tmp_path)
    loaded = Circuit.load(tmp_path)
    assert _same(loaded, fixed) and loaded.edge_scores is None
    with pytest.raises(UserError, match="no learned scores"):
        loaded.at_sparsity(0.5)
    # tools that open folder/circuit.json read the current circuit; the old scores are gone
    assert json.load(open(tmp_path / "circuit.json"))["edges"] == [list(e) for e in fixed.edges]
    assert not os.path.exists(tmp_path / "log_alphas.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["circuit.json", "edges.json"]  # plain files, nothing else


def test_a_save_over_an_older_layouts_files_replaces_them(tmp_path):
    old = _circuit(0)
    old._write(str(tmp_path))  # the files written in place, as the first versions did
    assert _same(Circuit.load(tmp_path), old)
    fixed = _circuit(3, scores=False)
    fixed.save(tmp_path)
    assert _same(Circuit.load(tmp_path), fixed) and not os.path.exists(tmp_path / "log_alphas.safetensors")


def _linked_layout(folder, circuit: Circuit) -> None:
    """A folder as the linked layout wrote it: folder/current -> .v-old/ (mode 700), every name a link
    through current/, the one the circuit lacks (ablation.safetensors) pointing nowhere."""
    version = folder / ".v-old"
    version.mkdir(parents=True, mode=0o700)
    circuit._write(str(version))
    os.symlink(".v-old", folder / "current")
    for name in Circuit.FILES:
        os.symlink(os.path.join("current", name), folder / name)


def test_folders_of_the_linked_layout_load_and_a_save_turns_them_into_plain_files(tmp_path):
    old = _circuit(0)
    _linked_layout(tmp_path, old)
    assert _same(Circuit.load(tmp_path), old)
    (tmp_path / "drawing.svg").write_text("<svg/>")  # a user's file beside the circuit stays
    new = _circuit(1)
    new.save(tmp_path)
    assert _same(Circuit.load(tmp_path), new)
    assert sorted(os.listdir(tmp_path)) == ["circuit.json", "drawing.svg", "edges.json", "log_alphas.safetensors"]
    assert not any(os.path.islink(tmp_path / name) for name in os.listdir(tmp_path))


def test_a_circuit_folder_copies_and_archives_with_ordinary_tools(tmp_path):
    import shutil
    import subprocess
    import tarfile
    folder = tmp_path / "c"
    _circuit(0).save(folder)
    _circuit(1).save(folder)  # a second save leaves nothing of the first behind
    entries = os.listdir(folder)
    assert not [e for e in entries if e.startswith(".") or os.path.islink(folder / e)]
    umask = os.umask(0)
    os.umask(umask)
    assert {e: os.stat(folder / e).st_mode & 0o777 for e in entries} == {e: 0o666 & ~umask for e in entries}
    if shutil.which("cp"):
        subprocess.run(["cp", "-rL", str(folder), str(tmp_path / "copy")], check=True)
        assert _same(Circuit.load(tmp_path / "copy"), _circuit(1))
    with tarfile.open(tmp_path / "c.tar", "w", dereference=True) as tar:  # tar -h
        tar.add(folder, arcname="c")
    with tarfile.open(tmp_path / "c.tar") as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert _same(Circuit.load(tmp_path / "unpacked" / "c"), _circuit(1))


def test_a_load_that_overlaps_a_save_reads_again_and_never_mixes(tmp_path):
    old, new = _circuit(0), _circuit(1)
    old.save(tmp_path)
    reads = []

    def load(path_of):  # reads circuit.json, then another process saves, then the rest is read
        circuit = Circuit._read(str(tmp_path), path_of) if reads else None
        if not reads:
            json.load(open(path_of("circuit.json")))
            new.save(tmp_path)
        reads.append(circuit)
        return circuit
    loaded = folders.read(str(tmp_path), "circuit.json", load)
    assert len(reads) == 2 and _same(loaded, new)


def _break(folder, name, content: bytes):
    path = os.path.join(str(folder), name)
    os.remove(path)
    with open(path, "wb") as f:
        f.write(content)
    return path


@pytest.mark.parametrize("name,content,message", [
    ("circuit.json", b'{"graph": {"num_layers": 2, "num_he', r"circuit\.json is not valid JSON"),
    ("circuit.json", b'{"edges": []}', r"circuit\.json is not a circuit file \(KeyError: 'graph'\)"),
    ("edges.json", b'[["a0.h0", "m1"]]', r"edges\.json lists other edges than .*circuit\.json"),
    ("log_alphas.safetensors", b"\x00" * 20, r"log_alphas\.safetensors is not a readable safetensors file"),
])
def test_load_names_the_damaged_file(tmp_path, name, content, message):
    _circuit(0).save(tmp_path)
    _break(tmp_path, name, content)
    with pytest.raises(UserError, match=message):
        Circuit.load(tmp_path)


def test_load_checks_scores_and_edges_against_the_graph(tmp_path):
    c = _circuit(0)
    c.save(tmp_path)
    path = os.path.join(str(tmp_path), "log_alphas.safetensors")
    from safetensors.torch import load_file, save_file
    tensors = load_file(path)
    tensors["edge.m1"] = tensors["edge.m1"][:, :-1].contiguous()
    save_file(tensors, path)
    with pytest.raises(UserError, match=r"scores edge\.m1 are of shape \(1, \d+\), expected"):
        Circuit.load(tmp_path)
    Circuit(GRAPH, [("a9.h0", "m9"), ("m1", "a0.h0.q")], ["a9.h0"]).save(tmp_path / "bad")
    with pytest.raises(UserError, match=r"2 of its edges are not in the graph, e\.g\. a9\.h0 -> m9, m1 -> a0\.h0\.q; "
                                        r"1 of its nodes are not in the graph, e\.g\. a9\.h0"):
        Circuit.load(tmp_path / "bad")


def test_check_runs_before_cuts_and_evaluation():
    from helpers.data import random_pairs
    from helpers.models import tiny
    bad = Circuit(GRAPH, [("a9.h0", "m9")], [], edge_scores=torch.zeros(3), node_scores=torch.zeros(2))
    with pytest.raises(UserError, match=r"not in the graph, e\.g\. a9\.h0 -> m9; it has 3 edge scores for the "
                                        rf"graph's {GRAPH.num_edges} edges; it has 2 node scores"):
        bad.at_sparsity(0.5)
    pm = edgeprune.prunable(tiny("gpt2"))
    assert pm.graph == GRAPH
    with pytest.raises(UserError, match=r"a9\.h0 -> m9"):
        edgeprune.evaluate(pm, Circuit(GRAPH, [("a9.h0", "m9")], []), random_pairs())
    with pytest.raises(UserError, match=r"it was found on the graph Graph\(num_layers=3"):
        edgeprune.evaluate(pm, Circuit(Graph(3, 4, 4, 2), [], []), random_pairs())


def _save_killed_at(line: int, circuit: Circuit, folder: str) -> bool:
    """Save in a forked child that SIGKILLs itself at the line-th line run in the save's modules;
    True when the child finished (line beyond the save)."""
    files = {circuit_module.__file__, folders.__file__}
    pid = os.fork()
    if pid == 0:
        count = 0

        def local(frame, event, arg):
            nonlocal count
            if event == "line":
                count += 1
                if count == line:
                    os.kill(os.getpid(), signal.SIGKILL)
            return local

        sys.settrace(lambda frame, event, arg: local if frame.f_code.co_filename in files else None)
        circuit.save(folder)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status)


def test_a_save_killed_at_any_line_leaves_the_old_circuit_or_the_new(tmp_path):
    old, new = _circuit(0), _circuit(1, scores=False)
    seen = []
    line = 0
    while True:
        line += 1
        folder = str(tmp_path / str(line))
        old.save(folder)
        finished = _save_killed_at(line, new, folder)
        loaded = Circuit.load(folder)
        assert _same(loaded, old) or _same(loaded, new), line
        seen.append("new" if _same(loaded, new) else "old")
        _circuit(2).save(folder)  # the next save finishes or clears what the killed one left
        assert _same(Circuit.load(folder), _circuit(2)) and not [e for e in os.listdir(folder) if e.startswith(".")]
        if finished:
            break
    assert line > 20 and seen[0] == "old" and seen[-1] == "new"
    assert seen == sorted(seen, key=["old", "new"].index)  # old until the link moves, new from then on
