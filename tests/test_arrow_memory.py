"""util/arrow_memory.py: arrow's pool in pipe's processes."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from util.arrow_memory import use_jemalloc


@pytest.fixture
def jemalloc() -> None:
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("this pyarrow was built without jemalloc")


def test_use_jemalloc_makes_it_arrows_default_pool(jemalloc: None) -> None:
    before = pa.default_memory_pool()
    try:
        use_jemalloc()
        assert pa.default_memory_pool().backend_name == "jemalloc"
        assert pa.array(["text"] * 1000).to_pylist()[-1] == "text"  # allocates from it
    finally:
        pa.set_memory_pool(before)


def test_every_pipe_command_runs_on_jemalloc(jemalloc: None) -> None:
    """The `pipe` group sets the pool before any command's stages allocate."""
    code = (
        "import pyarrow as pa; from click.testing import CliRunner; "
        "from pipeline.cli import main; CliRunner().invoke(main, ['tokenize', '--help']); "
        "print(pa.default_memory_pool().backend_name)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "jemalloc"
