"""blend.json -> blend_per_split -> megatron-core's BlendedMegatronDatasetBuilder(GPTDataset).

The same reader the training entry uses, down to the samples Megatron would train on; no GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.data import BlendFileError, blend_per_split, check_blend_json, pairs

EOD = 2
VOCAB = 600


def write_prefix(prefix: Path, docs: list[list[int]]) -> str:
    """A Megatron bin/idx pair holding `docs` (each ends with EOD, as pipe tokenize writes)."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.int32)
    for doc in docs:
        builder.add_document(np.array([*doc, EOD], dtype=np.int32), [len(doc) + 1])
    builder.finalize(f"{prefix}.idx")
    return str(prefix)


def publish_blend(folder: Path, tokenizer: Path, vocab: int = 600, eod: int = 2) -> Path:
    """A published megatron blend (the real cache API, cache in `folder`) over one small
    prefix, whose manifest names `tokenizer` with `vocab` ids and EOD `eod`; its blend.json."""
    from pipeline.cache import Cache

    cache = Cache(folder / "cache")
    prefix = write_prefix(folder / "train", [list(range(5, 80))] * 50)
    work = cache.work_dir(f"blend{vocab}", fresh=True)
    (work / "blend.json").write_text(json.dumps({"train": [1.0, prefix], "valid": [], "test": []}))
    facts = {"path": str(tokenizer), "vocab_size": vocab, "eod_id": eod}
    art = cache.publish(
        "megatron_blend",
        f"blend{vocab}",
        work,
        name="t",
        config={},
        parents=[],
        inputs={},
        stats={"tokenizer": facts},
    )
    return art.path / "blend.json"


@pytest.fixture
def blend(tmp_path: Path) -> Path:
    """Two weighted train datasets whose token ids do not overlap, one valid set, no test."""
    a = write_prefix(tmp_path / "a_train", [list(range(10, 10 + n)) for n in (50, 70, 90)] * 20)
    b = write_prefix(tmp_path / "b_train", [list(range(300, 300 + n)) for n in (40, 60)] * 20)
    v = write_prefix(tmp_path / "a_valid", [list(range(10, 60))] * 10)
    path = tmp_path / "blend.json"
    path.write_text(json.dumps({"train": [0.75, a, 0.25, b], "valid": [1.0, v], "test": []}))
    return path


def test_blend_json_becomes_blend_per_split(blend: Path) -> None:
    train, valid, test = blend_per_split(blend)
    folder = str(blend.parent)
    assert train == ([f"{folder}/a_train", f"{folder}/b_train"], [0.75, 0.25])
    assert valid == ([f"{folder}/a_valid"], [1.0])
    assert test is None  # an empty split is skipped, not an error
    assert check_blend_json(blend) == {"train": 2, "valid": 1, "test": 0}


def test_blend_reaches_megatron_dataset_builder(blend: Path) -> None:
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.tokenizers import MegatronTokenizer

    tokenizer = MegatronTokenizer.from_pretrained(
        metadata_path={"library": "null-text"}, vocab_size=VOCAB
    )
    seq = 32
    config = GPTDatasetConfig(
        random_seed=1234,
        sequence_length=seq,
        blend=None,
        blend_per_split=blend_per_split(blend),
        split=None,
        path_to_cache=str(blend.parent / "cache"),
        tokenizer=tokenizer,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
    )
    assert not config.mock  # megatron-core would train on mock data if the blend were lost
    train, valid, test = BlendedMegatronDatasetBuilder(
        GPTDataset, [400, 40, None], lambda: True, config
    ).build()
    assert test is None
    assert len(train) >= 400 and len(valid) >= 40
    from_a = 0
    for i in range(400):
        tokens = train[i]["tokens"].numpy()
        assert tokens.shape == (seq,)
        ids = set(tokens.tolist()) - {EOD}
        # Every sample comes from exactly one of the two datasets of the blend.
        assert ids <= set(range(10, 100)) or ids <= set(range(300, 360))
        from_a += ids <= set(range(10, 100))
    # Weights 0.75/0.25 reach Megatron's blending index.
    assert 0.7 < from_a / 400 < 0.8
    assert set(valid[0]["tokens"].numpy().tolist()) <= set(range(10, 60)) | {EOD}


def test_pairs_read_like_megatron() -> None:
    from megatron.core.datasets.utils import get_blend_from_list

    for items in (["0.3", "/a", "0.7", "/b"], ["/a", "/b"], ["/a"], ["x", "/a"]):
        ours = pairs(items)
        prefixes, weights = get_blend_from_list(items)
        assert [p for _, p in ours] == prefixes
        assert ([w for w, _ in ours] if weights else None) == (weights or None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"train": []}, "the train split is empty"),
        ({"valid": ["/x"]}, "with a 'train' list"),
        ({"train": ["/x"], "eval": []}, "unknown split"),
        ({"train": 3}, "must be a list"),
        ({"train": ["relative/prefix"]}, "is not absolute"),
        ({"train": ["/nowhere/prefix"]}, "has no .bin/.idx"),
        ({"train": [-1, "/nowhere/prefix"]}, "is not > 0"),
    ],
)
def test_bad_blend_json_is_refused_before_launch(
    tmp_path: Path, content: dict, message: str
) -> None:
    path = tmp_path / "blend.json"
    path.write_text(json.dumps(content))
    with pytest.raises(BlendFileError, match=message):
        check_blend_json(path)


def test_missing_idx_is_named(tmp_path: Path, blend: Path) -> None:
    (blend.parent / "b_train.idx").unlink()
    with pytest.raises(BlendFileError, match="b_train has no .idx"):
        check_blend_json(blend)
    with pytest.raises(BlendFileError, match="not JSON"):
        (tmp_path / "bad.json").write_text("{")
        check_blend_json(tmp_path / "bad.json")
