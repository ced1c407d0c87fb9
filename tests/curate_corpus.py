"""A corpus with planted junk and duplicates, each kind caught by exactly one curate step.

Good documents are random sentences over a small vocabulary (see conftest.make_text), long
enough to pass every filter. Each junk kind is built to pass the steps before its own, so the
expected removal count of every step is exactly the number planted.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from conftest import make_text

GOOD = 1100  # > 1000, so the corpus spans two row groups (two Curator tasks)
FILTERS = {
    "word_count": {"min": 20, "max": 100_000},
    "non_alpha_numeric": {"max": 0.25},
    "repeating_top_ngrams": {"n": 2, "max": 0.2},
    "repeated_lines": {"min_unique": 0.7},
    "repeated_paragraphs": {"min_unique": 0.7},
    "urls": {"max": 0.2},
}
PLANTED = {
    "word_count": 7,
    "non_alpha_numeric": 5,
    "repeating_top_ngrams": 6,
    "repeated_lines": 4,
    "repeated_paragraphs": 3,
    "urls": 5,
    "exact_dedup": 6,
    "fuzzy_dedup": 5,
}
CURATE = {
    "filters": FILTERS,
    "exact_dedup": True,
    "fuzzy_dedup": {"threshold": 0.8, "num_perm": 128, "ngram": 5},
}


def _good(rng: random.Random) -> str:
    return make_text(rng, 12)


def _junk(kind: str, rng: random.Random, i: int) -> str:
    if kind == "word_count":
        return f"Short note number {i} about the river."
    if kind == "non_alpha_numeric":
        return " ".join(f"{rng.choice(['ember', 'saddle'])} ###%%%&&&*** @@!!" for _ in range(15))
    if kind == "repeating_top_ngrams":
        return make_text(rng, 3) + " " + "cheapest watches " * 30
    if kind == "repeated_lines":
        unique = [make_text(rng, 1) for _ in range(5)]
        return "\n".join(unique + ["Subscribe for weekly updates now"] * 5)
    if kind == "repeated_paragraphs":
        unique = ["\n".join(make_text(rng, 1) for _ in range(4)) for _ in range(3)]
        return "\n\n".join(unique + [f"Shared footer paragraph number {i} here"] * 3)
    if kind == "urls":
        urls = " ".join(f"https://shop.example.com/cheapwatchesoffer{i}x{j}" for j in range(8))
        return make_text(rng, 4) + " " + urls
    raise ValueError(kind)


def _near(text: str) -> str:
    """The same document with one word near the end changed: Jaccard of 5-grams about 0.93."""
    words = text.split(" ")
    words[-3] = "zephyrlike"
    return " ".join(words)


def write_corpus(path: Path, seed: int = 7) -> dict[str, int]:
    """Write the jsonl corpus; returns the planted count per step (and `good`)."""
    rng = random.Random(seed)
    good = [_good(rng) for _ in range(GOOD)]
    docs = list(good)
    for kind in list(FILTERS):
        for i in range(PLANTED[kind]):
            docs.insert(rng.randrange(len(docs)), _junk(kind, rng, i))
    good_set = set(good)
    originals = [d for d in docs[:400] if d in good_set and len(d.split()) > 60][:20]
    # Copies come after their originals (second row group): exact copies, one differing only
    # in whitespace, and near copies.
    copies = originals[: PLANTED["exact_dedup"]]
    copies = [*copies[:-1], "  " + copies[-1].replace(" ", "\n", 2) + "\n"]
    near = [_near(d) for d in originals[10 : 10 + PLANTED["fuzzy_dedup"]]]
    docs += copies + near
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(docs):
            f.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")
    return {"docs": len(docs), **PLANTED}
