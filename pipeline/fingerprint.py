"""Fingerprints of what goes into an artifact: input files, hub revisions, tokenizers.

Content hashes are what make keys trustworthy, but hashing gigabytes on every run would make a
cache hit slow; so a file's hash is remembered against its real path, size, mtime, ctime and
inode, and recomputed when any of those changes. Any write to a file changes its ctime, which
no user tool can set back, so an edit is seen even when size and mtime are restored.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from stages.readers import stable_names
from util.errors import PipeError
from util.files import atomic_write_json, file_sha256, read_json

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "*.tiktoken",
)


class HashMemo:
    """sha256 of files, remembered across runs in the cache root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.memo: dict[str, str] = read_json(path) or {}
        self.dirty = False

    def sha256(self, path: Path) -> str:
        st = path.stat()
        # ctime changes on every write and no user tool can set it back (mtime can be).
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"
        if key not in self.memo:
            self.memo[key] = file_sha256(path)
            self.dirty = True
        return self.memo[key]

    def save(self) -> None:
        if self.dirty:
            atomic_write_json(self.path, self.memo)
            self.dirty = False


def files_fingerprint(paths: list[Path], memo: HashMemo) -> list[dict[str, Any]]:
    """Per file: its name below the files' common folder, size and content hash. Where the
    files live, and how the blend file spelled their path, never enter the key."""
    names = stable_names([p.resolve() for p in paths])
    return [
        {"name": name, "bytes": p.stat().st_size, "sha256": memo.sha256(p)}
        for p, name in names.items()
    ]


def hub_dataset_revision(path: str, revision: str | None) -> str:
    """The commit sha a hub dataset resolves to, recorded so a rerun reads the same data."""
    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(path, revision=revision).sha
    except Exception as e:  # offline, unknown repo, auth: all mean "cannot resolve"
        raise PipeError(
            f"hf dataset {path!r}: cannot resolve its revision ({type(e).__name__}); "
            f'check the name and network, or pin "revision" to a commit sha in '
            f"the blend"
        ) from None


def resolve_tokenizer(spec: str, memo: HashMemo) -> tuple[str, str]:
    """(where to load it from, content hash of its files) for a local folder or a hub id."""
    folder = Path(spec).expanduser()
    if folder.is_dir():
        folder = folder.resolve()
    elif spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise PipeError(f"tokenizer {spec!r}: no such folder")
    else:
        folder = _hub_tokenizer_folder(spec)
    files = sorted(p for pattern in TOKENIZER_FILES for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise PipeError(
            f"tokenizer {spec!r}: folder {folder} has no tokenizer files "
            f"(expected tokenizer.json or tokenizer.model)"
        )
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}\0{memo.sha256(p)}\0".encode())
    where = str(folder) if Path(spec).expanduser().is_dir() else spec
    return where, h.hexdigest()


def tokenizer_folder(where: str) -> Path:
    """The folder a tokenizer loads from: `where` itself, or a hub id's snapshot."""
    return Path(where) if Path(where).is_dir() else _hub_tokenizer_folder(where)


def _hub_tokenizer_folder(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(TOKENIZER_FILES)))
    except Exception as e:  # offline, unknown repo, gated: all mean "cannot get it"
        hint = " (offline: point --tokenizer at a local folder)" if _offline() else ""
        raise PipeError(
            f"tokenizer {repo_id!r}: not a local folder and not fetchable from the "
            f"Hugging Face hub ({type(e).__name__}){hint}"
        ) from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false")
