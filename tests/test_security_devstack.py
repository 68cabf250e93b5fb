"""`devstack up --dir` on a directory left by `devstack down`: the old relay's log line
must not hand the agents the old URL (they failed after 30 s); and the same stack
over TLS (`up --tls`), through real processes."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hotlink.ctl import devstack
from hotlink.ctl.client import AgentClient
from hotlink.v1 import agent_pb2 as pb

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_up_down_up_same_dir_gets_the_new_relay_url() -> None:
    async def main(d: str) -> None:
        first = await devstack.up(d, timeout=60)
        old_url = first.relay.url if first.relay else ""
        devstack.down_state(first)
        # the second relay: TLS, so its URL differs in scheme as well as port
        second = await devstack.up(d, timeout=60, tls=True)
        try:
            assert second.relay is not None
            assert second.relay.url.startswith("wss://") and second.relay.url != old_url
            assert Path(second.relay.log_file).read_text().count("listening on") == 2
            for p in second.peers:
                async with AgentClient(p.control) as c:
                    st = await c.get_status()
                assert st.server_url == second.relay.url
                assert st.link_state == pb.LINK_STATE_UP
        finally:
            devstack.down_state(second)

    with tempfile.TemporaryDirectory(prefix="hlds-", dir="/tmp") as d:
        asyncio.run(main(d))
