"""Recompile the RASP programs with tracr and compare with the shipped package data."""
import importlib.util
import json
import os

import numpy as np
import pytest

pytest.importorskip("tracr.compiler.compiling")  # the optional `tracr` extra (tracr-pypi)

import edgeprune.tracr as T  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "compile_tracr.py")


def _script():
    spec = importlib.util.spec_from_file_location("compile_tracr", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # about 5-15 s per program, most of it JAX
@pytest.mark.parametrize("name", T.PROGRAMS)
def test_recompiled_weights_match_shipped(name):
    from safetensors.numpy import load_file
    arrays, config = _script().compile_program(name)
    shipped = load_file(os.path.join(T.DATA_DIR, f"{name}.safetensors"))
    assert set(arrays) == set(shipped)
    for key in arrays:
        np.testing.assert_array_equal(arrays[key], shipped[key], err_msg=key)
    with open(os.path.join(T.DATA_DIR, f"{name}.json")) as f:
        shipped_config = json.load(f)
    strip = lambda c: {k: v for k, v in json.loads(json.dumps(c)).items() if k != "tracr_version"}  # noqa: E731
    assert strip(config) == strip(shipped_config)
