"""The model's tokenizer is the data's: vocabulary and EOD checked, as Megatron will read them."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import HAVE_SHARED, SHARED_TOKENIZER

from training.tokenizer_check import TokenizerMismatch, check_tokenizer, inspect_tokenizer


def test_small_tokenizer_matches_its_record(small_tokenizer: Path) -> None:
    info = check_tokenizer(str(small_tokenizer), vocab_size=600, eod_id=2)
    assert (info.vocab_size, info.eod_id) == (600, 2)


def test_mismatches_are_refused(small_tokenizer: Path, tmp_path: Path) -> None:
    with pytest.raises(TokenizerMismatch, match="has 600 tokens but the data .* 131072"):
        check_tokenizer(str(small_tokenizer), vocab_size=131072, eod_id=2)
    with pytest.raises(TokenizerMismatch, match="ends documents with id 2 but the data used EOD"):
        check_tokenizer(str(small_tokenizer), vocab_size=600, eod_id=0)
    with pytest.raises(TokenizerMismatch, match="cannot load tokenizer"):
        check_tokenizer(str(tmp_path / "nothing"), vocab_size=600, eod_id=2)


@pytest.mark.skipif(not HAVE_SHARED, reason="../shared is not beside this checkout")
def test_compat_tokenizer_agrees_with_megatron() -> None:
    """Our check reads what Megatron's own HuggingFaceTokenizer reads."""
    from megatron.core.tokenizers import MegatronTokenizer

    ours = inspect_tokenizer(str(SHARED_TOKENIZER))
    theirs = MegatronTokenizer.from_pretrained(
        tokenizer_path=str(SHARED_TOKENIZER), metadata_path={"library": "huggingface"}
    )
    assert (ours.vocab_size, ours.eod_id) == (theirs.vocab_size, theirs.eod) == (131072, 2)
