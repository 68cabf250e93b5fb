"""`hotlink.wire.etag`: one etag per file, whichever route the file takes."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hotlink.relay.acl import AclIndex, parse_acl
from hotlink.relay.router import Router
from hotlink.relay.store import Store
from hotlink.wire.envelope import Envelope
from hotlink.wire.etag import etag_of
from hotlink.wire.messages import FileSync, FileWrite

A = "alice@example.org"
B = "bob@example.org"


def test_etag_is_md5_hex_like_the_reference() -> None:
    assert etag_of(b"") == "d41d8cd98f00b204e9800998ecf8427e"
    assert etag_of(b"hello") == hashlib.md5(b"hello").hexdigest()


def test_broadcast_and_catch_up_carry_the_same_etag(tmp_path: Path) -> None:
    acl = AclIndex()
    acl.set_file(A, parse_acl(f'rules: [{{pattern: "**", access: {{read: ["{B}"]}}}}]'))
    router = Router(acl, Store(tmp_path))
    router.connect(1, A)
    router.connect(2, B)
    content = b"share 42"
    # The writer claims some other etag: the relay names the content itself.
    out = router.handle(1, Envelope("m1", FileWrite(f"{A}/pub/x", "not-the-md5", 8, content)))
    (broadcast,) = [o.msg for o in out if o.conn == 2]
    assert isinstance(broadcast, FileWrite)
    out = router.handle(2, Envelope("m2", FileSync(f"{A}/pub")))
    (caught_up,) = [o.msg for o in out if o.conn == 2 and isinstance(o.msg, FileWrite)]
    assert broadcast.etag == caught_up.etag == etag_of(content)
