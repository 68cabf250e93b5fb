"""A removed syft.pub.yaml is deleted on the relay (its grants used to outlive it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hotlink.agent.pubsync import PubSync
from hotlink.wire.messages import FileDelete, FileWrite

A = "alice@example.org"
ACL = "rules:\n  - pattern: '**'\n    access:\n      read: [bob@example.org]\n"


class FakeLink:
    up = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []
        self._n = 0

    def send(self, msg: object, id: str | None = None) -> str:
        self._n += 1
        oid = f"m{self._n}"
        self.sent.append((oid, msg))
        return oid


def _ack_all(pub: PubSync, link: FakeLink) -> None:
    for oid, _ in link.sent:
        pub.on_ack(oid, None)
    link.sent.clear()


def _synced(tmp_path: Path) -> tuple[Path, FakeLink, PubSync]:
    """An ACL file written, uploaded and acknowledged."""
    folder = tmp_path / "datasites" / A / "_mpc"
    folder.mkdir(parents=True)
    acl = folder / "syft.pub.yaml"
    acl.write_text(ACL)
    link = FakeLink()
    pub = PubSync(tmp_path, A, link, 10.0)  # type: ignore[arg-type]
    asyncio.run(pub.rescan())
    assert [type(m) for _, m in link.sent] == [FileWrite]
    _ack_all(pub, link)
    return acl, link, pub


def test_removed_acl_file_is_deleted_on_the_relay(tmp_path: Path) -> None:
    acl, link, pub = _synced(tmp_path)

    async def run() -> None:
        acl.unlink()
        await pub.rescan()
        assert [(type(m), m.path) for _, m in link.sent] == [  # type: ignore[attr-defined]
            (FileDelete, f"{A}/_mpc/syft.pub.yaml")
        ]
        await pub.rescan()  # not sent twice while the first is in flight
        assert len(link.sent) == 1
        _ack_all(pub, link)
        await pub.rescan()  # acknowledged: nothing more to do
        assert link.sent == []

    asyncio.run(run())


def test_removal_while_link_down_is_sent_on_link_up(tmp_path: Path) -> None:
    acl, link, pub = _synced(tmp_path)

    async def run() -> None:
        link.up = False
        acl.unlink()
        await pub.rescan()
        link.up = True
        pub._inflight.clear()
        assert pub.send_changed(force=True) == 1
        assert [type(m) for _, m in link.sent] == [FileDelete]

    asyncio.run(run())
