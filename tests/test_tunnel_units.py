"""Tunnel pieces without a devstack: naming/ACL text, state file, tracer, CLI table."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hotlink.agent.tunnels import mux as M
from hotlink.agent.tunnels import naming
from hotlink.agent.tunnels.state import TunnelSpec, load_tunnels, save_tunnels
from hotlink.agent.tunnels.tracing import SPAN_CONNECTION, SPAN_REFUSED, TunnelTracer
from hotlink.common.hostport import join_hostport, split_hostport
from hotlink.ctl.tunnel_cli import tunnels_table
from hotlink.relay.acl import Access, AclIndex, parse_acl
from hotlink.v1 import agent_pb2 as pb

OWN, F, X = "o@x.org", "f@x.org", "x@x.org"


def test_session_names_and_acl_admit_only_the_peer() -> None:
    down = naming.down_path(OWN, "_mpc/p", F)
    up = naming.up_path(OWN, "_mpc/p", F)
    assert down == f"{OWN}/_hotlink/tunnels/down/{F}/_mpc/p"
    assert up == f"{F}/_hotlink/tunnels/up/{OWN}/_mpc/p"
    idx = AclIndex()
    idx.set_file(f"{OWN}/_hotlink/tunnels/down/{F}", parse_acl(naming.acl_yaml(F)))
    # a broad rule above must not open the tunnel sessions to everyone
    idx.set_file(OWN, parse_acl('rules: [{pattern: "**", access: {read: ["*"]}}]'))
    assert idx.can(F, down, Access.READ)
    assert not idx.can(X, down, Access.READ)
    assert not idx.can(F, down, Access.WRITE)


def test_state_file_roundtrip_and_garbage(tmp_path: Path) -> None:
    p = tmp_path / "tunnels.json"
    assert load_tunnels(p) == []
    specs = [
        TunnelSpec(f"{OWN}/_mpc/p", 2, target="127.0.0.1:7", peers=[F]),
        TunnelSpec(f"{OWN}/_mpc/q", 1, listen="127.0.0.1:0", bound="127.0.0.1:4000"),
    ]
    save_tunnels(p, specs)
    assert load_tunnels(p) == specs
    assert p.stat().st_mode & 0o777 == 0o600
    p.write_text('{"version": 1, "tunnels": [{"path": "nope", "side": 9}, {"bad": 1}]}')
    assert load_tunnels(p) == []
    # addresses that do not parse: the record is left out, the others are kept
    bad_addr = [
        {"path": f"{OWN}/_mpc/a", "side": 1, "listen": "127.0.0.1:0", "bound": "garbage"},
        {"path": f"{OWN}/_mpc/b", "side": 2, "target": "no-port"},
        {"path": f"{OWN}/_mpc/c", "side": 1, "listen": "127.0.0.1:70000"},
    ]
    p.write_text(json.dumps({"version": 1, "tunnels": [*bad_addr, asdict(specs[1])]}))
    assert load_tunnels(p) == [specs[1]]
    p.write_text("not json")
    assert load_tunnels(p) == []


def test_hostport() -> None:
    assert split_hostport("[::1]:80") == ("::1", 80)
    assert join_hostport("::1", 80) == "[::1]:80"
    assert split_hostport("example.org:443") == ("example.org", 443)
    assert split_hostport("[fe80::1%eth0]:80") == ("fe80::1%eth0", 80)
    # refused when the tunnel is made, not at its first connection
    for bad in (
        "nohost", ":80", "h:99999", "h:x", "foo bar:7000", " 127.0.0.1:7000",
        "1.2.3.4.5:7000", "300.1.1.1:80", "127.0.0.1:07000", "::1:80", "[]:80",
    ):  # fmt: skip
        try:
            split_hostport(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


class FakeTel:
    def __init__(self) -> None:
        self.spans: list[tuple[str, dict[str, Any], str]] = []

    def sample_lifecycle(self) -> object:
        return object()

    def record(self, name: str, ctx: object, t0: int, t1: int, attrs: dict[str, Any],
               error: str = "") -> None:  # fmt: skip
        assert t1 >= t0
        self.spans.append((name, attrs, error))


def test_tracer_one_span_per_connection() -> None:
    tel = FakeTel()
    tr = TunnelTracer(tel)
    tr.conn_event("p", F, 1, M.Opened(1))
    tr.conn_event("p", F, 1, M.Ended(1, "closed", True, 10, 20))
    tr.conn_event("p", F, 2, M.Ended(2, "target: refused", False, 0, 0))
    tr.conn_event("p", F, 3, M.Opened(3))
    tr.conn_event("p", F, 3, M.Ended(3, "tcp: reset", False, 1, 1))
    names = [(n, e) for n, _, e in tel.spans]
    assert names == [(SPAN_CONNECTION, ""), (SPAN_REFUSED, "target: refused"),
                     (SPAN_CONNECTION, "tcp: reset")]  # fmt: skip
    assert tel.spans[0][1]["hotlink.tunnel.bytes_in"] == 10
    assert not tr.started


def test_cli_table() -> None:
    assert tunnels_table([]) == "no tunnels"
    t = pb.Tunnel(path=f"{OWN}/_mpc/p", side=pb.TUNNEL_SIDE_FORWARD, listen="127.0.0.1:4000",
                  state="ready", peers=[pb.TunnelPeer(email=OWN, state="ready")],
                  counters=pb.TunnelCounters(connections=3, bytes_in=2500))  # fmt: skip
    text = tunnels_table([t])
    assert "127.0.0.1:4000" in text and "2.5KB" in text and "forward" in text
    assert len(text.splitlines()) == 2  # header and row: a ready tunnel has no reason
    why = "cannot listen on 127.0.0.1:4001: address already in use"
    waiting = pb.Tunnel(
        path=f"{OWN}/_mpc/w", side=pb.TUNNEL_SIDE_FORWARD, state="waiting", reason=why
    )
    lines = tunnels_table([t, waiting]).splitlines()
    assert lines[-1] == f"{OWN}/_mpc/w: waiting: {why}"
