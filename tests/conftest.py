"""Shared fixtures: a tokenizer and corpora from ../shared when present, else made here.

Both kinds run whenever ../shared exists, so CI covers the real Nemotron-compatible tokenizer
on real text and the self-made path that a checkout without ../shared relies on.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_TOKENIZER = SHARED / "tokenizers" / "nemotron-nano-compat"
SHARED_CORPORA = SHARED / "corpora"
HAVE_SHARED = SHARED_TOKENIZER.is_dir() and (SHARED_CORPORA / "gcide.jsonl.gz").is_file()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

WORDS = (
    "the of and to in is was for on that with as by at from his her it an were are "
    "which this be or have had not but they one been two has their who its new more "
    "first some would other time into than these may only after years also over most "
    "river castle engine harbour lantern meadow quarrel ribbon saddle thimble velvet "
    "wander yonder zephyr anchor bramble cinder dapple ember fathom gossamer hollow"
).split()


def make_text(rng: random.Random, sentences: int) -> str:
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 16))]
        out.append(" ".join(words).capitalize() + rng.choice(".!?"))
    return " ".join(out)


def write_jsonl(path: Path, n: int, seed: int, prefix: str) -> Path:
    rng = random.Random(seed)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        for i in range(n):
            f.write(
                json.dumps({"id": f"{prefix}-{i}", "text": make_text(rng, rng.randint(2, 20))})
                + "\n"
            )
    return path


def make_tokenizer(folder: Path) -> Path:
    """A small byte-level BPE trained here, saved the way the hub ships fast tokenizers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator((make_text(rng, 5) for _ in range(2000)), trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "clean_up_tokenization_spaces": False,
            }
        )
    )
    return folder


@dataclass(frozen=True)
class Corpus:
    """A tokenizer and a two-dataset blend to run the pipeline on."""

    kind: str
    tokenizer: Path
    blend: Path


def _shared_corpus(tmp: Path) -> Corpus:
    blend = tmp / "blend.json"
    blend.write_text(
        json.dumps(
            {
                "name": "shared",
                "tokenizer": str(SHARED_TOKENIZER),
                "split": {"valid": 0.005, "test": 0.005},
                "datasets": [
                    {
                        "name": "gcide",
                        "weight": 0.7,
                        "files": str(SHARED_CORPORA / "gcide.jsonl.gz"),
                        "format": "jsonl",
                    },
                    {
                        "name": "wikitext",
                        "weight": 0.3,
                        "files": str(SHARED_CORPORA / "wikitext2/*.txt"),
                        "format": "txt",
                    },
                ],
            }
        )
    )
    return Corpus("shared", SHARED_TOKENIZER, blend)


def _selfmade_corpus(tmp: Path) -> Corpus:
    tok = make_tokenizer(tmp / "tokenizer")
    data = tmp / "data"
    data.mkdir()
    write_jsonl(data / "alpha.jsonl.gz", 1200, 1, "alpha")
    write_jsonl(data / "beta.jsonl", 800, 2, "beta")
    blend = tmp / "blend.json"
    blend.write_text(
        json.dumps(
            {
                "name": "selfmade",
                "tokenizer": "tokenizer",
                "split": {"valid": 0.005, "test": 0.005},
                "datasets": [
                    {"name": "alpha", "weight": 0.7, "files": "data/alpha.jsonl.gz"},
                    {"name": "beta", "weight": 0.3, "files": "data/beta.jsonl"},
                ],
            }
        )
    )
    return Corpus("selfmade", tok, blend)


@pytest.fixture(scope="session", params=["shared", "selfmade"])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "shared":
        if not HAVE_SHARED:
            pytest.skip("../shared is not beside this checkout")
        return _shared_corpus(tmp)
    return _selfmade_corpus(tmp)


@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out.strip().splitlines()[-1])


def pipe(
    *args: str | Path,
    cache: Path,
    cwd: Path | None = None,
    env: dict | None = None,
    timeout: float = 600,
) -> Result:
    """Run the real `pipe` command in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args), "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
