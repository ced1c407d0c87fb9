"""Assemble the largest real corpus this project has offline: all of ../shared/corpora, blended.

GCIDE is already JSON lines of ~4 KB documents. Tiny Shakespeare (one file) and WikiText-2 (two
files) would each be one or two documents under the `txt` format (one file = one document), so
they could not be split into train and valid by document. This cuts them into real documents:
WikiText-2 into its articles (at its ` = Title = ` lines), Shakespeare into ~4 KB runs of whole
speeches (at blank lines, like GCIDE's entry groups). Blend weights are each dataset's share of
characters, so one pass over the blend is about one epoch of every dataset.

Usage: python3 training/gpu/assemble_corpus.py CORPORA_DIR TOKENIZER_DIR OUT_DIR
Writes OUT_DIR/{shakespeare,wikitext2}.jsonl.gz and OUT_DIR/all.json (the blend file).
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

TITLE = re.compile(r"^ = [^=].* = $")
CHUNK_CHARS = 4000


def wikitext_articles(paths: list[Path]) -> list[str]:
    """Articles of WikiText-2: a top-level ` = Title = ` line starts the next one."""
    docs: list[str] = []
    for path in paths:
        current: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if TITLE.match(line) and any(x.strip() for x in current):
                docs.append("\n".join(current).strip())
                current = []
            current.append(line)
        if any(x.strip() for x in current):
            docs.append("\n".join(current).strip())
    return docs


def speech_chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Runs of whole speeches (blank-line separated) of about `size` characters."""
    docs: list[str] = []
    current: list[str] = []
    length = 0
    for speech in text.split("\n\n"):
        current.append(speech)
        length += len(speech) + 2
        if length >= size:
            docs.append("\n\n".join(current).strip())
            current, length = [], 0
    if current:
        docs.append("\n\n".join(current).strip())
    return [d for d in docs if d]


def write_jsonl(path: Path, name: str, docs: list[str]) -> int:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({"id": f"{name}-{i:06d}", "text": doc}) + "\n")
    return sum(len(d) for d in docs)


def gcide_chars(path: Path) -> int:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return sum(len(json.loads(line)["text"]) for line in f)


def main(corpora: Path, tokenizer: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    wiki = wikitext_articles(
        [corpora / "wikitext2" / "valid.txt", corpora / "wikitext2" / "test.txt"]
    )
    shakespeare = speech_chunks((corpora / "tinyshakespeare.txt").read_text(encoding="utf-8"))
    chars = {
        "gcide": gcide_chars(corpora / "gcide.jsonl.gz"),
        "shakespeare": write_jsonl(out / "shakespeare.jsonl.gz", "shakespeare", shakespeare),
        "wikitext2": write_jsonl(out / "wikitext2.jsonl.gz", "wikitext2", wiki),
    }
    files = {
        "gcide": str((corpora / "gcide.jsonl.gz").resolve()),
        "shakespeare": str(out / "shakespeare.jsonl.gz"),
        "wikitext2": str(out / "wikitext2.jsonl.gz"),
    }
    total = sum(chars.values())
    blend = {
        "name": "all-corpora",
        "tokenizer": str(tokenizer.resolve()),
        "split": {"valid": 0.05, "test": 0.0},
        "datasets": [
            {"name": n, "weight": round(chars[n] / total, 6), "files": files[n], "format": "jsonl"}
            for n in chars
        ],
    }
    (out / "all.json").write_text(json.dumps(blend, indent=2) + "\n")
    docs = {"gcide": "9371", "shakespeare": len(shakespeare), "wikitext2": len(wiki)}
    for n in chars:
        print(f"{n}: {docs[n]} documents, {chars[n]:,} characters, weight {chars[n] / total:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
