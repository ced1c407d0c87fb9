"""megatron-core's indexed_dataset imported bare (stages/indexed.py): the real module, without
megatron.core's package __init__, and a full import afterwards still works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def _python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_bare_import_skips_the_package_init_and_a_full_import_still_works() -> None:
    out = _python(
        "import sys, gc\n"
        "from stages.indexed import indexed_dataset\n"
        "m = indexed_dataset()\n"
        "print(m.__name__, m.IndexedDatasetBuilder.__module__)\n"
        "print('megatron.core' in sys.modules, 'megatron.core.tensor_parallel' in sys.modules)\n"
        "print(gc.isenabled())\n"
        "from megatron.core import ModelParallelConfig, parallel_state\n"
        "print(parallel_state.__name__, ModelParallelConfig.__name__)\n"
    )
    assert out.split("\n")[:4] == [
        "megatron.core.datasets.indexed_dataset megatron.core.datasets.indexed_dataset",
        "False False",  # no package __init__ ran, none of the model stack was built
        "True",  # the collector runs again
        "megatron.core.parallel_state ModelParallelConfig",
    ]


def test_after_a_full_import_the_same_module_is_used() -> None:
    out = _python(
        "import megatron.core\n"
        "from megatron.core.datasets import indexed_dataset as full\n"
        "from stages.indexed import indexed_dataset\n"
        "print(indexed_dataset() is full)\n"
    )
    assert out.strip() == "True"


def test_a_run_of_documents_writes_what_a_call_per_document_writes(tmp_path: Path) -> None:
    """The merge hands the builder a run of documents in one add_document call
    (stages/merge.py): the bin and idx are byte for byte those of one call per document, and
    megatron-core reads back every document."""
    import numpy as np

    from stages.indexed import indexed_dataset
    from stages.merge import _add_run

    module = indexed_dataset()
    rng = np.random.default_rng(0)
    runs = [rng.integers(1, 9, size=k) for k in (1, 5, 1, 40, 3)]  # document lengths per run
    docs = [rng.integers(0, 50_000, size=n, dtype=np.int32) for run in runs for n in run]
    for name, batched in (("per_doc", False), ("runs", True)):
        builder = module.IndexedDatasetBuilder(str(tmp_path / f"{name}.bin"), np.int32)
        if batched:
            start = 0
            for lengths in runs:
                tokens = np.concatenate(docs[start : start + len(lengths)])
                _add_run(builder, tokens, lengths.tolist())
                start += len(lengths)
        else:
            for doc in docs:
                builder.add_document(doc, [doc.size])
        builder.finalize(str(tmp_path / f"{name}.idx"))
    for ext in ("bin", "idx"):
        assert (tmp_path / f"per_doc.{ext}").read_bytes() == (tmp_path / f"runs.{ext}").read_bytes()
    read = module.IndexedDataset(str(tmp_path / "runs"))
    assert len(read) == len(docs) and len(read.document_indices) == len(docs) + 1
    assert all(np.array_equal(read[i], doc) for i, doc in enumerate(docs))
