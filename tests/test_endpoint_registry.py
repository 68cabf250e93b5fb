"""`EndpointRegistry`: the list of endpoint files a restarted agent cleans up."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from hotlink.agent.ipc import EndpointRegistry


def test_add_is_saved_before_it_returns_without_blocking_the_loop(tmp_path: Path) -> None:
    """An open waits for its endpoint files to be on disk, but the event loop carries
    other sessions' frames meanwhile: a slow disk must not stall them."""
    reg = EndpointRegistry(tmp_path / "endpoints.json")
    release = threading.Event()
    real_write = reg._write

    def slow_write(text: str) -> None:
        release.wait(10)
        real_write(text)

    reg._write = slow_write  # type: ignore[method-assign]

    async def main() -> None:
        reg.go_async()
        add = asyncio.ensure_future(reg.add([tmp_path / "s" / "stream.sock"]))
        await asyncio.sleep(0.05)  # the loop runs while the write is held
        assert not add.done()
        release.set()
        await asyncio.wait_for(add, 10)
        assert json.loads((tmp_path / "endpoints.json").read_text()) == [
            str(tmp_path / "s" / "stream.sock")
        ]
        reg.go_sync()

    asyncio.run(main())


def test_clean_stale_removes_only_endpoint_files(tmp_path: Path) -> None:
    sock = tmp_path / "a" / "stream.sock"
    other = tmp_path / "a" / "data.bin"
    sock.parent.mkdir()
    sock.write_text("")
    other.write_text("keep")
    (tmp_path / "endpoints.json").write_text(json.dumps([str(sock), str(other)]))
    reg = EndpointRegistry(tmp_path / "endpoints.json")
    assert reg.clean_stale() == [str(sock)]
    assert not sock.exists() and other.read_text() == "keep"
    assert json.loads((tmp_path / "endpoints.json").read_text()) == []
