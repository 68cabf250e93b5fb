"""What a new user meets past the quick start, through real relay and agent processes:
granting access with `hotlinkctl acl`, sessions that say why they wait, exit codes that
match the help, identity and token checks, a refused token, tail across an agent
restart, reflection v1. Waits are for conditions (generous timeouts), never for time.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fixtures_agent import AgentProcess, wait_for
from hotlink.ctl import cli
from hotlink.v1 import agent_pb2 as pb

pytestmark = pytest.mark.e2e

A, B, C = "alice@example.org", "bob@example.org", "carol@example.org"
BIN = Path(sys.executable).parent
#: the periodic ACL scan is pushed out of the picture: only the file watcher can upload
NO_SCAN = ["--pub-scan-interval", "3600"]


def ctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def ctl_proc(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINK_")}
    return subprocess.run(
        [str(BIN / "hotlinkctl"), *argv], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_acl_grant_reaches_the_relay_by_the_watcher_and_the_reader_gets_in(
    agent_factory, relay, capsys
) -> None:
    alice = agent_factory(A, acl_read=[], args=NO_SCAN)
    bob = agent_factory(B, acl_read=[], args=NO_SCAN)
    ra, rb = str(alice.root), str(bob.root)
    code, out, err = ctl(capsys, "--root", ra, "open", "_mpc/0_to_1")
    assert code == 0, err
    assert "no reader is in this session" in err and "acl grant _mpc" in err
    # bob waits, and says why (get, open's output, the agent's log)
    code, out, err = ctl(capsys, "--root", rb, "open", f"{A}/_mpc/0_to_1")
    assert code == 0, err
    assert "PENDING" in out
    assert f"PENDING: waiting for {A}'s open" in err
    assert f"hotlinkctl acl grant _mpc/0_to_1 {B} --read" in err
    code, out, _ = ctl(capsys, "--root", rb, "get", f"{A}/_mpc/0_to_1")
    assert f"waiting for {A}'s open" in out
    assert f"session {A}/_mpc/0_to_1 is pending: waiting for {A}'s open" in bob.log_text()
    # an explicit --timeout that passes says so, exit 6 (unavailable)
    code, out, err = ctl(capsys, "--root", rb, "open", f"{A}/_mpc/0_to_1", "--timeout", "0.5")
    assert code == 6
    assert "still PENDING after --timeout 0.5s" in err and f"waiting for {A}'s open" in err
    # the grant: written by hotlinkctl, uploaded on the file event (no scan for an hour)
    code, out, err = ctl(capsys, "--root", ra, "acl", "grant", "_mpc", B, "--read")
    assert code == 0, err
    assert f"{B} may read {A}/_mpc/**" in out and "uploads the file" in err
    code, out, err = ctl(capsys, "--root", ra, "acl", "grant", "_mpc", B, "--read")
    assert code == 0 and "already granted" in err and "uploads" not in err
    relay.wait_for_log(f"ACL {A}/_mpc/syft.pub.yaml updated by {A}", timeout=30)
    bob.wait_session(f"{A}/_mpc/0_to_1", lambda s: s.state == pb.SESSION_STATE_OPEN, timeout=30)
    code, out, _ = ctl(capsys, "--root", ra, "acl", "show")
    assert code == 0 and "_mpc/syft.pub.yaml" in out and f"read {B}" in out
    code, out, _ = ctl(capsys, "--root", ra, "acl", "revoke", "_mpc", B)
    assert code == 0 and "1 entry removed" in out
    code, _, err = ctl(capsys, "--root", ra, "acl", "grant", f"{B}/_mpc", A)
    assert code == 2 and "that is bob@example.org's datasite" in err
    # the folder's absolute path names that folder (it once granted a folder below it)
    mpc = alice.root / "datasites" / A / "_mpc"
    code, out, err = ctl(capsys, "--root", ra, "acl", "grant", str(mpc) + "/", "Carol@Example.org")
    assert code == 0, err
    assert f"{C} may read {A}/_mpc/**" in out
    assert sorted(p.relative_to(mpc).as_posix() for p in mpc.rglob("syft.pub.yaml")) == [
        "syft.pub.yaml"
    ]
    code, _, err = ctl(capsys, "--root", ra, "acl", "grant", str(alice.root), C)
    assert code == 2 and "is not inside your datasite" in err
    # a file the relay refuses: show says so, and that the old rules still apply
    (mpc / "syft.pub.yaml").write_text("rules: [oops\n")
    code, out, _ = ctl(capsys, "--root", ra, "acl", "show")
    assert code == 1 and "INVALID" in out and "keeps enforcing the last version" in out


def test_require_link_with_the_relay_down_is_unavailable_not_unreachable(
    agent_factory, relay, capsys
) -> None:
    alice = agent_factory(A)
    relay.stop()
    wait_for(lambda: alice.status().link_state != pb.LINK_STATE_UP, 30, "link down")
    code, _, err = ctl(
        capsys, "--root", str(alice.root), "--json", "open", "_mpc/x", "--require-link"
    )
    assert code == 6, err
    assert "AgentUnreachable" not in capsys.readouterr().out
    assert "relay link is" in err and "hotlinkctl status" in err
    # a sender whose link is down: PENDING with the reason; --timeout says it passed
    code, _, err = ctl(capsys, "--root", str(alice.root), "open", "_mpc/y", "--timeout", "0.3")
    assert code == 6
    assert "still PENDING after --timeout 0.3s: relay link is" in err
    # status while down keeps the error; once up again the error is gone (not stale)
    code, out, _ = ctl(capsys, "--root", str(alice.root), "status")
    assert code == 6 and "last error:" in out
    relay.start()
    alice.wait_link(pb.LINK_STATE_UP, timeout=30)
    st = alice.status()
    assert st.last_error == ""
    code, out, _ = ctl(capsys, "--root", str(alice.root), "status", "--wait", "30")
    assert code == 0 and "last error" not in out


def test_a_token_for_another_user_is_refused(agent_factory, relay, tmp_path) -> None:
    root = tmp_path / "carol"
    token = relay.write_token(A, tmp_path / "alice.token")
    carol = AgentProcess(root, C, relay)
    carol.token_file = token
    proc = carol.run_to_exit()
    assert proc.returncode == 1
    assert f"holds a token for {A}, but this agent is {C}" in proc.stderr


def test_the_relay_names_the_user_and_a_mismatch_stops_the_link(relay) -> None:
    """The authoritative check: the relay's X-Hotlink-User (a token whose subject the
    agent cannot read locally still gets caught)."""
    import asyncio

    from hotlink.agent.link import WsLink
    from hotlink.agent.transport import LinkState

    async def go() -> tuple[str, str, LinkState]:
        fatal: list[str] = []
        done = asyncio.Event()

        class L:
            def on_link_up(self) -> None:
                done.set()

            def on_link_down(self, reason: str) -> None:
                pass

            def on_message(self, env: object) -> None:
                pass

            def on_writable(self) -> None:
                pass

        ok = WsLink(relay.url, relay.token(A), max_message=1 << 20, expect_user=A)
        ok.set_listener(L())  # type: ignore[arg-type]
        await ok.start()
        await asyncio.wait_for(done.wait(), 30)
        user = ok.user
        await ok.stop()
        bad = WsLink(
            relay.url,
            relay.token(A),
            max_message=1 << 20,
            expect_user=C,
            on_fatal=lambda r: (fatal.append(r), done.set()),
        )
        done.clear()
        bad.set_listener(L())  # type: ignore[arg-type]
        await bad.start()
        await asyncio.wait_for(done.wait(), 30)
        await asyncio.wait_for(bad._task, 30)  # type: ignore[arg-type] # it ends by itself
        return user, fatal[0], bad.state

    user, reason, state = asyncio.run(go())
    assert user == A
    assert f"authenticated our token as {A}, but this agent is {C}" in reason
    assert state is LinkState.DOWN


def test_bad_token_says_why_and_backs_off(agent_factory, relay, tmp_path) -> None:
    bad = tmp_path / "bad.token"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("not-a-token\n")
    a = AgentProcess(tmp_path / "alice", A, relay)
    a.token_file = bad
    a.start(wait_link=False)
    try:
        wait_for(lambda: "relay refused our token" in a.status().last_error, 30, "401 reason")
        err = a.status().last_error
        assert "HTTP 401" in err and "malformed token" in err, err
        log = a.log_text()
        assert "ERROR hotlink.agent.link: relay refused our token" in log
        assert "retrying every 60s" in log
        # not a reconnect storm (the fixture's backoff is 0.05..0.5 s): one attempt a
        # minute, so at most two within the test's 120 s timeout
        assert 1 <= relay.log_text().count("refused connection") <= 2
    finally:
        a.stop()


def test_world_readable_token_is_warned_about_and_token_out_is_private(
    agent_factory, relay, tmp_path
) -> None:
    out = tmp_path / "bob.token"
    res = subprocess.run(
        [str(BIN / "hotlink-relay"), "token", B, "--data", str(relay.data_dir), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert res.stdout == ""  # nothing secret on the terminal
    out.chmod(0o644)
    bob = AgentProcess(tmp_path / "bob", B, relay)
    bob.token_file = out
    bob.start()
    try:
        assert f"token file {out} is accessible by group and others (mode 0644)" in (bob.log_text())
        assert f"chmod 600 {out}" in bob.log_text()
    finally:
        bob.stop()


@contextlib.contextmanager
def _tail_attached(
    agent_factory, name: str, *tail_args: str
) -> Iterator[tuple[AgentProcess, AgentProcess, str, subprocess.Popen[str]]]:
    """alice sends `_mpc/NAME` to bob, whose `hotlinkctl tail` is attached to it (and
    killed at the end if still running)."""
    alice = agent_factory(A, acl_read=[B])
    bob = agent_factory(B)
    path = f"{A}/_mpc/{name}"
    alice.open(f"_mpc/{name}", to=B)
    bob.open(path)
    bob.wait_session(path, lambda s: s.state == pb.SESSION_STATE_OPEN, timeout=30)
    tail = subprocess.Popen(
        [str(BIN / "hotlinkctl"), "--root", str(bob.root), "tail", path, *tail_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: bob.session(path).ipc_clients == 1, 30, "tail attached")
        yield alice, bob, path, tail
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.communicate()


def test_tail_reconnects_across_an_agent_restart(agent_factory, relay) -> None:
    with _tail_attached(agent_factory, "r", "--count", "2") as (alice, bob, path, tail):
        send = ctl_proc("--root", str(alice.root), "send", "_mpc/r", "--data", "one")
        assert send.returncode == 0, send.stderr
        bob.stop()
        bob.start()
        try:
            bob.wait_session(path, lambda s: s.ipc_clients == 1, timeout=60)
        except AssertionError:
            tail.kill()
            o, e = tail.communicate()
            raise AssertionError(f"{o}\n{e}\n{bob.log_text()[-5000:]}") from None
        send = ctl_proc("--root", str(alice.root), "send", "_mpc/r", "--data", "two")
        assert send.returncode == 0, send.stderr
        out, err = tail.communicate(timeout=60)
    assert tail.returncode == 0, err
    assert "tail: reconnected to" in err
    lines = out.splitlines()
    assert lines[0].endswith(": one") and lines[1].endswith(": two"), out


def test_tail_ends_when_its_session_is_closed(agent_factory, relay) -> None:
    """A session closed for good ends `tail` (exit 0, saying so); it does not wait for
    it like for a restarting agent."""
    with _tail_attached(agent_factory, "end") as (_, bob, path, tail):
        closed = ctl_proc("--root", str(bob.root), "close", path)
        assert closed.returncode == 0, closed.stderr
        _, err = tail.communicate(timeout=60)
    assert tail.returncode == 0, err
    assert "was closed" in err, err


def test_reflection_v1_and_v1alpha(agent_factory) -> None:
    from grpc_reflection.v1alpha import reflection_pb2 as rpb

    alice = agent_factory(A)
    with grpc.insecure_channel(f"unix://{alice.control}") as ch:
        for service in ("grpc.reflection.v1.ServerReflection",
                        "grpc.reflection.v1alpha.ServerReflection"):  # fmt: skip
            call = ch.stream_stream(
                f"/{service}/ServerReflectionInfo",
                request_serializer=rpb.ServerReflectionRequest.SerializeToString,
                response_deserializer=rpb.ServerReflectionResponse.FromString,
            )
            req = rpb.ServerReflectionRequest(list_services="")
            (resp,) = list(call(iter([req]), timeout=30))
            names = {s.name for s in resp.list_services_response.service}
            assert "hotlink.v1.HotlinkAgent" in names, service
            assert "grpc.reflection.v1.ServerReflection" in names
            req = rpb.ServerReflectionRequest(file_containing_symbol="hotlink.v1.HotlinkAgent")
            (resp,) = list(call(iter([req]), timeout=30))
            assert resp.file_descriptor_response.file_descriptor_proto, service


@pytest.mark.parametrize("export", ["process", "inprocess"])
def test_otel_with_the_collector_gone_shuts_down_clean(agent_factory, relay, export) -> None:
    """Spans queued for a collector that is not there: SIGTERM still ends the agent
    cleanly (exit 0, within the fixtures' standard grace), saying what was dropped,
    whether spans are exported by the exporter process or in the agent itself."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    otel = ["--otel", "--otel-endpoint", f"http://127.0.0.1:{port}", "--otel-sampler-arg", "1"]
    env = {"HOTLINK_OTEL_EXPORT": "inprocess"} if export == "inprocess" else {}
    alice = agent_factory(A, args=otel, env=env)
    alice.open("_mpc/t")  # lifecycle spans to export
    assert alice.stop() == 0, alice.log_text()
    log = alice.log_text()
    if export == "inprocess":
        assert "did not take the last spans" in log
    assert "Traceback" not in log
