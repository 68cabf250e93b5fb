"""Unit tests for relay tokens and the secret file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hotlink.relay.auth import (
    SECRET_FILE,
    AuthError,
    bearer_token,
    load_or_create_secret,
    mint_token,
    verify_token,
)
from hotlink.relay.cli import main


def test_secret_created_0600_and_stable(tmp_path: Path) -> None:
    s1 = load_or_create_secret(tmp_path)
    mode = stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode)
    assert mode == 0o600
    assert load_or_create_secret(tmp_path) == s1
    assert len(s1) >= 32


def test_secret_world_readable_refused(tmp_path: Path) -> None:
    load_or_create_secret(tmp_path)
    os.chmod(tmp_path / SECRET_FILE, 0o644)
    with pytest.raises(AuthError, match="chmod 600"):
        load_or_create_secret(tmp_path)


def test_roundtrip_and_format(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    tok = mint_token(secret, "alice@example.org")
    body, sig = tok.split(".")
    assert "=" not in tok and body and sig
    assert verify_token(secret, tok) == "alice@example.org"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),  # signature changed
        lambda t: "x" + t,  # body changed
        lambda t: t.split(".")[0],  # no signature
        lambda t: "",
        lambda t: "." + t.split(".")[1],
        lambda t: t + "é",
        lambda t: "a" * 5000,
    ],
)
def test_bad_tokens_refused(tmp_path: Path, mangle) -> None:  # type: ignore[no-untyped-def]
    secret = load_or_create_secret(tmp_path)
    with pytest.raises(AuthError):
        verify_token(secret, mangle(mint_token(secret, "alice@example.org")))


def test_other_secret_refused(tmp_path: Path) -> None:
    tok = mint_token(load_or_create_secret(tmp_path / "a"), "alice@example.org")
    with pytest.raises(AuthError, match="signature"):
        verify_token(load_or_create_secret(tmp_path / "b"), tok)


def test_bad_email_not_minted(tmp_path: Path) -> None:
    with pytest.raises(AuthError):
        mint_token(load_or_create_secret(tmp_path), "not an email")


def test_bearer_header() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None


def test_cli_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "bob@example.org", "--data", str(tmp_path), "--init"]) == 0
    tok = capsys.readouterr().out.strip()
    assert verify_token(load_or_create_secret(tmp_path), tok) == "bob@example.org"
    assert main(["token", "bogus", "--data", str(tmp_path)]) == 2
