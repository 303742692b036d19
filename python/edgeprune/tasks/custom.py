"""The user's own clean/corrupted pairs (the custom JSONL format).

One JSON object per line (or per list item):
    {"clean": "<prompt> <predict>answer</predict>", "corrupted": "<corrupted prompt>", "split": "train",
     "counterfactual": "other answer"}
The model input is the clean text with the tags removed; the corrupted input is the corrupted
prompt alone, padded to the clean input's length. The clean prompt (the clean text before
<predict>, trailing spaces removed) and the corrupted prompt must tokenise to the same length.
The loss reads the answer's positions: from the last prompt token to the token before the
answer's last token. `split` is optional; an item without one belongs to every split (the
reference ignored the key, method.md 9.8). `counterfactual`, optional, is the answer the corrupted
prompt leads to: its first token is the distractor of the logit difference (faithfulness curves'
metric); without it those curves use KL.
"""
from __future__ import annotations

import json
import os

from ..errors import UserError
from .base import Example, Task, TaskDataset
from . import metrics as M
from .encoding import Encoder
from .splits import SPLITS, MissingSplit, check_split

OPEN, CLOSE = "<predict>", "</predict>"


class CustomTask(Task):
    """Metrics: KL over the answer's positions (mean), exact match (the circuit's argmax equals the
    full model's at every answer position) and accuracy (it equals the answer's tokens)."""
    name = "custom"
    position_reduction = "mean"
    max_length = 64

    def metrics(self, circuit_logits, full_logits, batch):
        out = super().metrics(circuit_logits, full_logits, batch)
        targets = circuit_logits.new_zeros(batch.position_mask.shape, dtype=batch.positions.dtype)
        for row, tokens in enumerate(batch.labels):
            targets[row, :len(tokens)] = targets.new_tensor(tokens)
        out["accuracy"] = M.sequence_accuracy(circuit_logits, targets, batch.position_mask)
        if bool((batch.distractors >= 0).all()):
            out["logit_difference"] = M.logit_difference(circuit_logits[:, 0], batch.answers, batch.distractors)
        return out


def read_jsonl(path) -> tuple[list, list[int] | None]:
    """The items of a JSONL file and their line numbers (or the items of a .json file holding one list)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if str(path).endswith(".json") and text.lstrip().startswith("["):
        return json.loads(text), None
    items, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise UserError(f"{path}, line {number}: not valid JSON ({error.msg}): {line[:200]!r}") from None
        lines.append(number)
    return items, lines


def dataset(items, tokenizer, split: str = "train", n: int | None = None, seed: int = 0, *,
            source: str = "custom data", lines: list[int] | None = None) -> TaskDataset:
    """Tokenise the items of `split` (items without a split are in every split), in their order.

    seed is accepted for a uniform signature; custom data keeps the user's order.
    """
    check_split(split)
    if n is not None and n < 1:
        raise UserError(f"n must be a positive number of examples, got {n}")
    encoder = Encoder(tokenizer)
    chosen = []
    present = set()
    for index, item in enumerate(items):
        where = _where(source, index, lines)
        if not isinstance(item, dict) or not isinstance(item.get("clean"), str) \
                or not isinstance(item.get("corrupted"), str):
            raise UserError(f"{where}: expected an object with string fields 'clean' and 'corrupted', got {item!r}")
        item_split = item.get("split")
        if item_split is not None and item_split not in SPLITS:
            raise UserError(f"{where}: unknown split {item_split!r}; expected one of {', '.join(SPLITS)}")
        present.add(item_split)
        if item_split in (None, split):
            chosen.append((index, item))
    if not chosen:
        raise MissingSplit(f"{source} has no {split!r} examples (its splits: "
                         f"{', '.join(sorted(s for s in present if s)) or 'none'})")
    if n is not None:
        if n > len(chosen):
            raise UserError(f"n={n} is more than the {len(chosen)} {split!r} examples in {source}")
        chosen = chosen[:n]
    examples = [make_example(encoder, item, _where(source, index, lines)) for index, item in chosen]
    return TaskDataset(CustomTask(), examples, split=split, pad_id=encoder.pad_id)


def make_example(encoder: Encoder, item: dict, where: str) -> Example:
    clean_text, corrupted_text = item["clean"], item["corrupted"]
    if clean_text.count(OPEN) != 1 or clean_text.count(CLOSE) != 1 or clean_text.index(OPEN) > clean_text.index(CLOSE):
        raise UserError(f"{where}: 'clean' must contain one {OPEN}answer{CLOSE} span: {clean_text!r}")
    before, rest = clean_text.split(OPEN)
    answer, after = rest.split(CLOSE)
    prompt = before.rstrip()
    if not prompt:
        raise UserError(f"{where}: the clean text has no prompt before {OPEN}: {clean_text!r}")
    if not answer.strip():
        raise UserError(f"{where}: the {OPEN} span is empty: {clean_text!r}")
    if OPEN in corrupted_text or CLOSE in corrupted_text:
        raise UserError(f"{where}: 'corrupted' must be the corrupted prompt only, without the answer or "
                        f"tags: {corrupted_text!r}")
    full = encoder.encode(before + answer + after)
    prompt_ids = encoder.encode(prompt)
    through_answer = encoder.encode((before + answer).rstrip())
    if full[:len(prompt_ids)] != prompt_ids or full[:len(through_answer)] != through_answer:
        raise UserError(f"{where}: the prompt's tokens change when the answer follows it (the answer merges "
                        f"with the token before it); start the answer with a space or end the prompt on a "
                        f"word: {clean_text!r}")
    corrupted = encoder.encode(corrupted_text.rstrip())
    if len(corrupted) != len(prompt_ids):
        raise UserError(f"{where}: the clean prompt has {len(prompt_ids)} tokens but the corrupted prompt has "
                        f"{len(corrupted)}; they must tokenise to the same length "
                        f"(clean prompt {prompt!r}, corrupted {corrupted_text!r})")
    start, end = len(prompt_ids), len(through_answer)
    corrupted = corrupted + [encoder.pad_id] * (len(full) - len(corrupted))
    return Example(clean=full, corrupted=corrupted, positions=list(range(start - 1, end - 1)),
                   answer=full[start], distractor=_counterfactual(encoder, item, before, prompt_ids, full[start], where),
                   label=full[start:end], text=clean_text, corrupted_text=corrupted_text)


def _counterfactual(encoder: Encoder, item: dict, before: str, prompt_ids: list[int], answer: int, where: str):
    """The first token of the optional counterfactual answer, tokenised after the clean prompt as the answer is."""
    other = item.get("counterfactual")
    if other is None:
        return None
    if not isinstance(other, str) or not other.strip():
        raise UserError(f"{where}: 'counterfactual' must be the corrupted prompt's answer, a non-empty string; "
                        f"got {other!r}")
    ids = encoder.encode((before + other).rstrip())
    if ids[:len(prompt_ids)] != prompt_ids or len(ids) == len(prompt_ids):
        raise UserError(f"{where}: the counterfactual {other!r} merges with the prompt's last token; start it with a "
                        "space as the answer does")
    if ids[len(prompt_ids)] == answer:
        raise UserError(f"{where}: the counterfactual {other!r} starts with the same token as the answer; the logit "
                        "difference needs another first token")
    return ids[len(prompt_ids)]


def _where(source: str, index: int, lines: list[int] | None) -> str:
    return f"{source}, example {index}" + (f" (line {lines[index]})" if lines else "")


def from_path(path, tokenizer, split: str = "train", n: int | None = None, seed: int = 0) -> TaskDataset:
    path = os.fspath(path)
    items, lines = read_jsonl(path)
    return dataset(items, tokenizer, split, n, seed, source=path, lines=lines)
