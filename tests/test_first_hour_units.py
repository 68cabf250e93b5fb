"""Unit tests (no processes, no sockets) for the first-hour fixes: ACL editing, the
watcher's ACL events, pending reasons, token file checks, status text, the bounded
telemetry shutdown, agent-origin errors, and `devstack --help`."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from hotlink.agent.pending import LINK_DOWN, pending_reason
from hotlink.agent.tokenfile import permission_problem, unverified_subject
from hotlink.agent.watcher import is_acl, watch_filter
from hotlink.ctl import acledit, cli, output
from hotlink.ctl.client import translate_rpc_error
from hotlink.ctl.errors import AgentUnreachable, Unavailable
from hotlink.relay.acl import Access, AclIndex, parse_acl
from hotlink.relay.auth import mint_token
from hotlink.telemetry.export import SdkSink
from hotlink.v1 import agent_pb2 as pb
from watchfiles import Change

A, B, C = "alice@example.org", "bob@example.org", "carol@example.org"


# --------------------------------------------------------------------------- acledit


def _index(text: str, folder: str = f"{A}/_mpc") -> AclIndex:
    idx = AclIndex()
    idx.set_file(folder, parse_acl(text))
    return idx


def test_grant_on_an_empty_folder_gives_exactly_that_access() -> None:
    text = acledit.grant("", B, "read")
    idx = _index(text)
    assert idx.can(B, f"{A}/_mpc/0_to_1", Access.READ)
    assert not idx.can(B, f"{A}/_mpc/0_to_1", Access.WRITE)
    assert not idx.can(C, f"{A}/_mpc/0_to_1", Access.READ)
    # the shape the README shows
    assert "- pattern: '**'\n  access:\n    read: [bob@example.org]\n" in text


def test_grant_is_idempotent_and_keeps_other_rules_in_order() -> None:
    base = 'rules:\n  - pattern: "secret/**"\n    access:\n      read: []\n'
    once = acledit.grant(base, B, "write")
    assert acledit.grant(once, B, "write") == once
    rules = acledit.rules(once)
    assert [r.pattern for r in rules] == ["secret/**", "**"]  # appended, never shadows
    idx = _index(once)
    assert idx.can(B, f"{A}/_mpc/x", Access.WRITE)
    assert not idx.can(B, f"{A}/_mpc/secret/x", Access.READ)  # the earlier rule decides


def test_revoke_removes_the_user_everywhere_and_counts() -> None:
    text = acledit.grant(acledit.grant("", B, "read"), B, "write", pattern="x/**")
    new, removed = acledit.revoke(text, B)
    assert removed == 2
    assert not _index(new).can(B, f"{A}/_mpc/x/y", Access.READ)
    assert acledit.revoke(new, B) == (new, 0)


@pytest.mark.parametrize(
    ("existing", "email", "access", "msg"),
    [
        ("rules: 5\n", B, "read", "the existing file is invalid"),
        ("", "not an email", "read", "neither an email"),
        ("", B, "owner", "access must be one of"),
    ],
)
def test_bad_edits_are_refused(existing: str, email: str, access: str, msg: str) -> None:
    with pytest.raises(acledit.AclEditError, match=msg):
        acledit.grant(existing, email, access)


def test_users_are_listed_lower_case() -> None:
    text = acledit.grant("", "Bob@Example.ORG", "read")
    assert _index(text).can(B, f"{A}/_mpc/x", Access.READ)
    assert acledit.revoke(text, "BOB@example.org")[1] == 1


def test_grant_everyone() -> None:
    assert _index(acledit.grant("", "*", "read")).can(C, f"{A}/_mpc/a", Access.READ)


# --------------------------------------------------------------------------- watcher


def test_watcher_reports_acl_files_of_any_change_and_requests_as_before() -> None:
    assert is_acl("/r/datasites/a/_mpc/syft.pub.yaml")
    assert not is_acl("/r/datasites/a/_mpc/not-syft.pub.yaml")
    for change in (Change.added, Change.modified, Change.deleted):
        assert watch_filter(change, "/r/a/_mpc/syft.pub.yaml")
    assert watch_filter(Change.added, "/r/a/x.request")
    assert not watch_filter(Change.added, "/r/a/.hotlink-tmp-1")
    assert not watch_filter(Change.deleted, "/r/a/x.request")


# --------------------------------------------------------------------------- pending


def _s(path: str, sender: bool, reason: str = "") -> SimpleNamespace:
    return SimpleNamespace(path=path, reason=reason, is_sender=sender)


def test_pending_reader_says_what_it_waits_for_and_how_to_fix_it() -> None:
    why = pending_reason(_s(f"{A}/_mpc/0_to_1", False), True, "UP", "")
    assert why.startswith(f"waiting for {A}'s open")
    assert "hotlinkctl acl grant _mpc/0_to_1 YOUR@EMAIL --read" in why
    # the agent names its own user in the grant the owner should make
    why = pending_reason(_s(f"{A}/_mpc/0_to_1", False), True, "UP", "", "bob@x.org")
    assert "hotlinkctl acl grant _mpc/0_to_1 bob@x.org --read" in why


def test_pending_with_the_link_down_names_the_link_and_its_error() -> None:
    why = pending_reason(_s(f"{A}/_mpc/0_to_1", True), False, "CONNECTING", "refused")
    assert why == "relay link is connecting (refused); the session goes live when the link is back"
    # a "link down" recorded earlier is stale once the link is up again
    why = pending_reason(_s(f"{A}/_mpc/0_to_1", False, LINK_DOWN), True, "UP", "")
    assert why.startswith("waiting for")
    # other recorded reasons (a transient reject) are kept
    assert pending_reason(_s("a@x.org/p", True, "rate limited"), True, "UP", "") == ("rate limited")


# --------------------------------------------------------------------------- token file


def test_token_file_permissions(tmp_path: Path) -> None:
    f = tmp_path / "t"
    f.write_text("x")
    f.chmod(0o600)
    assert permission_problem(f) == ""
    f.chmod(0o640)
    assert "accessible by group (mode 0640)" in permission_problem(f)
    f.chmod(0o604)
    assert "accessible by others (mode 0604)" in permission_problem(f)


def test_unverified_subject_reads_our_tokens_only() -> None:
    assert unverified_subject(mint_token(b"k" * 32, A)) == A
    assert unverified_subject("garbage") == ""
    assert unverified_subject("!!!.sig") == ""


# --------------------------------------------------------------------------- ctl


def test_status_does_not_show_a_stale_error_on_a_healthy_link() -> None:
    st = pb.GetStatusResponse(email=A, link_state=pb.LINK_STATE_UP, last_error="old")
    assert "last error" not in output.status_text(st)
    st.link_state = pb.LINK_STATE_CONNECTING
    assert "(last error: old)" in output.status_text(st)


def _rpc_error(details: str, md: tuple[tuple[str, str], ...]) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(*md), details
    )


def test_an_agent_answer_quoting_connection_refused_is_not_unreachable() -> None:
    details = "relay link is connecting: relay refused ... Connection refused"
    err = translate_rpc_error(_rpc_error(details, (("hotlink-origin", "agent"),)), "unix:/x", "o")
    assert isinstance(err, Unavailable) and err.exit_code == 6
    err = translate_rpc_error(_rpc_error("failed to connect to all addresses", ()), "unix:/x", "o")
    assert isinstance(err, AgentUnreachable)


def test_devstack_help_lists_only_what_applies(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["devstack", "--help"], ["devstack", "up", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        out = capsys.readouterr().out
        assert "--json" in out
        for flag in ("--agent", "--root", "--rpc-timeout"):  # (not --agent-arg)
            assert not re.search(f"{flag}(?![-\\w])", out), (argv, flag)


# --------------------------------------------------------------------------- telemetry


class _StuckExporter:
    """An OTLP exporter whose collector is gone: export blocks until shutdown()."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.shutdowns = 0

    def export(self, spans: object) -> object:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.stop.wait()
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.shutdowns += 1
        self.stop.set()

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


@pytest.mark.timeout(60)
def test_sink_shutdown_is_bounded_when_the_collector_is_gone() -> None:
    """Before: `force_flush` ran the export in the caller and ignored its timeout, so a
    dead collector held the exiting process in the exporter's retries."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = _StuckExporter()
    proc = BatchSpanProcessor(exporter, schedule_delay_millis=3_600_000)  # type: ignore[arg-type]
    provider = TracerProvider(resource=Resource.create({}))
    provider.add_span_processor(proc)
    provider.get_tracer("t").start_span("s").end()
    SdkSink(proc, Resource.create({})).shutdown(0.2)  # returns: the test would time out
    assert exporter.shutdowns >= 1  # the stuck export was interrupted


# --------------------------------------------------------------------------- link


def test_a_refused_token_is_retried_slowly_and_says_why() -> None:
    from hotlink.agent.link import AUTH_RETRY, Backoff, _describe, retry_delay
    from websockets.datastructures import Headers
    from websockets.exceptions import InvalidStatus
    from websockets.http11 import Response

    refused = InvalidStatus(Response(401, "Unauthorized", Headers(), b"unauthorized: bad sig\n"))
    assert _describe(refused) == "relay refused the connection: HTTP 401 (bad sig)"
    backoff = Backoff(0.05, 0.5, rng=lambda: 1.0)
    assert retry_delay(refused, backoff) == AUTH_RETRY >= 60
    assert retry_delay(ConnectionRefusedError(), backoff) <= 0.5


@pytest.mark.parametrize("status", [429, 503])
def test_a_relay_at_capacity_is_retried_after_a_jittered_pause(status: int) -> None:
    """HTTP 429 (too many connections for the user) and 503 (the relay's descriptors)
    are retried after BUSY_RETRY/2..BUSY_RETRY s, not at the first backoff steps."""
    from hotlink.agent.link import BUSY_RETRY, Backoff, _describe, retry_delay
    from websockets.datastructures import Headers
    from websockets.exceptions import InvalidStatus
    from websockets.http11 import Response

    body = b"relay at its connection limit: 5 of 40 file descriptors in use\n"
    busy = InvalidStatus(Response(status, "Busy", Headers(), body))
    assert _describe(busy).endswith(
        "(relay at its connection limit: 5 of 40 file descriptors in use)"
    )
    assert retry_delay(busy, Backoff(0.05, 5.0, rng=lambda: 0.0)) == BUSY_RETRY / 2
    assert retry_delay(busy, Backoff(0.05, 5.0, rng=lambda: 1.0)) == BUSY_RETRY
    late = Backoff(0.05, 5.0, rng=lambda: 1.0)
    late.attempt = 10  # the backoff is past it: kept
    assert retry_delay(busy, late) == 5.0


def test_suggested_commands_paste_as_one_argument_per_path() -> None:
    """A folder name with a space or a quote stays one argument when the suggested
    command is pasted into a shell."""
    import shlex

    from hotlink.agent.core.denied import sender_denied
    from hotlink.ctl.commands.sessions import no_reader_yet
    from hotlink.v1 import agent_pb2 as pb

    rest = "_mpc/a b'c"
    path = f"{A}/{rest}"

    def commands(text: str) -> list[list[str]]:
        return [shlex.split(m) for m in re.findall(r"(hotlinkctl [^;)]*?)(?:\)|;|$)", text)]

    pending = pending_reason(_s(path, False), True, "UP", "", "bob@x.org")
    assert commands(pending) == [["hotlinkctl", "acl", "grant", rest, "bob@x.org", "--read"]]
    denied = sender_denied(path, A, "bob@x.org")
    assert commands(denied) == [["hotlinkctl", "acl", "grant", rest, "bob@x.org", "--read"]]
    hint = no_reader_yet(pb.Session(path=path))
    grant = shlex.split(hint.split("hotlinkctl ", 1)[1].split(")", 1)[0])
    assert grant == ["acl", "grant", rest, "READER", "--read"]
    assert f"open {shlex.quote(path)} on their own agent" in hint
