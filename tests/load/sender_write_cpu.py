#!/usr/bin/env python
"""CPU cost of the sender's last two steps per frame: envelope encode and WS write.

    python tests/load/sender_write_cpu.py          # MICRO_N=200000 calls per round

Prints ns per call (best of 3 rounds, this thread's CPU time) for a 1 KB and a 10 KB
HotlinkData: `wire.envelope.encode`, websockets' own masked send
(`protocol.send_binary` + `data_to_send`, what the relay link did before) and
`common.ws_masked.send_binary` (what it does now), both into a transport that only
counts bytes. `tests/load/agent_path_cpu.py` measures the agent's path up to
`link.send` without these two.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from hotlink.common.ws_masked import MaskKeys, send_binary
from hotlink.wire import messages as m
from hotlink.wire.envelope import encode
from websockets.client import ClientProtocol
from websockets.protocol import State

N = int(os.environ.get("MICRO_N", "200000"))


class CountingTransport:
    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> None:
        self.n += len(data)

    def writelines(self, parts: tuple[bytes, ...]) -> None:
        for p in parts:
            self.n += len(p)


class Conn:
    """The two attributes `send_binary` uses of a websockets client connection."""

    def __init__(self) -> None:
        self.protocol = ClientProtocol("ws://127.0.0.1/", state=State.OPEN)  # type: ignore[arg-type]
        self.transport = CountingTransport()

    def send_data(self) -> None:  # as websockets.asyncio.connection.Connection does
        for data in self.protocol.data_to_send():
            self.transport.write(data)


def best_ns(fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.thread_time_ns()
        for _ in range(N):
            fn()
        best = min(best, (time.thread_time_ns() - t0) / N)
    return best


def row(size: int, conn: Conn, keys: MaskKeys) -> None:
    msg = m.HotlinkData(
        "0123456789abcdef", 12345, "alice@x.org/_mpc/0_to_1/00012345.request", os.urandom(size)
    )
    data = encode(msg, "1a2b3c-1f")

    def old() -> None:
        conn.protocol.send_binary(data)
        conn.send_data()

    def new() -> None:
        send_binary(conn, data, keys)

    print(f"{size} B\tencode\t{best_ns(lambda: encode(msg, '1a2b3c-1f')):.0f} ns")
    print(f"{size} B\twebsockets send_binary+send_data\t{best_ns(old):.0f} ns")
    print(f"{size} B\tws_masked.send_binary\t{best_ns(new):.0f} ns")


def main() -> None:
    conn = Conn()
    keys = MaskKeys()
    for size in (1024, 10 * 1024):
        row(size, conn, keys)


if __name__ == "__main__":
    main()
