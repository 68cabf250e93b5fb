"""`hotlink.common.hot_modules`: which hot modules run compiled, and stale ones found.

The compiled copies are built by setup.py; CI installs with HOTLINK_COMPILE=1, where
every hot module must have been compiled (a module that stops type-checking under mypy
or compiling fails the install there, not silently here)."""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types
from pathlib import Path

import pytest
from hotlink.common import hot_modules as hm


def test_every_hot_module_is_reported_once() -> None:
    st = hm.status()
    assert sorted(st.compiled + st.pure) == sorted(hm.HOT_MODULES)
    assert st.stale == ()
    if os.environ.get("HOTLINK_COMPILE") == "1":
        assert st.pure == (), st.summary()
        assert st.summary() == f"compiled (mypyc): {len(hm.HOT_MODULES)} hot modules"


def _fake(tmp_path: Path, name: str, source: bytes, built_from: bytes) -> types.ModuleType:
    """A module that looks compiled: an extension-named file beside its .py source."""
    stem = name.rsplit(".", 1)[1]
    so = tmp_path / f"{stem}{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    so.write_bytes(b"")
    (tmp_path / f"{stem}.py").write_bytes(source)
    mod = types.ModuleType(name)
    mod.__file__ = str(so)
    setattr(mod, hm.DIGEST_ATTR, hm.source_digest(built_from))
    return mod


def test_a_source_edited_after_the_build_is_stale(tmp_path, monkeypatch) -> None:
    names = ("fakepkg.fresh", "fakepkg.edited", "fakepkg.plain")
    monkeypatch.setattr(hm, "HOT_MODULES", names)
    monkeypatch.setitem(sys.modules, names[0], _fake(tmp_path, names[0], b"x = 1\n", b"x = 1\n"))
    monkeypatch.setitem(sys.modules, names[1], _fake(tmp_path, names[1], b"x = 2\n", b"x = 1\n"))
    plain = types.ModuleType(names[2])
    plain.__file__ = str(tmp_path / "plain.py")
    monkeypatch.setitem(sys.modules, names[2], plain)
    st = hm.status(loaded_only=True)
    assert st == hm.HotStatus(names[:2], names[2:], names[1:2])
    assert "STALE" in st.summary() and "fakepkg.edited" in st.summary()
    assert "pip install -e ." in st.summary()


@pytest.mark.parametrize(
    ("st", "want"),
    [
        (hm.HotStatus((), ("a", "b"), ()), "pure Python (no compiled hot modules)"),
        (hm.HotStatus(("a",), ("b",), ()), "compiled 1 of 2 hot modules (pure: b)"),
        (hm.HotStatus(("a", "b"), (), ()), "compiled (mypyc): 2 hot modules"),
    ],
)
def test_summary(st: hm.HotStatus, want: str) -> None:
    assert st.summary() == want


def test_loaded_only_skips_modules_not_imported(monkeypatch) -> None:
    monkeypatch.setattr(hm, "HOT_MODULES", ("fakepkg.never_imported",))
    assert hm.status(loaded_only=True) == hm.HotStatus((), (), ())
