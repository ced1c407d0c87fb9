"""The tokenization engine gives HF `tokenizers`' exact tokens (+ EOD), document by document.

Reference everywhere: `Tokenizer.encode_batch(texts, add_special_tokens=False)` plus EOD.
Runs on the shared Nemotron-compatible tokenizer when ../shared is present and always on a
tokenizer made here; the 200 MB document test is marked `heavy` (about 30 s on 2 cores).
"""

from __future__ import annotations

import gzip
import json
import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HAVE_SHARED, SHARED_CORPORA, SHARED_TOKENIZER, make_text, make_tokenizer
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from stages import engine_text as et
from stages.engine import GigaTokenEngine, HFEngine, make_engine, read_tokenizer_json

EOD = 2  # `</s>` in both tokenizers


def sentencepiece_style() -> str:
    """A Llama-2-style BPE made here: `▁` for spaces, a prepended `▁`, byte fallback
    (GigaToken runs it on its SentencePiece backend)."""
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=["<unk>", "<s>", "</s>"])
    rng = random.Random(0)
    tok.train_from_iterator((make_text(rng, 5) + " é ü 中 😀" for _ in range(2000)), trainer)
    config = json.loads(tok.to_str())
    vocab = config["model"]["vocab"]
    for name in (f"<0x{b:02X}>" for b in range(256)):
        vocab.setdefault(name, len(vocab))
    return json.dumps(config)


@pytest.fixture(scope="module", params=["shared", "selfmade", "sentencepiece"])
def tok_json(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """tokenizer.json text of the shared Nemotron-compatible tokenizer, or of one made here."""
    if request.param == "shared":
        if not HAVE_SHARED:
            pytest.skip("../shared is not beside this checkout")
        return read_tokenizer_json(SHARED_TOKENIZER)
    if request.param == "sentencepiece":
        return sentencepiece_style()
    return read_tokenizer_json(make_tokenizer(tmp_path_factory.mktemp("tok")))


def reference(tok_json: str, docs: list[str]) -> list[list[int]]:
    encs = Tokenizer.from_str(tok_json).encode_batch(docs, add_special_tokens=False)
    return [e.ids + [EOD] for e in encs]


def per_doc(out) -> list[list[int]]:
    ends = np.cumsum(out.lengths)
    return [out.tokens[e - n : e].tolist() for e, n in zip(ends, out.lengths, strict=True)]


def assert_exact(engine: HFEngine, tok_json: str, docs: list[str]) -> None:
    out = engine.encode(docs)
    want = reference(tok_json, docs)
    got = per_doc(out)
    assert len(got) == len(want) == out.stats.docs
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, f"{len(bad)} documents differ, first {bad[:5]}"
    assert out.tokens.dtype == np.int32 and out.stats.tokens == out.tokens.size


def real_corpora() -> dict[str, list[str]]:
    if not HAVE_SHARED:
        return {}
    with gzip.open(SHARED_CORPORA / "gcide.jsonl.gz", "rt", encoding="utf-8") as f:
        gcide = [json.loads(line)["text"] for line in f]
    shakespeare = (SHARED_CORPORA / "tinyshakespeare.txt").read_text(encoding="utf-8")
    wiki = [
        p.read_text(encoding="utf-8") for p in sorted((SHARED_CORPORA / "wikitext2").glob("*.txt"))
    ]
    return {
        "gcide": gcide,
        "shakespeare-whole": [shakespeare],
        "shakespeare-paragraphs": shakespeare.split("\n\n"),
        "wikitext2-files": wiki,
        "wikitext2-lines": [line for text in wiki for line in text.splitlines()],
    }


@pytest.mark.skipif(not HAVE_SHARED, reason="../shared is not beside this checkout")
@pytest.mark.parametrize("name", list(real_corpora()) or ["none"])
def test_gigatoken_equals_hf_on_real_corpora(name: str) -> None:
    docs = real_corpora()[name]
    tok_json = read_tokenizer_json(SHARED_TOKENIZER)
    engine = make_engine(tok_json, EOD)
    assert isinstance(engine, GigaTokenEngine)
    assert_exact(engine, tok_json, docs)


def random_unicode_docs(seed: int, n: int) -> list[str]:
    """Random code points over the whole range mixed with ASCII, plus runs from planes 3-15
    (where GigaToken and HF were seen to differ) right next to ASCII."""
    rng = random.Random(seed)

    def char() -> str:
        cp = rng.randint(0, 0x10FFFF)
        return chr(cp if not 0xD800 <= cp <= 0xDFFF else 0x41)

    docs = []
    for i in range(n):
        if i % 2:
            run = "".join(chr(rng.randint(0x30000, 0xFFFFF)) for _ in range(rng.randint(1, 6)))
            docs.append(f"{rng.choice('@&(x ')}{run}{rng.choice('GQ=+ .')}{make_text(rng, 1)}")
        else:
            docs.append(
                "".join(
                    char() if rng.random() < 0.6 else chr(rng.randint(32, 126)) for _ in range(60)
                )
            )
    return docs


def test_gigatoken_equals_hf_on_adversarial_unicode(tok_json: str) -> None:
    docs = random_unicode_docs(7, 2000) + ["", " ", "\U000323b0&G", "x\ue000y", "a\U000f0000b"]
    engine = make_engine(tok_json, EOD, engine="gigatoken")
    out = engine.encode(docs)
    assert out.stats.routed_docs >= 1000 and out.stats.fallback_docs == out.stats.routed_docs
    assert_exact(engine, tok_json, docs)
    assert_exact(make_engine(tok_json, EOD, engine="hf"), tok_json, docs)


def test_routing_is_needed_and_verification_catches_what_it_misses(
    tok_json: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Without routing GigaToken really differs (CJK Ext. J next to ASCII, shared tokenizer);
    the verification sample then catches it and HF redoes the batch."""
    docs = [f"@{chr(0x32DB2 + i)}&Gx {make_text(random.Random(i), 2)}" for i in range(50)]
    engine = make_engine(tok_json, EOD, engine="gigatoken", verify=1.0)
    raw = engine.gt_encode(et.as_large_strings(docs))
    hf = engine.hf_encode(et.as_large_strings(docs))
    differs = not np.array_equal(raw[0], hf[0])
    monkeypatch.setattr(et, "unstable_rows", lambda arr: np.zeros(0, np.int64))
    out = engine.encode(docs)
    assert out.stats.mismatched_batches == int(differs)
    assert out.stats.fallback_docs == (len(docs) if differs else 0)
    assert_exact(engine, tok_json, docs)
    if request.node.callspec.params["tok_json"] == "shared":
        assert differs  # the case seen in ../shared/notes/gigatoken.md


def test_every_stable_code_point_tokenizes_identically(tok_json: str) -> None:
    """The routing table is complete: every code point outside it (all of Unicode 15's
    assigned ones) gives GigaToken == HF in several contexts, without routing."""
    table = et.unstable_table()
    stable = np.flatnonzero(~table)
    assert stable.size > 140_000 and table[0x323B0] and table[0xE000] and not table[ord("a")]
    docs = [
        "".join(f"a{c}b {c}{c}x 7{c}. @{c}Q\n{c} \t{c}" for c in map(chr, stable[i : i + 8]))
        for i in range(0, stable.size, 8)
    ]
    engine = make_engine(tok_json, EOD, engine="gigatoken")
    pieces = et.as_large_strings(docs)
    got, want = engine.gt_encode(pieces), engine.hf_encode(pieces)
    assert np.array_equal(got[1], want[1]) and np.array_equal(got[0], want[0])


def test_unstable_scan_matches_python(tok_json: str) -> None:
    """The scan skips blocks without multi-byte characters and decodes runs of the others a
    window at a time: every block and window size finds what a per-character check finds,
    also in mostly-ASCII text with rare unstable characters on block edges, and in a slice."""
    import random

    rng = random.Random(3)
    sparse = [
        "".join(
            rng.choice(["ab c\n" * rng.randint(1, 40), "é", "\U000323b0", "\ue000"])
            for _ in range(rng.randint(0, 30))
        )
        for _ in range(300)
    ]
    docs = random_unicode_docs(3, 400) + ["plain ascii", "", "é", "\U000323b0", "中文"] + sparse
    table = et.unstable_table()
    arr = et.as_large_strings(docs)
    for lo in (0, 57):  # (an array slice starts inside its data buffer)
        want = [i for i, d in enumerate(docs[lo:]) if any(table[ord(c)] for c in d)]
        for block, window in ((4096, 1 << 24), (64, 1 << 24), (16, 100), (1, 7), (5, 5)):
            got = et.unstable_rows(arr.slice(lo), block=block, window=window).tolist()
            assert got == want, (lo, block, window)


def medium_documents() -> list[str]:
    """A few MB each: prose with newlines, one long line, digit and whitespace runs,
    and (with ../shared) GCIDE joined into one document."""
    rng = random.Random(5)
    prose = "\n".join(make_text(rng, rng.randint(1, 30)) for _ in range(3_000))
    one_line = " ".join(make_text(rng, 20) for _ in range(1_000))
    runs = "\n".join(
        rng.choice(
            [
                "1" * rng.randint(1, 5000),
                " " * rng.randint(1, 3000),
                "x\n\n  \n" * 50,
                make_text(rng, 3),
            ]
        )
        for _ in range(1_000)
    )
    docs = [prose, one_line, runs]
    if HAVE_SHARED:
        with gzip.open(SHARED_CORPORA / "gcide.jsonl.gz", "rt", encoding="utf-8") as f:
            docs.append(
                "\n".join(json.loads(line)["text"] for _, line in zip(range(400), f, strict=False))
            )
    return docs


@pytest.mark.parametrize("kind", ["gigatoken", "hf"])
def test_cut_documents_equal_unsplit(
    tok_json: str, kind: str, request: pytest.FixtureRequest
) -> None:
    """Cut documents give the unsplit tokens. The prepended `▁` of the SentencePiece-style
    tokenizer fails every cut check, so its documents stay whole (exact, memory unbounded)."""
    docs = medium_documents()
    engine = make_engine(tok_json, EOD, engine=kind, piece_bytes=64 << 10)
    out = engine.encode(docs)
    if request.node.callspec.params["tok_json"] == "sentencepiece":
        assert out.stats.pieces == len(docs)
    else:
        assert out.stats.pieces > 4 * len(docs)  # they really were cut
    assert per_doc(out) == reference(tok_json, docs)


def test_threads_pickle_and_identity(tok_json: str, tmp_path: Path) -> None:
    docs = random_unicode_docs(11, 50)
    one = make_engine(tok_json, EOD, threads=1)
    assert isinstance(one, GigaTokenEngine) and one.parallel is False
    clone = pickle.loads(pickle.dumps(one))
    assert np.array_equal(clone.encode(docs).tokens, one.encode(docs).tokens)
    assert one.describe()["engine"] == "gigatoken" and "+tokenizers-" in one.describe()["version"]
    (tmp_path / "tokenizer.json").write_text(tok_json)
    assert make_engine(tmp_path, EOD, engine="hf").describe()["engine"] == "hf"
    with pytest.raises(ValueError, match="choose one of"):
        make_engine(tmp_path, EOD, engine="fast")


def test_auto_falls_back_to_hf_where_gigatoken_cannot_load() -> None:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]", "[SEP]", "[EOS]"])
    tok.train_from_iterator([make_text(random.Random(1), 5) for _ in range(200)], trainer)
    engine = make_engine(tok.to_str(), EOD)
    assert engine.name == "hf" and "WordPiece" in engine.describe()["note"]
    assert_exact(engine, tok.to_str(), ["hello there", ""])
    with pytest.raises(RuntimeError, match="WordPiece"):
        make_engine(tok.to_str(), EOD, engine="gigatoken")


HUGE = """
import resource, sys, time
import numpy as np
from stages.engine import make_engine
tok, size = sys.argv[1], int(sys.argv[2])
line = b"The river castle wanders over the meadow, yonder 1234 harbour lanterns.\\n"
text = (line * (size // len(line) + 1))[:size].decode()
engine = make_engine(tok, 2, threads=2)
t = time.perf_counter()
out = engine.encode([text])
del text
print(out.stats.pieces, out.tokens.size, out.lengths[0], time.perf_counter() - t,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.heavy
def test_200mb_document_in_bounded_memory(tmp_path: Path) -> None:
    """HEAVY: one 200 MB document in a fresh process: peak RSS under 4 GB (issue 11)."""
    tok = make_tokenizer(tmp_path / "tok")
    size = 200 << 20
    proc = subprocess.run(
        [sys.executable, "-c", HUGE, str(tok), str(size)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    pieces, n_tokens, length, seconds, peak = proc.stdout.split()
    print(f"200 MB document: {pieces} pieces, {n_tokens} tokens, {seconds} s, peak RSS {peak}")
    assert int(pieces) >= 100 and int(n_tokens) == int(length) > size // 10
    assert int(peak) < 4 << 30
