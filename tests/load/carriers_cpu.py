#!/usr/bin/env python
"""CPU cost of the direct-path sender's per-frame carrier decision, without sockets.

    python tests/load/carriers_cpu.py [LABEL]        # MICRO_N=200000 calls a round

`DirectSenderStream.carriers()` runs once per frame the sender agent sends while a
direct link is up (`SenderSession._transmit_direct`). Measured in the steady state:
one reader, its link up and used (the relay skipped), a fresh frame at the queue's
front. Prints this thread's CPU ns per call, best and worst of 5 rounds; run it with
each tree's venv, alternating, to compare.
"""

from __future__ import annotations

import os
import sys
import time

from hotlink.agent.core.limits import StreamLimits, Totals
from hotlink.agent.core.paths import FallbackMode
from hotlink.agent.core.sender_direct import DirectSenderStream
from hotlink.wire.frames import Frame

BOB = "bob@example.org"


def steady_state() -> DirectSenderStream:
    st = DirectSenderStream(
        "alice@example.org/_mpc/0_to_1",
        sid="s1",
        mode=FallbackMode.OFF,
        limits=StreamLimits(),
        totals=Totals(),
        link_up=True,
    )
    st.start()
    st.on_acked()
    st.on_accept(BOB, None)
    st.direct_link_up(BOB)
    st.app_frames([Frame(b"x" * 1024, 0, "")])  # queued: nobody transmits here
    assert st.pending and st.carriers() == (False, (BOB,)), st.carriers()
    return st


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else ""
    n = int(os.environ.get("MICRO_N", "200000"))
    carriers = steady_state().carriers
    rounds = []
    for _ in range(5):
        t = time.thread_time_ns()
        for _ in range(n):
            carriers()
        rounds.append((time.thread_time_ns() - t) / n)
    print(f"{label} carriers(): {min(rounds):.0f}-{max(rounds):.0f} ns per call (5 rounds)")


if __name__ == "__main__":
    main()
