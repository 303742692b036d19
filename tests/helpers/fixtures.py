"""Trained models shipped under tests/fixtures, for tests that need a model that does a task.

    from helpers.fixtures import ioi_gpt2
    model, tokenizer = ioi_gpt2()     # GPT-2, 6 layers x 8 heads, solves edgeprune's IOI task

Loaded once per process (a few MB, well under a second); callers must not modify the model.
"""
from __future__ import annotations

import functools
import os

import torch
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
IOI_GPT2 = os.path.join(FIXTURES, "ioi-gpt2")


@functools.lru_cache(maxsize=None)
def ioi_gpt2():
    """(model, tokenizer) trained by scripts/train_ioi_fixture.py: fp32, eval mode, SDPA attention."""
    model = GPT2LMHeadModel.from_pretrained(IOI_GPT2, attn_implementation="sdpa", dtype=torch.float32).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(IOI_GPT2)
    return model, tokenizer
