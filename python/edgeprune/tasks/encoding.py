"""Tokenizer access for the tasks: one place decides how text becomes token ids.

Every prompt is encoded the same way, `tokenizer(text, add_special_tokens=False)` with the
tokenizer's own leading special tokens (Llama's BOS) put in front, as the reference keeps them.
Trailing special tokens (a tokenizer that appends EOS) are left out: the last prompt token must be
the one that predicts the answer.
"""
from __future__ import annotations
from ..errors import UserError


class Encoder:
    """Encodes prompts and finds the tokens a continuation gets in context."""

    def __init__(self, tokenizer):
        if tokenizer is None:
            raise UserError("this task needs a tokenizer (got None)")
        self.tokenizer = tokenizer
        self.pad_id = pad_id(tokenizer)
        self.prefix = _leading_special_tokens(tokenizer)
        self._cache: dict[str, list[int]] = {}

    def raw(self, text: str) -> list[int]:
        """Tokens of `text` alone, without special tokens."""
        if text in self._cache:
            return list(self._cache[text])
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prefetch(self, texts: list[str]) -> None:
        """Tokenise many texts in one call (a fast tokenizer batches them) for the next raw() calls;
        replaces what was prefetched before."""
        texts = list(dict.fromkeys(texts))
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        self._cache = dict(zip(texts, ids))

    def encode(self, text: str) -> list[int]:
        """Tokens of a model input: leading special tokens (BOS) and the text."""
        return self.prefix + self.raw(text)

    def continuation(self, prompt_ids: list[int], prompt: str, text: str) -> list[int] | None:
        """Tokens that `text` adds after `prompt`, or None if the prompt's tokens change.

        The answer token is read in context (e.g. " Mary" after "... to"), so it is the token the
        model actually predicts, for GPT-2 (" Mary") and for sentencepiece (Llama: "▁Mary") alike.
        """
        ids = self.encode(prompt + text)
        if ids[: len(prompt_ids)] != prompt_ids:
            return None
        return ids[len(prompt_ids):]

    def first_token(self, text: str) -> int | None:
        ids = self.raw(text)
        return ids[0] if ids else None

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)


def pad_id(tokenizer) -> int:
    """The pad token id, falling back to EOS (GPT-2 has no pad token), as the reference does."""
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    raise UserError("the tokenizer has neither a pad token nor an EOS token to pad with; set tokenizer.pad_token")


def _leading_special_tokens(tokenizer) -> list[int]:
    """The ids `add_special_tokens=True` puts before the text (BOS for Llama, none for GPT-2)."""
    probe = "a"
    with_special = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    without = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for start in range(len(with_special) - len(without) + 1):
        if with_special[start:start + len(without)] == without:
            return with_special[:start]
    return []
