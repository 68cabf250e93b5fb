"""What an agent writes of other datasites (docs/reliability.md, "Store: quotas,
retention, catch-up"): only files a local reader session or `--subscribe` asks for,
within per-datasite and total byte bounds; and uploads the relay rate-limits are
re-sent, not lost. Units on the FileWorker (real disk queue and files), plus the
mallory `read: ["*"]` attack with real relay and agent processes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fixtures_agent import wait_for
from fixtures_relay import relay_client
from hotlink.agent import filepath
from hotlink.agent.config import ConfigError, load_config
from hotlink.agent.filepath import FALLBACK, FileWorker, Upload
from hotlink.agent.mirror_policy import MirrorPolicy, parse_subscriptions
from hotlink.wire.messages import Ack, FileWrite, Message

B = "bob@example.org"
M = "mallory@example.org"


class _Link:
    up = True
    writable = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []

    def send(self, msg: Message, id: str | None = None) -> str:
        oid = id or f"id{len(self.sent) + 1}"
        self.sent.append((oid, msg))
        return oid


class _Session:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.failed = 0

    def file_acked(self, kind: int, seq: int, size: int) -> None:
        self.acked.append(seq)

    def file_failed(self, kind: int) -> None:
        self.failed += 1


def worker(tmp: Path, policy: MirrorPolicy | None = None) -> tuple[FileWorker, _Link]:
    link = _Link()
    w = FileWorker(
        link,  # type: ignore[arg-type]
        root=tmp,
        email=B,
        find_reader=lambda p: None,
        keep_files=False,
        max_file_bytes=1 << 20,
        memory_budget=1 << 20,
        tee_queue=100,
        mirror=policy,
    )
    return w, link


def test_policy_wants_sessions_and_subscriptions_only() -> None:
    p = MirrorPolicy(B, ("mallory@example.org/pub",), datasite_bytes=100, total_bytes=150)
    assert not p.wants(f"{M}/big/1.bin", False)
    assert p.wants(f"{M}/big/1.bin", True)  # an open reader session's folder
    assert p.wants(f"{M}/pub/a", False) and not p.wants(f"{M}/public", False)
    assert p.unwanted == 2
    assert p.admit(f"{M}/pub/a", 60) and p.admit(f"{M}/pub/a", 90)  # growth counted
    assert not p.admit(f"{M}/pub/b", 20)  # datasite bound
    assert p.admit("carol@example.org/x", 60)
    assert not p.admit("carol@example.org/y", 10)  # total bound
    assert p.over_cap == 2 and p.total == 150


def test_subscribe_option() -> None:
    assert parse_subscriptions(["a@x.org/pub/", "b@x.org/p, c@x.org"]) == (
        "a@x.org/pub",
        "b@x.org/p",
        "c@x.org",
    )
    base = ["--server", "ws://127.0.0.1:1", "--email", B, "--token-file", "t", "--root", "r"]
    cfg = load_config([*base, "--subscribe", f"{M}/pub", "--subscribe", "c@x.org/d"], env={})
    assert cfg.subscribe == (f"{M}/pub", "c@x.org/d")
    with pytest.raises(ConfigError):
        load_config([*base, "--subscribe", "../etc"], env={})


def test_unasked_files_are_not_written_and_bounds_hold(tmp_path: Path) -> None:
    async def main() -> None:
        policy = MirrorPolicy(B, (f"{M}/pub",), datasite_bytes=2500, total_bytes=0)
        w, _ = worker(tmp_path, policy)
        w.disk.start()
        (tmp_path / "datasites" / M / "pub").mkdir(parents=True)
        (tmp_path / "datasites" / M / "pub" / "old").write_bytes(b"o" * 1000)
        await w.load_mirror()  # what is on disk counts
        for i in range(5):
            w.ingest(FileWrite(f"{M}/big/{i}.bin", "", 1000, b"x" * 1000))
            w.ingest(FileWrite(f"{M}/pub/{i}.bin", "", 1000, b"y" * 1000))
        await w.close()

    asyncio.run(main())
    site = tmp_path / "datasites" / M
    assert not (site / "big").exists()
    assert sorted(p.name for p in (site / "pub").iterdir()) == ["0.bin", "old"]


def test_rate_limited_upload_is_sent_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filepath, "RATE_LIMIT_PAUSE", 0.01)

    async def main() -> tuple[_Session, list[Any]]:
        w, link = worker(tmp_path)
        s = _Session()
        for seq in (1, 2):
            w.uploads.append(
                Upload(s, f"{B}/_mpc/s/{seq}.request", seq, FALLBACK, None, b"data", "", 4)  # type: ignore[arg-type]
            )
        w.pump()
        assert [oid for oid, _ in link.sent] == ["id1", "id2"]
        w.on_ack("id2", "rate limited: over 1000 bytes/s of file writes")
        w.on_ack("id1", "rate limited: over 1000 bytes/s of file writes")
        w.pump()
        assert len(link.sent) == 2  # paused
        await asyncio.wait_for(_until(lambda: len(link.sent) == 4), 5)
        resent = [msg.path for _, msg in link.sent[2:]]  # type: ignore[attr-defined]
        w.on_ack("id3", None)
        w.on_ack("id4", None)
        return s, resent

    s, resent = asyncio.run(main())
    assert resent == [f"{B}/_mpc/s/1.request", f"{B}/_mpc/s/2.request"]  # seq order kept
    assert s.acked == [1, 2] and s.failed == 0


async def _until(pred: Any) -> None:
    while not pred():
        await asyncio.sleep(0.005)


def test_mallory_world_readable_datasite_does_not_fill_bobs_disk(agent_factory, relay) -> None:
    """mallory makes her datasite `read: ["*"]` and writes 10 files; bob's agent (no
    session, no subscription) writes none of them. A second agent that subscribes to
    her folder gets them up to its per-datasite bound."""
    bob = agent_factory(B)
    carol = agent_factory(
        "carol@example.org",
        args=["--subscribe", f"{M}/dump", "--mirror-datasite-bytes", "300KiB"],
    )
    acl = b'rules: [{pattern: "**", access: {read: ["*"]}}]\n'

    async def attack() -> None:
        async with relay_client(relay, M) as mallory:
            await mallory.send(FileWrite(f"{M}/syft.pub.yaml", "", len(acl), acl), id="acl")
            assert await mallory.recv_type(Ack) == Ack("acl")
            blob = b"z" * (100 * 1024)
            for i in range(10):
                await mallory.send(FileWrite(f"{M}/dump/{i}.bin", "", len(blob), blob), id=f"w{i}")
                assert await mallory.recv_type(Ack) == Ack(f"w{i}")

    asyncio.run(attack())
    cdir = carol.root / "datasites" / M / "dump"
    wait_for(lambda: cdir.exists() and len(list(cdir.iterdir())) == 3, what="carol's 3 files")
    wait_for(lambda: "mirror of mallory@example.org is full" in carol.log_text())
    wait_for(lambda: "not mirroring files of mallory@example.org" in bob.log_text())
    assert not (bob.root / "datasites" / M / "dump").exists()
    assert len(list(cdir.iterdir())) == 3


def test_relay_copies_deleted_once_the_named_reader_has_them(agent_factory, relay) -> None:
    """TEE session alice -> bob (`to`): every frame is also a fallback file in the
    relay's store; once bob confirmed them (HotlinkProgress) alice's agent deletes the
    relay copies (FileDelete), while the session is still open. Without `to` they stay
    (a later reader catches up from them)."""
    import struct

    from fixtures_agent import AppClient
    from hotlink.v1 import agent_pb2 as pb
    from hotlink.wire.frames import Frame, encode_frame

    a_email, rel = "alice@example.org", "_mpc/0_to_1"
    path = f"{a_email}/{rel}"
    alice = agent_factory(a_email)
    bob = agent_factory(B)
    alice.open(rel, fallback_mode=pb.FALLBACK_MODE_TEE, to=B)
    bob.open(path)
    alice.wait_session(path, lambda s: B in s.readers)
    bob.wait_session(path, lambda s: s.state == pb.SESSION_STATE_OPEN)
    reader = AppClient(bob.session_dir(path))
    writer = AppClient(alice.session_dir(path))
    n = 200
    writer.send_raw(b"".join(encode_frame(Frame(struct.pack(">Q", i))) for i in range(n)))
    got = reader.recv_n(n)
    assert [f.seq for f in got] == list(range(1, n + 1))
    alice.wait_session(path, lambda s: s.counters.files_sent == n)
    store = relay.data_dir / "datasites" / a_email / "_mpc" / "0_to_1"

    def remaining() -> int:
        return len(list(store.glob("*.request"))) if store.exists() else 0

    wait_for(lambda: remaining() == 0, timeout=20, what="relay copies deleted")
    assert alice.session(path).state == pb.SESSION_STATE_OPEN


def test_held_files_follow_the_named_readers_confirmations() -> None:
    from hotlink.agent.held_files import HeldFiles

    class S:  # hashable by identity, like a Session
        def __init__(self, to: str) -> None:
            self.to = to

    h = HeldFiles()
    to_bob, open_to_all = S(B), S("")
    assert h.acked(to_bob, 1, "p/1") == [] and h.acked(to_bob, 2, "p/2") == []
    assert h.delivered(to_bob, "carol@example.org", 5) == []  # not the named reader
    assert h.delivered(to_bob, B, 1) == ["p/1"]
    assert h.delivered(to_bob, B, 1) == []
    assert h.delivered(to_bob, B, 3) == ["p/2"]
    assert h.acked(to_bob, 3, "p/3") == ["p/3"]  # confirmed before the relay's Ack
    assert h.acked(open_to_all, 1, "q/1") == [] and h.delivered(open_to_all, B, 9) == []
    h.forget(to_bob)
    assert h.held == {} and h.confirmed == {}
