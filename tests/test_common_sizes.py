"""`hotlink.common.sizes`: one size parser for relay and agent flags, env and TOML."""

from __future__ import annotations

from pathlib import Path

import pytest
from hotlink.agent.config import ConfigError, load_config
from hotlink.common.sizes import SizeError, parse_size
from hotlink.ctl import stats
from hotlink.relay import cli as relay_cli

BASE = ["--server", "ws://h:1", "--email", "a@example.org", "--token-file", "/t", "--root", "/r"]


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("16777216", 16 << 20),
        ("16MiB", 16 << 20),
        ("16mib", 16 << 20),
        ("16 MB", 16 << 20),
        ("512k", 512 << 10),
        ("512KiB", 512 << 10),
        ("1.5MB", 3 << 19),
        ("2G", 2 << 30),
        ("100b", 100),
        ("1_000", 1000),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["huge", "", "-1", "1.5", "16 XB", "0x10", True])
def test_parse_size_refuses(text: object) -> None:
    with pytest.raises(SizeError):
        parse_size(text)  # type: ignore[arg-type]


def test_minimum_and_error_types() -> None:
    assert parse_size("0") == 0
    with pytest.raises(ValueError, match="minimum of 1024"):
        parse_size("1000", minimum=1024)
    # The relay keeps its 1 KiB floor, the benchmark its 8-byte one.
    with pytest.raises(ValueError):
        relay_cli.parse_size("1000")
    with pytest.raises(ValueError):
        stats.parse_size("4")


def test_relay_and_agent_read_the_same_text_the_same_way(tmp_path: Path) -> None:
    relay = relay_cli.build_parser().parse_args(
        ["serve", "--data", str(tmp_path), "--max-message", "8MiB"]
    )
    agent = load_config([*BASE, "--max-message", "8MiB"], {})
    assert relay.max_message == agent.max_message == 8 << 20 == stats.parse_size("8MiB")


def test_agent_sizes_from_flags_env_and_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('send_queue_bytes = "32MiB"\nreader_queue_bytes = 1048576\n')
    env = {"HOTLINK_CONFIG": str(cfg), "HOTLINK_MAX_PAYLOAD": "1MiB", "HOTLINK_RESEND_BYTES": "0"}
    c = load_config([*BASE, "--reader-buffer-bytes", "256k"], env)
    assert c.send_queue_bytes == 32 << 20  # TOML string
    assert c.reader_queue_bytes == 1 << 20  # TOML integer
    assert c.max_payload == 1 << 20  # env
    assert c.resend_bytes == 0  # 0 still disables the re-send window
    assert c.reader_buffer_bytes == 256 << 10  # flag
    with pytest.raises(ConfigError, match="--max-message"):
        load_config([*BASE, "--max-message", "lots"], {})
    with pytest.raises(ConfigError, match="HOTLINK_MAX_PAYLOAD"):
        load_config(BASE, {"HOTLINK_MAX_PAYLOAD": "0"})


def test_argparse_shows_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        relay_cli.build_parser().parse_args(["serve", "--data", str(tmp_path), "--max-queue", "x"])
    assert "not a size: 'x'" in capsys.readouterr().err
