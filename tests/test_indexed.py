"""megatron-core's indexed_dataset imported bare (stages/indexed.py): the real module, without
megatron.core's package __init__, and a full import afterwards still works."""

from __future__ import annotations

import subprocess
import sys

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
