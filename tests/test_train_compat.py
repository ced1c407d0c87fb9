"""Bridge without Transformer Engine: one module's unguarded TE import is bound to a stand-in."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from training import compat


def test_missing_te_stands_in_until_used() -> None:
    te = compat.MissingTE()
    assert not isinstance(object(), te.Linear)
    assert not isinstance(object(), (te.Linear, te.LayerNormLinear))
    assert repr(te.ops.Sequential) == "<missing transformer_engine.pytorch.ops.Sequential>"
    with pytest.raises(ImportError, match="ops.Linear needs Transformer Engine"):
        te.ops.Linear(4, 4)


def test_finder_patches_only_the_named_module(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "fakebridge"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "lora.py").write_text(
        "import transformer_engine.pytorch as te\n"
        "def branch() -> tuple[te.ops.Sequential, te.ops.Sequential]:\n"
        "    return te.ops.Sequential()\n"
        "def is_te(x):\n"
        "    return isinstance(x, (te.Linear, te.LayerNormLinear))\n"
    )
    (pkg / "other.py").write_text("import transformer_engine.pytorch as te\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setattr(compat, "have_te", lambda: False)
    assert compat.allow_import_without_te("fakebridge.lora")
    assert not compat.allow_import_without_te("fakebridge.lora")  # installed once
    lora = importlib.import_module("fakebridge.lora")
    assert lora.is_te(object()) is False
    with pytest.raises(ImportError, match="needs Transformer Engine"):
        lora.branch()
    with pytest.raises(ModuleNotFoundError, match="transformer_engine"):
        importlib.import_module("fakebridge.other")  # not named: imports as it is
    assert "transformer_engine" not in sys.modules  # TE itself is never faked
    assert not list(pkg.rglob("*.pyc")) or all("lora" not in p.name for p in pkg.rglob("*.pyc"))


def test_entry_imports_without_bridge_and_names_the_version_it_needs() -> None:
    from importlib.metadata import PackageNotFoundError, version

    from training import entry

    try:
        found = version("megatron-bridge")
    except PackageNotFoundError:
        with pytest.raises(SystemExit, match="megatron-bridge >= 0.6"):
            entry.check_bridge_version()
    else:
        if found.startswith(("0.4", "0.5")):
            with pytest.raises(SystemExit, match=f"found {found}"):
                entry.check_bridge_version()
        else:
            assert entry.check_bridge_version() == found
