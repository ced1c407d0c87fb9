"""Two fixes that let Megatron-Bridge 0.6.2 pretrain without Transformer Engine or a C++ build.

1. `megatron.bridge` imports `megatron/bridge/peft/lora_layers.py`, which does
   `import transformer_engine.pytorch as te` unguarded (LoRA only; pretraining never uses it).
   Without TE the whole package fails to import. `allow_bridge_without_te` loads that one module
   with `te` bound to `MissingTE`, a stand-in that fails loudly when anything actually uses it.
   `transformer_engine` itself is never faked, so Megatron-Core still sees TE as absent.
2. Bridge's initialisation runs `make` in megatron-core's datasets folder to build the dataset
   index helpers; the megatron-core wheel ships them prebuilt (`helpers_cpp`) but no Makefile,
   so `make` fails and the job exits. `use_prebuilt_dataset_helpers` skips the build when the
   prebuilt extension imports.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import CodeType, ModuleType

LORA_MODULE = "megatron.bridge.peft.lora_layers"
TE_IMPORT = "import transformer_engine.pytorch as te"


class MissingTE:
    """Stands in for `transformer_engine.pytorch`: attributes resolve, using them raises.

    Attribute chains (`te.ops.Sequential`) resolve so annotations evaluate at import time;
    `isinstance(x, te.Linear)` is False (nothing is a TE module when TE is absent); calling
    anything raises ImportError naming what needed TE.
    """

    def __init__(self, path: str = "transformer_engine.pytorch") -> None:
        self._path = path

    def __getattr__(self, name: str) -> MissingTE:
        if name.startswith("__"):
            raise AttributeError(name)
        return MissingTE(f"{self._path}.{name}")

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise ImportError(f"{self._path} needs Transformer Engine, which is not installed")

    def __instancecheck__(self, obj: object) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<missing {self._path}>"


class _PatchedSourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles one module's source with its TE import replaced; never writes bytecode."""

    def get_code(self, fullname: str) -> CodeType:
        source = self.get_data(self.path).decode("utf-8")
        if TE_IMPORT not in source:
            return super().get_code(fullname)
        patched = source.replace(TE_IMPORT, "te = _MissingTE()", 1)
        return compile(patched, self.path, "exec", dont_inherit=True)

    def exec_module(self, module: ModuleType) -> None:
        module.__dict__["_MissingTE"] = MissingTE
        super().exec_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    """Routes the named modules to the patched loader; everything else imports normally."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001 (importlib protocol)
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec
        spec.loader = _PatchedSourceLoader(fullname, spec.origin)
        return spec


def have_te() -> bool:
    return importlib.util.find_spec("transformer_engine") is not None


def allow_import_without_te(*modules: str) -> bool:
    """Install the finder for `modules` when TE is absent; returns whether it was installed."""
    if have_te() or any(isinstance(f, _Finder) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _Finder(frozenset(modules)))
    return True


def allow_bridge_without_te() -> bool:
    return allow_import_without_te(LORA_MODULE)


def use_prebuilt_dataset_helpers() -> bool:
    """Skip Bridge's `make` of the dataset helpers when the prebuilt extension imports."""
    try:
        from megatron.core.datasets import helpers_cpp  # noqa: F401
    except ImportError:
        return False  # no prebuilt helpers: let Bridge build them
    import megatron.bridge.training.initialize as init

    init.compile_helpers = lambda: None
    return True
