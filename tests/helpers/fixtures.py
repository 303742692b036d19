"""Trained models shipped under tests/fixtures, for tests that need a model that does a task.

    from helpers.fixtures import ioi_gpt2, ioi_b_gpt2_4x4
    model, tokenizer = ioi_gpt2()         # GPT-2, 6 layers x 8 heads, solves edgeprune's "ioi" task
    model, tokenizer = ioi_b_gpt2_4x4()   # GPT-2, 4 layers x 4 heads, solves "ioi-b" (other templates, names)

Loaded once per process (a few MB, well under a second); callers must not modify the model.
"""
from __future__ import annotations

import functools
import os

import torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
IOI_GPT2 = os.path.join(FIXTURES, "ioi-gpt2")
IOI_B_GPT2_4X4 = os.path.join(FIXTURES, "ioi-b-gpt2-4x4")


@functools.lru_cache(maxsize=None)
def ioi_gpt2():
    """(model, tokenizer) trained by scripts/train_ioi_fixture.py: fp32, eval mode, SDPA attention."""
    return _load(IOI_GPT2)


@functools.lru_cache(maxsize=None)
def ioi_b_gpt2_4x4():
    """(model, tokenizer) trained on "ioi-b" by scripts/train_ioi_fixture.py --task ioi-b (its train_log.jsonl
    has the command's settings): fp32, eval mode, SDPA attention."""
    return _load(IOI_B_GPT2_4X4)


def _load(path):
    model = GPT2LMHeadModel.from_pretrained(path, attn_implementation="sdpa", dtype=torch.float32).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    return model, tokenizer
