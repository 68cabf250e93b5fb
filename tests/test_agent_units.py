"""Unit tests: config precedence, private dirs, endpoint naming, path validation, backoff."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hotlink.agent.config import ConfigError, load_config
from hotlink.agent.link import Backoff, events_url
from hotlink.agent.peercred import tcp_peer_uid
from hotlink.agent.runtime_dir import (
    InsecureDirectory,
    bind_unix_socket,
    check_private_dir,
    default_runtime_dir,
    ensure_private_dir,
    pipe_name,
    unix_socket_location,
)
from hotlink.agent.sessions import Role, is_loopback, resolve_path, validate_frame_name
from hotlink.wire.errors import ProtocolError

ME = "alice@example.org"
BASE = ["--server", "ws://h:1", "--email", ME, "--token-file", "/t", "--root", "/r"]


# ----------------------------------------------------------------------- config


def test_config_precedence_flag_env_file_default(tmp_path):
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(
        'server = "ws://file:1"\nemail = "file@example.org"\ntoken_file = "/f"\n'
        'root = "/froot"\nreader_queue = 7\nlog_level = "warning"\nreorder_timeout = 0.5\n'
    )
    env = {"HOTLINK_CONFIG": str(cfg_file), "HOTLINK_READER_QUEUE": "9", "HOTLINK_EMAIL": ME}
    c = load_config(["--reader-queue", "11"], env)
    assert c.reader_queue == 11  # flag > env > file
    assert c.email == ME  # env > file
    assert c.server == "ws://file:1"  # file > default
    assert c.log_level == "WARNING" and c.reorder_timeout == 0.5
    assert c.root == Path("/froot")
    assert c.control == Path("/froot/.hotlink/agent.sock")  # derived default
    assert c.send_queue_frames == 10_000  # default
    c2 = load_config([], {**env, "HOTLINK_READER_QUEUE": ""})
    assert c2.reader_queue == 7


def test_config_flags_only_and_errors(tmp_path):
    c = load_config([*BASE, "--control-tcp", "127.0.0.1:7000"], {})
    assert c.control_tcp == "127.0.0.1:7000" and c.control == Path("/r/.hotlink/agent.sock")
    with pytest.raises(ConfigError, match="missing --server"):
        load_config(["--email", ME], {})
    with pytest.raises(ConfigError, match="--email"):
        load_config([*BASE[:2], "--email", "not-an-email", *BASE[4:]], {})
    with pytest.raises(ConfigError, match="HOTLINK_READER_QUEUE"):
        load_config(BASE, {"HOTLINK_READER_QUEUE": "-1"})
    with pytest.raises(ConfigError, match="ws://"):
        load_config(["--server", "http://x", *BASE[2:]], {})
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense_key = 1\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_config([*BASE, "--config", str(bad)], {})


def test_every_bytes_option_takes_binary_units():
    """The help says BYTES values take binary units: so does every such option."""
    from hotlink.agent.config import OPTIONS

    sized = [o for o in OPTIONS if o.metavar == "BYTES"]
    assert len(sized) > 5
    for o in sized:
        c = load_config([*BASE, "--" + o.name.replace("_", "-"), "3MiB"], {})
        assert getattr(c, o.name) == 3 << 20, o.name


def test_help_mentions_env_for_every_flag(capsys):
    with pytest.raises(SystemExit):
        load_config(["--help"], {})
    out = capsys.readouterr().out
    for env in ("HOTLINK_SERVER", "HOTLINK_TOKEN_FILE", "HOTLINK_CONTROL_TCP", "HOTLINK_CONFIG"):
        assert env in out


# ------------------------------------------------------------------ private dirs


def test_runtime_dir_choice():
    assert default_runtime_dir({"XDG_RUNTIME_DIR": "/run/user/5"}) == Path("/run/user/5/hotlink")
    assert default_runtime_dir({}) == Path(f"/tmp/hotlink-{os.getuid()}")


def test_private_dir_created_0700_and_insecure_refused(tmp_path):
    d = ensure_private_dir(tmp_path / "rt")
    assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    with pytest.raises(InsecureDirectory, match="group/world"):
        ensure_private_dir(open_dir)
    ensure_private_dir(open_dir, fix_mode=True)  # ours: fixed to 0700
    check_private_dir(open_dir)
    link = tmp_path / "link"
    link.symlink_to(d)
    with pytest.raises(InsecureDirectory, match="not a directory"):
        ensure_private_dir(link)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to create a dir owned by another uid")
def test_private_dir_owned_by_someone_else_refused(tmp_path):
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    os.chown(d, 12345, 12345)
    with pytest.raises(InsecureDirectory, match="owned by uid 12345"):
        ensure_private_dir(d)


def test_long_socket_paths_go_to_runtime_dir(tmp_path):
    short = tmp_path / "s" / "stream.sock"
    assert unix_socket_location(short, Path("/rt")) == (short, False)
    long_dir = tmp_path / ("x" * 120)
    where, indirect = unix_socket_location(long_dir / "stream.sock", Path("/rt"))
    assert indirect and where.parent == Path("/rt") and where.suffix == ".sock"
    assert len(where.stem) == 40


def test_bind_unix_socket_is_0600_and_replaces_stale(tmp_path):
    p = tmp_path / "a.sock"
    s = bind_unix_socket(p)
    s.close()
    assert stat.S_IMODE(os.lstat(p).st_mode) == 0o600
    s2 = bind_unix_socket(p)  # stale socket file from a dead process: replaced
    s2.close()
    d = tmp_path / "dir.sock"
    d.mkdir()
    with pytest.raises(FileExistsError):
        bind_unix_socket(d)


def test_pipe_naming():
    n = pipe_name(r"C:\Users\a\datasites\alice@example.org\_mpc\0_to_1")
    assert n.startswith("\\\\.\\pipe\\hotlink-") and len(n) == len("\\\\.\\pipe\\hotlink-") + 40
    assert n == pipe_name(r"C:\Users\a\datasites\alice@example.org\_mpc\0_to_1")
    assert n != pipe_name(r"C:\Users\a\datasites\alice@example.org\_mpc\1_to_0")
    assert pipe_name("rel/dir") == pipe_name(os.path.abspath("rel/dir"))


# -------------------------------------------------------------------- paths


def test_resolve_path_roles():
    assert resolve_path(ME, "_mpc/0_to_1") == (f"{ME}/_mpc/0_to_1", Role.SENDER)
    assert resolve_path(ME, "bob@example.org/_mpc/0_to_1") == (
        "bob@example.org/_mpc/0_to_1",
        Role.READER,
    )
    assert resolve_path(ME, f"{ME}/_mpc/x") == (f"{ME}/_mpc/x", Role.SENDER)
    assert resolve_path(ME, "bob@example.org/x", 1)[1] is Role.SENDER
    # a string-prefix look-alike is somebody else's datasite
    assert resolve_path(ME, f"{ME}.evil/x")[1] is Role.READER
    # the relay never offers a session to its sender: a reader there would wait forever
    with pytest.raises(ProtocolError, match="open it as its sender"):
        resolve_path(ME, "_mpc/0_to_1", 2)


@pytest.mark.parametrize(
    "bad", ["", "/abs", "../x", "a/../b", "a//b", "a/./b", "a\\b", "a\x00b", "bob@example.org"]
)
def test_resolve_path_rejects(bad):
    with pytest.raises(ProtocolError):
        resolve_path(ME, bad)


@pytest.mark.parametrize("good", ["00000001.request", "sub/dir/x.request", "a b.bin"])
def test_frame_names_ok(good):
    assert validate_frame_name(good) == good


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "a//b", ".", "x\ny"])
def test_frame_names_rejected(bad):
    with pytest.raises(ProtocolError):
        validate_frame_name(bad)


# -------------------------------------------------------------------- link


def test_backoff_grows_with_jitter_and_resets():
    b = Backoff(0.1, 2.0, rng=lambda: 1.0)
    assert [round(b.next_delay(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    b.reset()
    lo = Backoff(0.1, 2.0, rng=lambda: 0.0)
    assert lo.next_delay() == 0.05  # jitter: never below half the step
    assert b.next_delay() == 0.1


def test_events_url():
    assert events_url("ws://h:1") == "ws://h:1/api/v1/events"
    assert events_url("ws://h:1/") == "ws://h:1/api/v1/events"
    assert events_url("wss://h/custom") == "wss://h/custom"


def test_loopback_only_for_tcp_ipc():
    for h in ("127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"):
        assert is_loopback(h), h
    for h in ("0.0.0.0", "10.0.0.1", "example.org", "::"):
        assert not is_loopback(h), h


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="Linux only")
def test_tcp_peer_uid_finds_our_own_connection():
    import socket

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        with socket.create_connection(srv.getsockname()) as c:
            a, peer = srv.accept()
            with a:
                assert tcp_peer_uid(peer, a.getsockname()) == os.getuid()
            assert c


def test_cli_reports_config_and_startup_errors(tmp_path, capsys):
    from hotlink.agent.cli import main

    assert main(["--email", ME]) == 2
    assert "missing --server" in capsys.readouterr().err
    rc = main(
        [
            "--server",
            "ws://127.0.0.1:9",
            "--email",
            ME,
            "--token-file",
            str(tmp_path / "none"),
            "--root",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 1


@pytest.mark.parametrize("name", ["stream.sock/x.request", "a/stream.tcp.cookie/b.request"])
def test_frame_name_with_an_endpoint_name_in_any_segment_refused(name: str) -> None:
    with pytest.raises(ProtocolError, match="reserved"):
        validate_frame_name(name)
