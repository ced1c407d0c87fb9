"""The model's tokenizer is the data's tokenizer: same folder or hub id, same vocabulary and EOD.

Megatron reads the vocabulary size and the end-of-document id from the tokenizer at start-up; a
model trained on ids from one tokenizer with another's embedding table trains on garbage without
an error. This check loads the tokenizer the way Megatron's `HuggingFaceTokenizer` does
(`AutoTokenizer`, `len(tok)`, `eos_token`) and compares it with what the data recorded.
"""

from __future__ import annotations

from dataclasses import dataclass


class TokenizerMismatch(ValueError):
    """The tokenizer does not match the one the data was tokenized with."""


@dataclass(frozen=True)
class TokenizerInfo:
    """What Megatron will see: the reference it loads, its vocabulary size and EOD id."""

    name: str
    vocab_size: int
    eod_id: int | None


def inspect_tokenizer(name: str) -> TokenizerInfo:
    """Load a tokenizer as Megatron will and read its vocabulary size and EOD id."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # transformers raises OSError, ValueError, HF errors...
        raise TokenizerMismatch(f"cannot load tokenizer {name!r}: {exc}") from exc
    eod = None if tok.eos_token is None else tok.convert_tokens_to_ids(tok.eos_token)
    return TokenizerInfo(name=name, vocab_size=len(tok), eod_id=eod)


def check_tokenizer(name: str, vocab_size: int, eod_id: int) -> TokenizerInfo:
    """Refuse a tokenizer whose vocabulary size or EOD differs from the data's record."""
    info = inspect_tokenizer(name)
    if info.vocab_size != vocab_size:
        raise TokenizerMismatch(
            f"tokenizer {name!r} has {info.vocab_size} tokens but the data was tokenized with a "
            f"vocabulary of {vocab_size}"
        )
    if info.eod_id != eod_id:
        raise TokenizerMismatch(
            f"tokenizer {name!r} ends documents with id {info.eod_id} but the data used EOD id "
            f"{eod_id}; Megatron would not see document boundaries"
        )
    return info
