"""megatron-core's `indexed_dataset` module (the bin/idx builder and reader), imported bare.

`from megatron.core.datasets import indexed_dataset` first runs megatron.core's package
`__init__`, which builds the whole model stack (tensor_parallel, transformer, torch's inductor):
4.4 s of one core here, against 1.6 s for what `indexed_dataset` itself needs. So pipe imports
the module below bare package entries and removes them afterwards: a later `import
megatron.core` in the same process still runs the real `__init__`. If a megatron-core release
ever breaks this, the full import runs instead (slower, same module).

The cyclic garbage collector is paused while the module loads: the import makes half a million
objects, and every collection it triggers walks all of them (1.4 s of CPU). They live as long
as the process, so they are then frozen out of the collector's way (and thawed at exit, so
that a normal interpreter teardown still frees them).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import importlib.util
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np

MODULE = "megatron.core.datasets.indexed_dataset"
_lock = threading.Lock()


def indexed_dataset() -> ModuleType:
    """The module, imported once per process (from any thread), without its start-up chatter."""
    with _lock:
        if MODULE in sys.modules:
            return sys.modules[MODULE]
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        with warnings.catch_warnings(), _collector_paused():
            warnings.simplefilter("ignore")
            try:
                module = _import_bare()
            except ImportError:
                module = importlib.import_module(MODULE)
        warnings.filterwarnings("ignore", message="Could not determine rank")
        return module


def token_dtype(vocab_size: int) -> str:
    """megatron-core's own choice: uint16 below 65500 ids, else int32."""
    return np.dtype(indexed_dataset().DType.optimal_dtype(vocab_size)).name


def _import_bare() -> ModuleType:
    if "megatron.core" in sys.modules:  # imported whole already: nothing left to save
        return importlib.import_module(MODULE)
    spec = importlib.util.find_spec("megatron.core")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("megatron-core is not installed")
    core = spec.submodule_search_locations[0]
    stubs = {}
    for name, path in (("megatron", core.rsplit("/", 1)[0]), ("megatron.core", core)):
        if name not in sys.modules:  # `megatron` may be loaded already (a namespace package)
            stubs[name] = sys.modules[name] = ModuleType(name)
            stubs[name].__path__ = [path]
    try:
        # megatron.core.utils and parallel_state import each other; __init__ takes this order.
        importlib.import_module("megatron.core.parallel_state")
        return importlib.import_module(MODULE)
    finally:
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]


@contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        atexit.register(gc.unfreeze)
        if enabled:
            gc.enable()
