"""`token revoke --user E` then minting E a new token in the same second gave a
token that was already revoked."""

from __future__ import annotations

import time
from pathlib import Path

from hotlink.relay.auth import load_or_create_secret, verify_claims
from hotlink.relay.cli import main
from hotlink.relay.revocation import Revocations, revoke


def test_token_minted_right_after_user_revocation_is_valid(tmp_path: Path, capsys) -> None:
    data = tmp_path / "relay"
    secret = load_or_create_secret(data)
    # the revocation's second is "now" (a few seconds ahead, so the mint below
    # surely falls in or before it, as a scripted revoke-then-mint does)
    revoke(data, users=["eve@example.org"], now=int(time.time()) + 3)
    out = tmp_path / "eve.token"
    assert main(["token", "Eve@Example.org", "--data", str(data), "--out", str(out)]) == 0
    claims = verify_claims(secret, out.read_text().strip())
    assert Revocations(data).reason(claims) is None
