"""`--control PATH` must not chmod PATH's parent (it once turned /tmp into 0700)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hotlink.agent.control import prepare_control_socket
from hotlink.agent.runtime_dir import InsecureDirectory


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_foreign_parent_is_checked_not_chmodded(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(InsecureDirectory):
        prepare_control_socket(shared / "agent.sock")
    assert _mode(shared) == 0o1777


def test_missing_parent_is_created_private(tmp_path: Path) -> None:
    prepare_control_socket(tmp_path / "new" / "agent.sock")
    assert _mode(tmp_path / "new") == 0o700


def test_own_hotlink_dir_is_still_fixed(tmp_path: Path) -> None:
    hl = tmp_path / ".hotlink"
    hl.mkdir(mode=0o755)
    os.chmod(hl, 0o755)
    prepare_control_socket(hl / "agent.sock")
    assert _mode(hl) == 0o700
