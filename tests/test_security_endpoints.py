"""Local endpoint attacks: another local user on a TCP session endpoint or on the TCP
control API (docs/reliability.md, "Local endpoints, TLS, tokens").

The attacker is a real process of a second uid (`nobody`: a child started as root
that imports what it needs, then drops to uid/gid 65534 with `os.setuid`, so these
tests run only as root) on real loopback sockets, IPv4 and IPv6.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import textwrap

import grpc
import pytest
from fixtures_agent import AppClient, wait_for
from hotlink.agent.peercred import tcp_peer_uid, tcp_peer_uid_to_port
from hotlink.common.ports import free_port
from hotlink.v1 import agent_pb2 as pb
from hotlink.v1 import agent_pb2_grpc as pb_grpc
from hotlink.wire.cookie import COOKIE_NAME, CookieCheck, Verdict, preamble
from hotlink.wire.frames import encode_header
from hypothesis import given, settings
from hypothesis import strategies as st

A = "alice@example.org"
B = "bob@example.org"
PATH = f"{A}/_mpc/0_to_1"
NOBODY = 65534
as_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a second uid")
has_ipv6 = pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")

#: The attacker: connects, optionally sends a preamble, writes one frame, and reports
#: whether the agent closed the connection on it within WAIT seconds.
_ATTACKER = textwrap.dedent(
    """
    import encodings.idna, os, socket, sys
    os.setgroups([]); os.setgid(int(sys.argv[4])); os.setuid(int(sys.argv[4]))
    host, port, first = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
    wait = float(sys.argv[5])
    s = socket.create_connection((host, port), timeout=15)
    try:
        s.sendall(first)
        s.settimeout(wait)
        data = s.recv(65536)
        print("closed" if data == b"" else "open")
    except ConnectionResetError:
        print("closed")
    except TimeoutError:
        print("open")
    """
)


def frame(payload: bytes) -> bytes:
    return encode_header(b"", b"", len(payload), 0) + payload


#: seconds the attacker waits to see its connection closed: a refusal of bytes that are
#: not a valid cookie is immediate, a silent client is closed after the agent's
#: `AUTH_TIMEOUT` (10 s)
ATTACKER_WAIT = 15.0


def attacker(
    uid: int, host: str, port: int, first: bytes, wait: float = ATTACKER_WAIT
) -> list[str]:
    """The command line of `_ATTACKER` run as `uid`."""
    return [
        sys.executable,
        "-I",
        "-c",
        _ATTACKER,
        host,
        str(port),
        first.hex(),
        str(uid),
        str(wait),
    ]


def run_as(uid: int, host: str, port: int, first: bytes, wait: float = ATTACKER_WAIT) -> str:
    """Returns "closed" or "open": whether the agent closed the connection within `wait` s."""
    res = subprocess.run(
        attacker(uid, host, port, first, wait),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def hostport(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


# --------------------------------------------------------------------------- uid lookup


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=has_ipv6)])
def test_peer_uid_of_own_connection(host):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam) as srv:
        srv.bind((host, 0))
        srv.listen()
        with socket.create_connection(srv.getsockname()[:2]):
            a, peer = srv.accept()
            with a:
                assert tcp_peer_uid(peer, a.getsockname()) == os.getuid()
                assert tcp_peer_uid_to_port(peer[:2], {srv.getsockname()[1]}) == os.getuid()
                # a row that does not exist is "unknown", never our uid
                assert tcp_peer_uid((host, 1), a.getsockname()) is None


@as_root
@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=has_ipv6)])
def test_peer_uid_of_another_user(host):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam) as srv:
        srv.bind((host, 0))
        srv.listen()
        srv.settimeout(30)
        child = subprocess.Popen(
            attacker(NOBODY, host, srv.getsockname()[1], b""), stdout=subprocess.PIPE
        )
        a, peer = srv.accept()
        with a:
            assert tcp_peer_uid(peer, a.getsockname()) == NOBODY
        assert child.communicate(timeout=30)[0].strip() == b"closed"


def test_cookie_check_is_sans_io():
    c = b"k" * 32
    chk = CookieCheck(c)
    pre = preamble(c)
    assert chk.feed(pre[:3]) == (Verdict.NEED_MORE, b"")
    assert chk.feed(pre[3:] + b"HLNK") == (Verdict.VALID, b"HLNK")
    assert CookieCheck(c).feed(b"HL") == (Verdict.NEED_MORE, b"")
    assert CookieCheck(c).feed(b"HLNK\x01") == (Verdict.ABSENT, b"HLNK\x01")
    assert CookieCheck(c).feed(preamble(b"x" * 32))[0] is Verdict.INVALID


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 80), st.booleans())
def test_cookie_check_any_split_same_verdict(data: bytes, cut: int, with_preamble: bool):
    """Whatever the bytes and however they arrive in two reads, the verdict is the one
    for the whole stream, and VALID only for the exact preamble."""
    c = b"\x07" * 32
    if with_preamble:
        data = preamble(c) + data
    whole = CookieCheck(c).feed(data)
    chk = CookieCheck(c)
    first = chk.feed(data[:cut])
    got = first if first[0] is not Verdict.NEED_MORE else chk.feed(data[cut:])
    if got[0] is not Verdict.NEED_MORE and first[0] is not Verdict.NEED_MORE:
        got = (got[0], got[1] + data[cut:])  # decided on the first read: rest follows
    assert got == whole
    assert (whole[0] is Verdict.VALID) == data.startswith(preamble(c))


# --------------------------------------------------------------------------- session endpoints


def _tcp_pair(agent_factory, addr: str):
    alice = agent_factory(A)
    bob = agent_factory(B)
    s = alice.open("_mpc/0_to_1", ipc_mode=pb.IPC_MODE_TCP, tcp_addr=addr)
    assert s.state == pb.SESSION_STATE_OPEN, s
    r = bob.open(PATH, ipc_mode=pb.IPC_MODE_TCP, tcp_addr=addr)
    alice.wait_session(PATH, lambda x: B in x.readers)
    return alice, bob, s, r


def test_tcp_marker_and_cookie_are_owner_only(agent_factory):
    alice, _bob, _s, _r = _tcp_pair(agent_factory, "127.0.0.1:0")
    d = alice.session_dir(PATH)
    for name in ("stream.tcp", COOKIE_NAME):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    assert len(bytes.fromhex((d / COOKIE_NAME).read_text().strip())) == 32


@as_root
@pytest.mark.e2e
@pytest.mark.parametrize(
    ("addr", "silent"),
    # a silent client waits out AUTH_TIMEOUT (10 s), whatever the address family: once
    [("127.0.0.1:0", True), pytest.param("[::1]:0", False, marks=has_ipv6)],
)
def test_other_uid_cannot_inject_or_read(agent_factory, addr, silent):
    """The issue's attack: a process of another uid writes to alice's sender endpoint
    and connects to bob's reader endpoint. Both are closed; nothing reaches bob."""
    alice, bob, s, _r = _tcp_pair(agent_factory, addr)
    reader = AppClient(bob.session_dir(PATH))
    bob.wait_session(PATH, lambda x: x.ipc_clients == 1)
    host, port = hostport(s.endpoint)
    assert run_as(NOBODY, host, port, frame(b"INJECTED-BY-uid65534")) == "closed"
    rhost, rport = hostport(bob.session(PATH).endpoint)
    # a reader's endpoint: refused when it says nothing (after AUTH_TIMEOUT), or at once
    # when its first bytes are not the cookie
    first = b"" if silent else frame(b"let me read")
    assert run_as(NOBODY, rhost, rport, first) == "closed"
    # a wrong cookie does not help either
    bad = preamble(os.urandom(32)) + frame(b"INJECTED")
    assert run_as(NOBODY, host, port, bad) == "closed"
    writer = AppClient(alice.session_dir(PATH))
    writer.send(b"genuine")
    f = reader.recv()
    assert (f.payload, f.seq) == (b"genuine", 1)  # the injected frame never got a seq
    assert bob.session(PATH).ipc_clients == 1
    wait_for(lambda: "sent no session cookie" in alice.log_text(), what="refusal logged")
    assert "wrong session cookie" in alice.log_text()


@as_root
@pytest.mark.e2e
@has_ipv6
def test_container_app_with_cookie_is_served(agent_factory):
    """An app whose uid the agent cannot see as its own (here: another uid) but that
    can read the cookie file (mounted into its container) is served."""
    alice, bob, s, _r = _tcp_pair(agent_factory, "[::1]:0")
    reader = AppClient(bob.session_dir(PATH))
    bob.wait_session(PATH, lambda x: x.ipc_clients == 1)
    cookie = bytes.fromhex((alice.session_dir(PATH) / COOKIE_NAME).read_text().strip())
    host, port = hostport(s.endpoint)
    # served: its frame arrives, and it is not closed (a refusal would be immediate)
    assert run_as(NOBODY, host, port, preamble(cookie) + frame(b"from-container"), 2.0) == "open"
    f = reader.recv()
    assert (f.payload, f.seq) == (b"from-container", 1)


@pytest.mark.e2e
def test_client_library_sends_the_cookie(agent_factory):
    """`hotlink.ctl.client.Stream` presents the cookie: with it a same-user connection
    works, and a same-user connection with a wrong cookie is refused."""
    import asyncio

    from hotlink.ctl.client import Stream, resolve_endpoint

    alice, bob, s, _r = _tcp_pair(agent_factory, "127.0.0.1:0")
    reader = AppClient(bob.session_dir(PATH))
    bob.wait_session(PATH, lambda x: x.ipc_clients == 1)
    ep = resolve_endpoint(alice.session_dir(PATH))
    assert ep.kind == "tcp" and len(ep.cookie) == 32 and "cookie" not in repr(ep)

    async def send() -> None:
        async with await Stream.connect(alice.session_dir(PATH)) as st:
            await st.send(b"via-library")

    asyncio.run(send())
    assert reader.recv().payload == b"via-library"
    with socket.create_connection(hostport(s.endpoint)) as c:
        c.sendall(preamble(os.urandom(32)) + frame(b"x"))
        c.settimeout(15)
        assert c.recv(100) == b""
    assert bob.session(PATH).counters.frames_received == 1


# --------------------------------------------------------------------------- control API


_CONTROL_ATTACKER = textwrap.dedent(
    """
    import encodings.idna, os, sys
    import grpc
    from hotlink.v1 import agent_pb2 as pb, agent_pb2_grpc as pb_grpc
    os.setgroups([]); os.setgid(int(sys.argv[3])); os.setuid(int(sys.argv[3]))
    target, secret = sys.argv[1], sys.argv[2]
    md = [("authorization", "Bearer " + secret)] if secret else None
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as ch:
        stub = pb_grpc.HotlinkAgentStub(ch)
        out = []
        for call, req in (("GetStatus", pb.GetStatusRequest()),
                          ("ListSessions", pb.ListSessionsRequest()),
                          ("OpenSession", pb.OpenSessionRequest(path="_mpc/evil"))):
            try:
                getattr(stub, call)(req, timeout=10, metadata=md)
                out.append(call + "=OK")
            except grpc.RpcError as exc:
                out.append(call + "=" + exc.code().name)
    print(" ".join(out))
    """
)


def _control_as(uid: int, target: str, secret: str = "") -> str:
    res = subprocess.run(
        [sys.executable, "-c", _CONTROL_ATTACKER, target, secret, str(uid)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        env={**os.environ, "HOME": "/"},
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@as_root
@pytest.mark.e2e
@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=has_ipv6)])
def test_control_tcp_refuses_other_uid(agent_factory, host):
    """Another uid on --control-tcp gets PERMISSION_DENIED for every call (the issue's
    attacker got status, ls and an open); with the secret file's content it is served."""
    port = free_port(host)
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    alice = agent_factory(A, args=["--control-tcp", addr])
    out = _control_as(NOBODY, addr)
    assert out == "GetStatus=PERMISSION_DENIED ListSessions=PERMISSION_DENIED " + (
        "OpenSession=PERMISSION_DENIED"
    ), out
    assert not alice.status().sessions  # nothing was opened
    # the log names the caller's uid: the owner lookup found it (not "unknown user")
    wait_for(lambda: f"is uid {NOBODY} and presented" in alice.log_text(), what="log line")
    secret_file = alice.root / ".hotlink" / "control-tcp.secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    ok = _control_as(NOBODY, addr, secret_file.read_text().strip())
    assert ok.startswith("GetStatus=OK ListSessions=OK"), ok
    bad = _control_as(NOBODY, addr, "0" * 64)
    assert bad.startswith("GetStatus=PERMISSION_DENIED"), bad


@pytest.mark.e2e
def test_control_tcp_same_user_and_secret_env(agent_factory, monkeypatch):
    """The agent's own user needs nothing; `AgentClient` adds the secret from
    HOTLINK_CONTROL_SECRET_FILE, and the UNIX socket ignores it."""
    import asyncio

    from hotlink.ctl.client import AgentClient

    port = free_port("127.0.0.1")
    alice = agent_factory(A, args=["--control-tcp", f"127.0.0.1:{port}"])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        st = pb_grpc.HotlinkAgentStub(ch).GetStatus(pb.GetStatusRequest(), timeout=5)
    assert st.email == A
    monkeypatch.setenv(
        "HOTLINK_CONTROL_SECRET_FILE", str(alice.root / ".hotlink" / "control-tcp.secret")
    )

    async def status() -> str:
        async with AgentClient(f"127.0.0.1:{port}") as c:
            return (await c.get_status()).email

    assert asyncio.run(status()) == A
