#!/usr/bin/env python
"""CPU cost of the relay's per-message work, without the network.

    python tests/load/relay_route_cpu.py [LABEL]        # MICRO_N=200000 messages a round

What `RelayServer._route` runs for a 1 KB HotlinkData between reading the WebSocket
message and writing it out: `decode_data_view` (the envelope's data fast path) and
`Router.forward` (session lookup, sender check, path check, seq: the readers to send
the frame to), on a real Router with an ACL-checked open and accept; then the same
frames through `Router.forward_frame`, the path frames of a known session take. Prints
this thread's CPU ns per message, best of 5 rounds; run it with each tree's venv,
alternating, to compare (for instance a compiled install against HOTLINK_COMPILE=0).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from hotlink.relay.acl import AclIndex, parse_acl
from hotlink.relay.router import Router
from hotlink.relay.store import Store
from hotlink.wire.envelope import Envelope, decode_data_view, encode
from hotlink.wire.messages import HotlinkAccept, HotlinkData, HotlinkOpen

A, B = "alice@example.org", "bob@example.org"
PATH = f"{A}/_mpc/x"


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "relay"
    n = int(os.environ.get("MICRO_N", "200000"))
    tmp = tempfile.mkdtemp(prefix="hl-relay-cpu-")
    try:
        acl = AclIndex()
        acl.set_file(
            f"{A}/_mpc",
            parse_acl(f'rules:\n  - pattern: "**"\n    access:\n      read: ["{B}"]\n'),
        )
        router = Router(acl, Store(tmp))
        router.connect(1, A)
        router.connect(2, B)
        router.handle(1, Envelope("m1", HotlinkOpen("s1", PATH, "", B)))
        router.handle(2, Envelope("m2", HotlinkAccept("s1")))
        frames = [
            encode(HotlinkData("s1", i + 1, f"{PATH}/00000001.request", b"x" * 1024))
            for i in range(n)
        ]
        best = lane = float("inf")
        for _ in range(5):
            t = time.thread_time_ns()
            for f in frames:
                env = decode_data_view(f, 1 << 24)
                assert env is not None
                assert router.forward(1, env.msg) == (2,)  # type: ignore[arg-type]
            best = min(best, (time.thread_time_ns() - t) / n)
            t = time.thread_time_ns()
            for f in frames:
                assert router.forward_frame(1, f) == (2,)
            lane = min(lane, (time.thread_time_ns() - t) / n)
        print(f"{label}\trelay decode_data_view + Router.forward, ns/msg\t{best:.0f}")
        print(f"{label}\trelay Router.forward_frame (undecoded, lanes.py), ns/msg\t{lane:.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
