"""`hotlink-relay serve --log-level DEBUG` logged every client's bearer token
(websockets' handshake header dump)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hotlink.relay.auth import load_or_create_secret, mint_token
from websockets.sync.client import connect


def test_debug_log_has_no_bearer_token(tmp_path: Path) -> None:
    data = tmp_path / "relay"
    token = mint_token(load_or_create_secret(data), "carol@example.org")
    log = open(tmp_path / "relay.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotlink.relay.cli", "serve", "--port", "0", "--data", str(data),
         "--log-level", "DEBUG"],
        stdout=subprocess.PIPE, stderr=log, text=True, env=os.environ.copy(),
    )  # fmt: skip
    try:
        url = proc.stdout.readline().split()[-1]  # type: ignore[union-attr]
        with connect(
            url + "/api/v1/events", additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            ws.recv(timeout=5)  # the relay's greeting: the handshake is done
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    text = (tmp_path / "relay.log").read_text()
    assert "carol@example.org connected" in text  # the handshake was logged at all
    assert token.split(".")[1] not in text and token.split(".")[0] not in text
