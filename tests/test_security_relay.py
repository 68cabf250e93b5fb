"""Relay-side attacks on credentials and identity, over real sockets against the real
relay process (docs/reliability.md, "Local endpoints, TLS, tokens"): tokens that
never expire, tokens that cannot be revoked, mixed-case emails, one user holding
any number of connections, and `token --data <typo>`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_agent import wait_for
from fixtures_relay import relay_client
from hotlink.relay.auth import (
    DEFAULT_TTL,
    SECRET_FILE,
    AuthError,
    load_or_create_secret,
    mint_token,
    verify_claims,
    verify_token,
)
from hotlink.relay.cli import main
from hotlink.relay.revocation import REVOKED_FILE, DenyList
from hotlink.relay.server import HEALTH_PATH
from hotlink.wire.envelope import HDR_ENCODINGS
from hotlink.wire.errors import ProtocolError
from hotlink.wire.messages import FileWrite, HotlinkOpen
from hotlink.wire.paths import normalize_email, validate_email, validate_path
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

A = "alice@example.org"
B = "bob@example.org"


def relay_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotlink.relay.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _status_of(url: str, token: str) -> int:
    """101 if the relay upgrades a connection with `token`, else the HTTP status."""
    try:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


# --------------------------------------------------------------------------- expiry


def test_tokens_carry_exp_and_jti(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    c = verify_claims(secret, mint_token(secret, A))
    assert c.sub == A and c.exp - c.iat == DEFAULT_TTL and len(c.jti) == 16
    c2 = verify_claims(secret, mint_token(secret, A))
    assert c2.jti != c.jti  # every token has its own id
    with pytest.raises(AuthError, match="expired"):
        verify_token(secret, mint_token(secret, A, iat=0))  # the 1970 token
    with pytest.raises(AuthError, match="expired"):
        verify_token(secret, mint_token(secret, A, ttl=60), now=time.time() + 61)


def test_token_without_exp_refused(tmp_path: Path) -> None:
    """A token of the old format (no `exp`) never expired: now it is refused."""
    import base64
    import hashlib
    import hmac

    secret = load_or_create_secret(tmp_path)
    body = base64.urlsafe_b64encode(b'{"sub":"alice@example.org","iat":0}').rstrip(b"=")
    sig = base64.urlsafe_b64encode(hmac.new(secret, body, hashlib.sha256).digest()).rstrip(b"=")
    with pytest.raises(AuthError, match="no expiry"):
        verify_token(secret, (body + b"." + sig).decode())


def test_cli_ttl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", A, "--data", str(tmp_path), "--init", "--ttl", "12h"]) == 0
    out = capsys.readouterr()
    c = verify_claims(load_or_create_secret(tmp_path), out.out.strip())
    assert c.exp - c.iat == 12 * 3600
    assert c.jti in out.err and "expires" in out.err
    for bad in ("0", "-1d", "forever", "4000d"):
        with pytest.raises(SystemExit):
            main(["token", A, "--data", str(tmp_path), "--ttl", bad])


@pytest.mark.e2e
def test_expired_token_refused_by_relay(relay) -> None:
    secret = load_or_create_secret(relay.data_dir)
    assert asyncio.run(_status_of(relay.events_url, mint_token(secret, A, iat=0))) == 401
    assert asyncio.run(_status_of(relay.events_url, mint_token(secret, A))) == 101
    relay.wait_for_log("token expired")


@pytest.mark.e2e
def test_live_connection_closed_when_its_token_expires(relay) -> None:
    secret = load_or_create_secret(relay.data_dir)

    async def run() -> None:
        tok = mint_token(secret, A, ttl=2)
        async with connect(
            relay.events_url, additional_headers={"Authorization": f"Bearer {tok}"}
        ) as ws:
            await ws.recv()  # greeting
            with pytest.raises(ConnectionClosed) as exc:
                async with asyncio.timeout(30):
                    while True:
                        await ws.recv()
            assert exc.value.rcvd is not None and exc.value.rcvd.code == 1008
            assert "expired" in exc.value.rcvd.reason

    asyncio.run(run())


# --------------------------------------------------------------------------- revocation


@pytest.mark.e2e
def test_revoke_one_token_on_a_running_relay(relay) -> None:
    """`token revoke` takes effect on the running relay: the revoked token's live
    connection is closed and it cannot reconnect; alice's other token and bob's work."""
    secret = load_or_create_secret(relay.data_dir)
    t1, t2, tb = mint_token(secret, A), mint_token(secret, A), mint_token(secret, B)

    async def run() -> None:
        hdr = {"Authorization": f"Bearer {t1}"}
        async with connect(relay.events_url, additional_headers=hdr) as ws:
            assert isinstance(await asyncio.wait_for(ws.recv(), 10), (str, bytes))
            res = await asyncio.to_thread(relay_cli, "token", "revoke", "--data",
                                          str(relay.data_dir), t1)  # fmt: skip
            assert res.returncode == 0, res.stderr
            assert verify_claims(secret, t1).jti in res.stdout
            with pytest.raises(ConnectionClosed) as exc:
                async with asyncio.timeout(30):
                    while True:
                        await ws.recv()
            assert exc.value.rcvd is not None and exc.value.rcvd.code == 1008
            assert "revoked" in exc.value.rcvd.reason
        assert await _status_of(relay.events_url, t1) == 401
        assert await _status_of(relay.events_url, t2) == 101
        assert await _status_of(relay.events_url, tb) == 101

    asyncio.run(run())
    deny = json.loads((relay.data_dir / REVOKED_FILE).read_text())
    assert list(deny["tokens"]) == [verify_claims(secret, t1).jti]
    assert (relay.data_dir / REVOKED_FILE).stat().st_mode & 0o077 == 0


@pytest.mark.e2e
def test_revoke_all_tokens_of_a_user_by_id_and_user(relay) -> None:
    secret = load_or_create_secret(relay.data_dir)
    t1, tb = mint_token(secret, A), mint_token(secret, B)
    d = str(relay.data_dir)
    res = relay_cli("token", "revoke", "--data", d, "--user", "Bob@Example.org")
    assert res.returncode == 0, res.stderr
    assert asyncio.run(_status_of(relay.events_url, tb)) == 401
    res = relay_cli("token", "revoke", "--data", d, verify_claims(secret, t1).jti)
    assert res.returncode == 0, res.stderr
    assert asyncio.run(_status_of(relay.events_url, t1)) == 401
    time.sleep(1.1)  # a token minted after the user's revocation second is valid again
    assert asyncio.run(_status_of(relay.events_url, mint_token(secret, B))) == 101
    # a token of another relay, or garbage, is not accepted as something to revoke
    other = mint_token(load_or_create_secret(relay.data_dir.parent / "other"), A)
    assert relay_cli("token", "revoke", "--data", d, other).returncode == 2
    assert relay_cli("token", "revoke", "--data", d, "not/an id").returncode == 2


def test_unreadable_deny_list_keeps_the_last_one(tmp_path: Path) -> None:
    from hotlink.relay.revocation import Revocations, revoke

    secret = load_or_create_secret(tmp_path)
    c = verify_claims(secret, mint_token(secret, A))
    revoke(tmp_path, tokens={c.jti: c.exp})
    r = Revocations(tmp_path)
    assert r.reason(c)
    (tmp_path / REVOKED_FILE).write_text("{broken")
    r.refresh()
    assert r.reason(c), "a typo in the file must not un-revoke tokens"
    assert DenyList.parse("{}") == DenyList()


# --------------------------------------------------------------------------- --data typo


def test_token_with_mistyped_data_dir_refused(tmp_path: Path, capsys) -> None:
    """`token --data <typo>` used to create a fresh secret there and print a token the
    running relay rejects. Now it refuses and creates nothing."""
    load_or_create_secret(tmp_path / "relay")
    typo = tmp_path / "rleay"
    assert main(["token", A, "--data", str(typo)]) == 2
    assert "--init" in capsys.readouterr().err
    assert not typo.exists()
    assert main(["token", A, "--data", str(tmp_path / "relay")]) == 0
    assert main(["token", A, "--data", str(typo), "--init"]) == 0
    assert (typo / SECRET_FILE).exists()


# --------------------------------------------------------------------------- emails


def test_emails_normalised_at_mint_and_verify(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    assert verify_token(secret, mint_token(secret, "Alice@Example.ORG")) == A
    assert normalize_email(" Alice@Example.org ") == A
    with pytest.raises(ProtocolError, match="lower case"):
        validate_email("Alice@example.org")
    with pytest.raises(ProtocolError, match="lower case"):
        validate_path("Alice@example.org/_mpc/x")


@pytest.mark.e2e
def test_mixed_case_paths_refused_by_relay(relay) -> None:
    """`Alice@Example.org` was a second user with a second datasite beside alice's.
    The token now names alice; paths with a mixed-case owner are refused."""
    secret = load_or_create_secret(relay.data_dir)
    tok = mint_token(secret, "Alice@Example.org")
    assert verify_token(secret, tok) == A

    async def run() -> None:
        async with relay_client(relay, A) as c:
            await c.send(FileWrite("Alice@example.org/x.txt", "e", 2, b"hi"), id="w1")
            await c.send(HotlinkOpen("s1", "Alice@example.org/_mpc/s", to=B), id="o1")
            got = [await c.recv() for _ in range(2)]
        assert all(type(m).__name__ in ("Error", "Nack", "HotlinkReject") for m in got), got

    asyncio.run(run())
    datasites = relay.data_dir / "datasites"
    assert (
        not any(p.name != p.name.lower() for p in datasites.rglob("*"))
        if datasites.exists()
        else True
    )


# --------------------------------------------------------------------------- connection cap


@pytest.mark.e2e
def test_connection_cap_per_user(relay_factory) -> None:
    relay = relay_factory(extra_args=["--max-connections-per-user", "3"])

    async def run() -> None:
        hdr = {"Authorization": f"Bearer {relay.token(A)}", HDR_ENCODINGS: "msgpack"}
        conns = [await connect(relay.events_url, additional_headers=hdr) for _ in range(3)]
        for ws in conns:
            await ws.recv()
        with pytest.raises(InvalidStatus) as exc:
            await connect(relay.events_url, additional_headers=hdr)
        assert exc.value.response.status_code == 429
        assert b"too many connections" in exc.value.response.body
        assert await _status_of(relay.events_url, relay.token(B)) == 101  # others unaffected
        await conns[0].close()
        ok = await connect(relay.events_url, additional_headers=hdr)  # room again
        assert isinstance(await ok.recv(), (str, bytes))
        for ws in [*conns[1:], ok]:
            await ws.close()

    asyncio.run(run())
    relay.wait_for_log("already holds 3")


@pytest.mark.e2e
def test_descriptor_limit_refuses_with_503_and_says_so(relay_factory) -> None:
    """A relay started with a low descriptor limit raises its soft limit to the hard
    one, then answers clients past its descriptor budget with HTTP 503 and a reason
    (not uvloop's silent accept-and-close at EMFILE), logs it once, reports itself
    degraded, and serves again once connections close."""
    relay = relay_factory(nofile=(40, 64), extra_args=["--max-connections-per-user", "0"])
    relay.wait_for_log("file descriptor limit raised from 40 to 64")
    health = relay.http_url + HEALTH_PATH

    async def run() -> None:
        hdr = {"Authorization": f"Bearer {relay.token(A)}", HDR_ENCODINGS: "msgpack"}
        held, refused = [], []
        for _ in range(60):
            try:
                held.append(await connect(relay.events_url, additional_headers=hdr))
            except InvalidStatus as exc:
                refused.append(exc.response)
        # 64 - 32 kept free - what the relay has open itself: some served, the rest told
        assert 5 <= len(held) <= 32 and len(held) + len(refused) == 60, len(held)
        assert {r.status_code for r in refused} == {503}
        assert b"relay at its connection limit" in refused[0].body
        assert b"of 64 file descriptors in use" in refused[0].body
        for ws in held:  # the served ones work: each got the System greeting
            assert isinstance(await ws.recv(), (str, bytes))
        code, body = await asyncio.to_thread(_http_get, health)
        assert code == 503 and "at the file descriptor limit" in body, (code, body)
        for ws in held:
            await ws.close()
        await asyncio.sleep(0.2)
        ok = await connect(relay.events_url, additional_headers=hdr)  # room again
        assert isinstance(await ok.recv(), (str, bytes))
        await ok.close()
        assert await asyncio.to_thread(_http_get, health) == (200, "ok\n")

    asyncio.run(run())
    log = relay.wait_for_log("raise the relay's limit (ulimit -n")
    assert log.count("new connection(s) (the latest from") == 1  # one line a minute
    assert relay.proc is not None and relay.proc.poll() is None


def _http_get(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_connection_cap_default_documented() -> None:
    from hotlink.relay.cli import build_parser
    from hotlink.relay.server import DEFAULT_MAX_CONNS_PER_USER

    args = build_parser().parse_args(["serve", "--data", "x"])
    assert args.max_connections_per_user == DEFAULT_MAX_CONNS_PER_USER == 8


@pytest.mark.e2e
def test_agent_reports_why_the_relay_refused(agent_factory, relay, tmp_path) -> None:
    """An agent with an expired token says so (status last_error), not just 'HTTP 401'."""
    secret = load_or_create_secret(relay.data_dir)
    (tmp_path / f"{A}.token").write_text(mint_token(secret, A, iat=0) + "\n")
    alice = agent_factory(A, wait_link=False)
    wait_for(lambda: "token expired" in alice.status().last_error, what="reason in status")
    assert "HTTP 401" in alice.status().last_error
