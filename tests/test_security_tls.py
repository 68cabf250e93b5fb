"""The relay over real TLS (`serve --tls-cert --tls-key`) with a self-signed CA made in
the test, agents trusting it by `--ca-file` / `HOTLINK_CA_FILE` / TOML, and what an
agent that does not trust it sees (docs/reliability.md, "Local endpoints, TLS,
tokens")."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from fixtures_agent import AppClient, wait_for
from fixtures_relay import relay_client
from hotlink.agent.config import load_config
from hotlink.agent.tls import cleartext_warning, client_context
from hotlink.ctl.tlsgen import make_local_ca
from hotlink.v1 import agent_pb2 as pb

pytestmark = pytest.mark.e2e

A = "alice@example.org"
B = "bob@example.org"
PATH = f"{A}/_mpc/0_to_1"


@pytest.fixture
def tls_relay(tmp_path, relay_factory):
    files = make_local_ca(tmp_path / "tls")
    relay = relay_factory(extra_args=["--tls-cert", str(files.cert), "--tls-key", str(files.key)])
    assert relay.url.startswith("wss://127.0.0.1:")
    return relay, files


def test_agents_over_tls(tls_relay, agent_factory, tmp_path):
    relay, files = tls_relay
    alice = agent_factory(A, relay_=relay, args=["--ca-file", str(files.ca)])
    toml = tmp_path / "bob.toml"
    toml.write_text(f'ca_file = "{files.ca}"\n')
    bob = agent_factory(B, relay_=relay, args=["--config", str(toml)])
    s = alice.open("_mpc/0_to_1")
    assert s.state == pb.SESSION_STATE_OPEN, s
    bob.open(PATH)
    alice.wait_session(PATH, lambda x: B in x.readers)
    reader = AppClient(bob.session_dir(PATH))
    writer = AppClient(alice.session_dir(PATH))
    for i in range(50):
        writer.send(b"secret-%d" % i)
    got = reader.recv_n(50)
    assert [f.payload for f in got] == [b"secret-%d" % i for i in range(50)]
    assert alice.status().server_url.startswith("wss://")


def test_agent_without_the_ca_does_not_connect(tls_relay, agent_factory):
    relay, files = tls_relay
    eve = agent_factory(A, relay_=relay, wait_link=False)
    wait_for(
        lambda: (
            "CERTIFICATE_VERIFY_FAILED" in eve.status().last_error
            or "certificate verify failed" in eve.status().last_error
        ),
        what="certificate refusal",
    )
    assert eve.status().link_state != pb.LINK_STATE_UP
    # the same agent, given the CA by environment, connects
    eve.stop()
    ok = agent_factory(B, relay_=relay, env={"HOTLINK_CA_FILE": str(files.ca)})
    assert ok.status().link_state == pb.LINK_STATE_UP


def test_raw_clients_over_tls(tls_relay):
    """Plain ws:// to the TLS port fails; wss:// with the CA works end to end."""
    relay, files = tls_relay
    ctx = ssl.create_default_context(cafile=str(files.ca))

    async def run() -> None:
        async with relay_client(relay, A, ssl=ctx) as c:
            assert c.email == A  # relay_client checked the greeting over TLS
        from websockets.asyncio.client import connect

        with pytest.raises(Exception):  # noqa: B017 - any handshake failure
            async with connect(relay.events_url.replace("wss://", "ws://"), open_timeout=5):
                pass

    asyncio.run(run())


def test_relay_refuses_half_or_bad_tls_config(tmp_path):
    import subprocess
    import sys

    files = make_local_ca(tmp_path / "tls")
    base = [sys.executable, "-m", "hotlink.relay.cli", "serve", "--port", "0"]
    base += ["--data", str(tmp_path / "d")]
    r = subprocess.run([*base, "--tls-cert", str(files.cert)], capture_output=True, text=True)
    assert r.returncode == 2 and "go together" in r.stderr
    r = subprocess.run(
        [*base, "--tls-cert", str(files.ca), "--tls-key", str(files.key)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "cannot load certificate" in r.stderr


def test_ca_file_option_and_cleartext_warning(tmp_path: Path):
    base = ["--email", A, "--token-file", "t", "--root", str(tmp_path)]
    ca = tmp_path / "ca.pem"
    cfg = load_config(["--server", "wss://relay.example:443", *base], {"HOTLINK_CA_FILE": str(ca)})
    assert cfg.ca_file == ca
    files = make_local_ca(tmp_path / "tls")
    assert isinstance(client_context("wss://h:1", files.ca), ssl.SSLContext)
    assert client_context("ws://h:1", None) is None
    with pytest.raises(OSError):
        client_context("wss://h:1", tmp_path / "missing.pem")
    assert cleartext_warning("ws://127.0.0.1:8080") is None
    assert cleartext_warning("ws://[::1]:8080") is None
    assert cleartext_warning("wss://relay.example") is None
    w = cleartext_warning("ws://relay.example:8080")
    assert w is not None and "unencrypted" in w
    w = cleartext_warning("ws://127.0.0.1:8080", ca)
    assert w is not None and "unused" in w


def test_bench_tls_smoke():
    """`hotlinkctl bench --tls`: hotlink and floor over wss://, figures reported."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "hotlink.ctl.cli", "bench", "--tls", "--count", "20",
         "--warmup", "2", "--sizes", "1KB", "--inflight", "1", "--json", "-q"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    import json

    rep = json.loads(r.stdout)
    assert rep["config"]["tls"] is True
    assert any("TLS" in n for n in rep["notes"])
    (row,) = rep["results"]
    assert row["hotlink"]["count"] == 20 and row["floor"]["count"] == 20
