#!/usr/bin/env python
"""Compile edgeprune's two Tracr programs and export their weights as package data.

Needs the optional `tracr` extra (`pip install tracr-pypi`, which brings JAX and Haiku). Nothing
else in edgeprune needs JAX: `edgeprune.tracr` loads the files written here with torch only.

Programs (method.md section 7):
- ``reverse``: tracr's ``make_reverse(tokens)`` over the vocabulary {1, 2, 3} with
  max_seq_len 3 (inputs are BOS + 3 tokens, the reference's sequence length 4). The program is
  length = SelectorWidth(Select(tokens, tokens, TRUE)); opp_idx = length - indices;
  opp_idx - 1; Aggregate(Select(indices, opp_idx - 1, EQ), tokens). Categorical output over
  {1, 2, 3}: logits = final residual @ unembedding.
- ``xproportion``: ``make_frac_prevs(tokens == "x")`` over {w, x, y, z} with max_seq_len 4
  (BOS + 4 tokens, the reference's sequence length 5). Numerical output: the compiled model's
  output space is the single residual direction ``frac_prevs``, which tracr's sorted residual
  basis puts at dimension 0; the script checks that and records it as ``output_dim``.

The compiler BOS token is named "BOS" (as in the reference port); tracr sorts it together with the
vocabulary and "compiler_pad", so BOS is id 3 for reverse and id 0 for xproportion.

Outputs, for each program NAME, in python/edgeprune/tracr/data/ (or --out):
- NAME.safetensors: float32 tensors ``token_embed`` (V, D), ``pos_embed`` (max_seq_len + 1, D;
  row 0, the BOS position, is zero in tracr), per layer l
  ``layers.l.attn.{query,key,value}.{w,b}`` (D, H*key_size) / (H*key_size,),
  ``layers.l.attn.linear.{w,b}`` (H*key_size, D) / (D,), ``layers.l.mlp.linear_1.{w,b}``
  (D, M) / (M,), ``layers.l.mlp.linear_2.{w,b}`` (M, D) / (D,), and ``unembedding`` (D, V_out)
  for categorical outputs. Haiku's layout: heads are the outer factor of H*key_size.
- NAME.json: the configuration (shapes, vocabulary and encoding map, BOS/pad ids, causal flag,
  output kind and encoding, residual labels, the tracr version used).

Usage: python scripts/compile_tracr.py [--out DIR] [--check]
``--check`` compiles and compares with the files already in DIR instead of writing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import metadata

import numpy as np

PROGRAMS = {
    "reverse": {"vocab": [1, 2, 3], "max_seq_len": 3},
    "xproportion": {"vocab": ["w", "x", "y", "z"], "max_seq_len": 4},
}
COMPILER_BOS = "BOS"
COMPILER_PAD = "compiler_pad"
MLP_EXACTNESS = 100  # tracr's default
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "python", "edgeprune",
                           "tracr", "data")


def _program(name: str):
    """The RASP program, built from fresh expressions (tracr's lib.make_reverse / make_frac_prevs).

    tracr labels every expression "<name>_<unique id>" from a process-wide counter, and the residual
    basis is sorted by label. The counter is reset and nothing is reused from tracr's lib module (its
    module-level `length` takes its id whenever it is first touched), so the labels, and with them
    the residual order, are the same whatever was compiled before in the process.
    """
    import itertools

    from tracr.rasp import rasp

    rasp.RASPExpr._ids = itertools.count(1)
    if name == "reverse":
        length = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
                                    .named("all_true_selector")).named("length")
        opp_idx = (length - rasp.indices).named("opp_idx")
        opp_idx = (opp_idx - 1).named("opp_idx-1")
        reverse_selector = rasp.Select(rasp.indices, opp_idx, rasp.Comparison.EQ).named("reverse_selector")
        return rasp.Aggregate(reverse_selector, rasp.tokens).named("reverse")
    if name == "xproportion":
        bools = rasp.numerical(rasp.tokens == "x")
        prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)
        return rasp.numerical(rasp.Aggregate(prevs, bools, default=0)).named("frac_prevs")
    raise KeyError(name)


def compile_program(name: str) -> tuple[dict[str, np.ndarray], dict]:
    """Compile one program; return (float32 arrays, JSON-able config)."""
    from tracr.compiler import compiling
    from tracr.transformer import encoder as tracr_encoder

    spec = PROGRAMS[name]
    model = compiling.compile_rasp_to_model(
        _program(name), vocab=set(spec["vocab"]), max_seq_len=spec["max_seq_len"],
        causal=False, compiler_bos=COMPILER_BOS, compiler_pad=COMPILER_PAD, mlp_exactness=MLP_EXACTNESS)
    cfg = model.model_config
    if cfg.layer_norm:
        raise RuntimeError("tracr compiled a model with layer norm; the port assumes none")
    params = {k: {p: np.asarray(v, dtype=np.float32) for p, v in d.items()} for k, d in model.params.items()}

    arrays = {
        "token_embed": params["token_embed"]["embeddings"],
        "pos_embed": params["pos_embed"]["embeddings"],
    }
    for layer in range(cfg.num_layers):
        prefix = f"transformer/layer_{layer}"
        for part in ("query", "key", "value", "linear"):
            for p in ("w", "b"):
                arrays[f"layers.{layer}.attn.{part}.{p}"] = params[f"{prefix}/attn/{part}"][p]
        for part in ("linear_1", "linear_2"):
            for p in ("w", "b"):
                arrays[f"layers.{layer}.mlp.{part}.{p}"] = params[f"{prefix}/mlp/{part}"][p]
    unknown = set(params) - {"token_embed", "pos_embed"} - {
        f"transformer/layer_{l}/{m}" for l in range(cfg.num_layers)
        for m in ("attn/query", "attn/key", "attn/value", "attn/linear", "mlp/linear_1", "mlp/linear_2")}
    if unknown:
        raise RuntimeError(f"unexpected tracr parameters: {sorted(unknown)}")

    labels = list(model.residual_labels)
    d_model = len(labels)
    in_enc = model.input_encoder
    encoding = [[tok, int(i)] for tok, i in sorted(in_enc.encoding_map.items(), key=lambda kv: kv[1])]
    config = {
        "name": name,
        "program": {"reverse": "make_reverse(tokens)", "xproportion": 'make_frac_prevs(tokens == "x")'}[name],
        "vocab": spec["vocab"],
        "max_seq_len": spec["max_seq_len"],
        "input_encoding": encoding,  # [token, id] pairs, ids 0..V-1
        "bos_token": COMPILER_BOS,
        "bos_id": int(in_enc.bos_encoding),
        "pad_token": COMPILER_PAD,
        "pad_id": int(in_enc.pad_encoding),
        "num_layers": int(cfg.num_layers),
        "num_heads": int(cfg.num_heads),
        "d_model": d_model,
        "key_size": int(cfg.key_size),
        "mlp_hidden_size": int(cfg.mlp_hidden_size),
        "causal": bool(cfg.causal),
        "layer_norm": False,
        "activation": "relu",
        "residual_labels": labels,
        "mlp_exactness": MLP_EXACTNESS,
        "tracr_version": metadata.version("tracr-pypi"),
    }
    if isinstance(model.output_encoder, tracr_encoder.CategoricalEncoder):
        # The unembedding projects the residual onto the output space's basis directions.
        out_map = model.output_encoder.encoding_map
        out_labels = [f"{_sink_label(labels, out_map)}:{tok}" for tok in out_map]
        unembed = np.zeros((d_model, len(out_map)), dtype=np.float32)
        for tok, j in out_map.items():
            unembed[labels.index(f"{_sink_label(labels, out_map)}:{tok}"), j] = 1.0
        arrays["unembedding"] = unembed
        config["output"] = {
            "kind": "categorical",
            "encoding": [[tok, int(j)] for tok, j in sorted(out_map.items(), key=lambda kv: kv[1])],
            "labels": out_labels,
        }
    else:
        out_dim = next(i for i, lab in enumerate(labels) if lab.startswith("frac_prevs"))
        if out_dim != 0:
            raise RuntimeError(f"frac_prevs is residual dimension {out_dim}, expected 0")
        config["output"] = {"kind": "numerical", "output_dim": out_dim, "label": labels[out_dim]}

    _self_check(name, model, arrays, config)
    return arrays, config


def _sink_label(labels: list[str], out_map: dict) -> str:
    """The residual-label stem of the categorical output (e.g. "reverse_1")."""
    stems = {lab.rsplit(":", 1)[0] for lab in labels if ":" in lab}
    for stem in sorted(stems):
        if stem.startswith("reverse") and all(f"{stem}:{tok}" in labels for tok in out_map):
            return stem
    raise RuntimeError("could not find the output directions in the residual basis")


def _self_check(name, model, arrays, config):
    """The exported unembedding must reproduce tracr's own decoded outputs on a few inputs."""
    spec = PROGRAMS[name]
    rng = np.random.default_rng(0)
    for _ in range(4):
        toks = [spec["vocab"][i] for i in rng.integers(0, len(spec["vocab"]), spec["max_seq_len"])]
        out = model.apply([COMPILER_BOS] + toks)
        res = np.asarray(out.transformer_output)[0]
        if config["output"]["kind"] == "categorical":
            dec = {j: tok for tok, j in config["output"]["encoding"]}
            got = [dec[int(j)] for j in np.argmax(res @ arrays["unembedding"], -1)[1:]]
            if got != out.decoded[1:] or got != toks[::-1]:
                raise RuntimeError(f"unembedding check failed on {toks}: {got} vs {out.decoded}")
        else:
            if not np.allclose(res[1:, config["output"]["output_dim"]], out.decoded[1:], atol=1e-6):
                raise RuntimeError(f"output-dimension check failed on {toks}")


def _dump_json(config: dict) -> str:
    """One top-level key per line: readable in a diff, and still plain JSON."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in config.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: the package data folder)")
    ap.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    ap.add_argument("programs", nargs="*", default=list(PROGRAMS), help="programs (default: all)")
    args = ap.parse_args(argv)
    from safetensors.numpy import load_file, save_file

    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    failed = False
    for name in args.programs:
        arrays, config = compile_program(name)
        wpath, cpath = os.path.join(out, f"{name}.safetensors"), os.path.join(out, f"{name}.json")
        if args.check:
            old = load_file(wpath)
            with open(cpath) as f:
                old_cfg = json.load(f)
            same = set(old) == set(arrays) and all(np.array_equal(old[k], arrays[k]) for k in arrays)
            same_cfg = {k: v for k, v in old_cfg.items() if k != "tracr_version"} == \
                json.loads(json.dumps({k: v for k, v in config.items() if k != "tracr_version"}))
            print(f"{name}: weights {'match' if same else 'DIFFER'}, config {'matches' if same_cfg else 'DIFFERS'}")
            failed |= not (same and same_cfg)
            continue
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, wpath,
                  metadata={"program": config["program"]})
        os.chmod(wpath, 0o644)  # safetensors writes 0600
        with open(cpath, "w") as f:
            f.write(_dump_json(config))
        print(f"{name}: {config['num_layers']} layers x {config['num_heads']} heads, d_model {config['d_model']}, "
              f"key size {config['key_size']}, MLP {config['mlp_hidden_size']}, BOS id {config['bos_id']} "
              f"-> {wpath}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
