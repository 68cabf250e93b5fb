from __future__ import annotations

import pytest
from hotlink.wire import paths
from hotlink.wire.errors import ProtocolError


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/alice@example.org/x",
        "alice@example.org/../bob@example.org",
        "alice@example.org//x",
        "alice@example.org/./x",
        "alice@example.org/x/",
        "alice@example.org/a\\b",
        "alice@example.org/a\x00b",
        "alice@example.org/a\nb",
        "not-an-email/_mpc",
        "../etc/passwd",
    ],
)
def test_bad_paths_rejected(bad: str) -> None:
    with pytest.raises(ProtocolError):
        paths.validate_path(bad)


def test_good_path() -> None:
    assert paths.validate_path("alice@example.org/_mpc/0_to_1") == "alice@example.org/_mpc/0_to_1"
    assert paths.split_owner("alice@example.org/_mpc/0_to_1") == (
        "alice@example.org",
        "_mpc/0_to_1",
    )


def test_owner_is_a_segment_not_a_prefix() -> None:
    assert not paths.is_within("alice@x.org.evil/a", "alice@x.org")
    assert not paths.is_within("alice@x.org/ab", "alice@x.org/a")
    assert paths.is_within("alice@x.org/a/b", "alice@x.org/a")
