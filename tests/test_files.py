"""Checksums of the files pipe writes: xxh3 now, sha256 in receipts and manifests of before."""

from __future__ import annotations

import hashlib
from pathlib import Path

import xxhash

from util.files import ChecksummedFile, file_checksum, file_matches


def test_checksum_is_xxh3_128_of_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    data = bytes(range(256)) * 70_000  # over two 8 MiB read blocks' worth of calls
    path.write_bytes(data)
    assert file_checksum(path, chunk=1 << 20) == xxhash.xxh3_128_hexdigest(data)


def test_a_parquet_file_checksummed_as_it_is_written_has_its_files_checksum(
    tmp_path: Path,
) -> None:
    """ParquetWriter writes through the file object in many calls (pages, footer); the checksum
    kept along the way is that of the file it leaves."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "a.parquet"
    table = pa.table({"text": [f"document {i} " * 50 for i in range(20_000)]})
    file = ChecksummedFile(path)
    writer = pq.ParquetWriter(file, table.schema, compression="none", data_page_size=1 << 16)
    for start in range(0, len(table), 5_000):
        writer.write_table(table.slice(start, 5_000))
    writer.close()
    file.close()
    assert file.closed and file.checksum() == file_checksum(path)
    assert pq.read_table(path).equals(table)


def test_matches_either_recorded_checksum_and_catches_a_flipped_byte(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"pipe" * 1000)
    new = {"xxh3": file_checksum(path)}
    old = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert file_matches(path, new) and file_matches(path, old)
    path.write_bytes(b"pipe" * 999 + b"pipf")
    assert not file_matches(path, new) and not file_matches(path, old)
    assert not file_matches(path, {})
