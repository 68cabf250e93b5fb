"""Direct path settings: agent flags/env/TOML, OpenSession's override, `hotlinkctl`
rendering of `active_path` and of the direct status (real agent process for the
control API)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from hotlink.agent.config import ConfigError, load_config
from hotlink.ctl import output
from hotlink.v1 import agent_pb2 as pb

A = "alice@example.org"
BASE = ["--server", "ws://127.0.0.1:1", "--email", A, "--token-file", "/t", "--root", "/r"]


def test_direct_defaults_to_auto() -> None:
    cfg = load_config(BASE, env={})
    assert (cfg.direct, cfg.direct_listen, cfg.direct_advertise) == ("auto", (), ())


def test_direct_flags_env_and_toml(tmp_path: Path) -> None:
    cfg = load_config(
        [
            *BASE,
            "--direct",
            "OFF",
            "--direct-listen",
            "127.0.0.1:0",
            "--direct-listen",
            "[::1]:7001",
            "--direct-advertise",
            "203.0.113.5:7000,gw.example.org:7002",
        ],
        env={},
    )
    assert cfg.direct == "off"
    assert cfg.direct_listen == ("127.0.0.1:0", "[::1]:7001")
    assert cfg.direct_advertise == ("203.0.113.5:7000", "gw.example.org:7002")
    env = {"HOTLINK_DIRECT": "off", "HOTLINK_DIRECT_LISTEN": "0.0.0.0:7000"}
    cfg = load_config(BASE, env=env)
    assert (cfg.direct, cfg.direct_listen) == ("off", ("0.0.0.0:7000",))
    toml = tmp_path / "agent.toml"
    toml.write_text('direct = "off"\ndirect_advertise = ["198.51.100.1:9000"]\n')
    cfg = load_config([*BASE, "--config", str(toml)], env={})
    assert (cfg.direct, cfg.direct_advertise) == ("off", ("198.51.100.1:9000",))
    # the flag wins over the file
    assert load_config([*BASE, "--config", str(toml), "--direct", "auto"], env={}).direct == "auto"


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--direct", "on", "expected auto or off"),
        ("--direct-listen", "::1:7000", "IPv6 as [::1]:PORT"),
        ("--direct-listen", "nohost", "HOST:PORT"),
        ("--direct-listen", "h:70000", "HOST:PORT"),
        ("--direct-advertise", "h:0", "port 1-65535"),
    ],
)
def test_direct_bad_values_say_why(flag: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config([*BASE, flag, value], env={})
    assert flag in str(exc.value) and needle in str(exc.value)


def test_help_explains_direct(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_config(["--help"], env={})
    out = capsys.readouterr().out
    for flag in ("--direct auto|off", "--direct-listen HOST:PORT", "--direct-advertise HOST:PORT"):
        assert flag in out
    assert "HOTLINK_DIRECT" in out


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (pb.ACTIVE_PATH_HOTLINK, "relay"),
        (pb.ACTIVE_PATH_FILES, "files"),
        (pb.ACTIVE_PATH_DIRECT, "direct"),
    ],
)
def test_json_active_path_names(value: int, name: str) -> None:
    s = pb.Session(path=f"{A}/_mpc/0_to_1", active_path=value, direct_mode=pb.DIRECT_MODE_AUTO)
    s.direct.add(peer="bob@example.org", status="up")
    d = output.to_dict(s)
    assert d["active_path"] == name and d["direct_mode"] == "AUTO"
    assert d["direct"] == [{"peer": "bob@example.org", "status": "up"}]
    ev = output.to_dict(pb.Event(type=pb.EVENT_TYPE_PATH_SWITCHED, session=s))
    assert ev["session"]["active_path"] == name and ev["type"] == "PATH_SWITCHED"
    text = output.session_detail(s)
    assert f"active path:    {name}" in text and "bob@example.org" in text


@pytest.mark.e2e
def test_open_session_direct_override(agent_factory) -> None:  # type: ignore[no-untyped-def]
    alice = agent_factory(A, args=["--direct", "off"])
    s = alice.open("_mpc/0_to_1")
    assert s.direct_mode == pb.DIRECT_MODE_OFF  # the agent's --direct
    s = alice.open("_mpc/1_to_0", direct=pb.DIRECT_MODE_AUTO)
    assert s.direct_mode == pb.DIRECT_MODE_OFF  # an agent without a listener stays off
    with pytest.raises(grpc.RpcError) as exc:
        alice.open("_mpc/2_to_0", direct=7)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "direct mode" in (exc.value.details() or "")
    bob = agent_factory("bob@example.org", args=["--direct", "auto"])
    assert bob.open("_mpc/x").direct_mode == pb.DIRECT_MODE_AUTO
    assert bob.open("_mpc/y", direct=pb.DIRECT_MODE_OFF).direct_mode == pb.DIRECT_MODE_OFF


@pytest.mark.parametrize("value", ["10", "1023", "5000000000", str((1 << 30) + 1)])
def test_tunnel_window_out_of_range_is_refused_at_start(value: str) -> None:
    # the tunnel layer needs 1 KiB .. 1 GiB (the window travels as a u32): a value
    # outside used to start the agent and then break every tunnel connection
    with pytest.raises(ConfigError, match="tunnel-window"):
        load_config([*BASE, "--tunnel-window", value], env={})


def test_tunnel_window_bounds_are_accepted() -> None:
    assert load_config([*BASE, "--tunnel-window", "1024"], env={}).tunnel_window == 1024
    assert load_config([*BASE, "--tunnel-window", str(1 << 30)], env={}).tunnel_window == 1 << 30


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_tunnel_peer_timeout_must_be_finite(value: str) -> None:
    with pytest.raises(ConfigError, match="tunnel-peer-timeout"):
        load_config([*BASE, "--tunnel-peer-timeout", value], env={})
