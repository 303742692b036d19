"""Tokenizers built locally for tests (nothing is downloaded).

- word_level: one token per word (whitespace and punctuation split), like a tokenizer that never
  splits a name; optionally adds a BOS like Llama's, or splits digits in pairs (so "1732" is
  "17" "32", as Greater-Than needs).
- byte_bpe: a GPT-2-style byte-level BPE trained on the given text, so " Mary" (with its leading
  space) is one token when the text has it often enough, and rare words split; optionally splits
  digits in pairs, keeping a leading space (" 1732" is " 17" "32").
Both wrap the `tokenizers` object in transformers.PreTrainedTokenizerFast, with GPT-2's EOS
"<|endoftext|>" and no pad token unless asked.
"""
from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
BOS = "<s>"
UNK = "[UNK]"


def word_level(texts, *, bos: bool = False, pad: bool = False, split_digit_pairs: bool = False):
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    splitters = [pre_tokenizers.Whitespace()]
    if split_digit_pairs:
        splitters.append(pre_tokenizers.Split(Regex(r"\d\d"), behavior="isolated"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(splitters)
    specials = [EOS, UNK] + ([BOS] if bos else []) + (["<pad>"] if pad else [])
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials))
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tokenizer.token_to_id(BOS))])
    return _wrap(tokenizer, bos=bos, pad=pad)


def byte_bpe(texts, *, vocab_size: int = 2000, min_frequency: int = 2, pad: bool = False,
             split_digit_pairs: bool = False):
    tokenizer = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split_digit_pairs:  # " 1732" -> " 17" "32", as GPT-2 encodes most of these years
        byte_level = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r" ?\d\d"), behavior="isolated"), byte_level])
    tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[EOS] + (["<pad>"] if pad else []),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return _wrap(tokenizer, pad=pad)


def _wrap(tokenizer, *, bos: bool = False, pad: bool = False):
    kwargs = {"eos_token": EOS}
    if bos:
        kwargs["bos_token"] = BOS
    if pad:
        kwargs["pad_token"] = "<pad>"
    if UNK in tokenizer.get_vocab():
        kwargs["unk_token"] = UNK
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **kwargs)
