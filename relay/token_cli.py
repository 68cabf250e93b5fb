"""`hotlink-relay token EMAIL` (mint) and `hotlink-relay token revoke` (deny list).

Minting needs the relay's existing secret: a `--data` typo must not create a fresh
secret and print a token the running relay rejects, so a missing `relay.secret` is
an error unless `--init` says to create one (first setup, before the relay ever ran).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from hotlink.common.atomic import write_atomic

from .auth import (
    DEFAULT_TTL,
    SECRET_FILE,
    AuthError,
    load_or_create_secret,
    mint_token,
    verify_claims,
)
from .revocation import REVOKED_FILE, DenyList, revoke

_DURATION = re.compile(r"(\d+)\s*([smhdw]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: Longest lifetime `--ttl` accepts (a bound, so no token is "forever" by typo).
MAX_TTL = 10 * 365 * 86400


def parse_duration(text: str) -> int:
    """`30d`, `12h`, `90m`, `3600s`, `3600` -> seconds (1 s .. 10 years)."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30d, 12h, 90m, 3600)")
    n = int(m.group(1)) * _UNIT[m.group(2)]
    if not 0 < n <= MAX_TTL:
        raise argparse.ArgumentTypeError(f"duration must be between 1s and 3650d, got {text!r}")
    return n


def add_mint_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("email", metavar="EMAIL", help="the user (case-normalised to lower case)")
    t.add_argument("--data", required=True, metavar="DIR", help="the relay's data directory")
    t.add_argument(
        "--ttl",
        type=parse_duration,
        default=DEFAULT_TTL,
        metavar="DURATION",
        help="lifetime of the token: 30d, 12h, 90m, 3600 (seconds); the relay refuses it "
        "from then on (default 30d, at most 3650d)",
    )
    t.add_argument(
        "--out",
        metavar="FILE",
        help="write the token to FILE, created owner-only (0600), instead of stdout; "
        "a token is a password: do not leave it in a world-readable file",
    )
    t.add_argument(
        "--init",
        action="store_true",
        help=f"create DIR/{SECRET_FILE} if missing (first setup). Without it a DIR "
        "without a secret is refused: a mistyped --data would otherwise mint a token "
        "no running relay accepts",
    )


TOKEN_EPILOG = (
    "The token's id and expiry are printed to stderr. Revoke one token (or all tokens "
    "of a user) without rotating the secret: hotlink-relay token revoke --data DIR "
    f"TOKEN_OR_ID... [--user EMAIL...]; a running relay picks up DIR/{REVOKED_FILE} "
    "within a second and closes connections made with revoked tokens."
)


def _issue_time(data: Path, email: str) -> int:
    """`iat` for a new token of `email`: now, but after the user's last `revoke --user`
    (which revokes tokens with `iat` <= its second), so a token minted in the same
    second as the revocation, the usual "revoke all, issue a fresh one" step, is
    not born revoked."""
    now = int(time.time())
    try:
        deny = DenyList.parse((data / REVOKED_FILE).read_text())
    except (OSError, ValueError):
        return now
    before = deny.users.get(email.strip().lower())
    return before + 1 if before is not None and now <= before else now


def mint_main(args: argparse.Namespace) -> int:
    data = Path(args.data)
    if not args.init and not (data / SECRET_FILE).is_file():
        print(
            f"hotlink-relay: no {SECRET_FILE} in {data}: is --data the relay's data "
            "directory? (pass --init to create a new secret there; tokens signed with it "
            "are accepted only by a relay serving that directory)",
            file=sys.stderr,
        )
        return 2
    try:
        token = mint_token(
            load_or_create_secret(data), args.email, _issue_time(data, args.email), ttl=args.ttl
        )
        claims = verify_claims(load_or_create_secret(data), token)
    except (AuthError, OSError) as exc:
        print(f"hotlink-relay: {exc}", file=sys.stderr)
        return 2
    if args.out:
        try:
            write_atomic(args.out, token + "\n", mode=0o600)  # never briefly readable
        except OSError as exc:
            print(f"hotlink-relay: {exc}", file=sys.stderr)
            return 2
        print(f"token for {claims.sub} written to {args.out} (0600)", file=sys.stderr)
    else:
        print(token)
    print(
        f"hotlink-relay: token {claims.jti} for {claims.sub}, expires "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(claims.exp))}",
        file=sys.stderr,
    )
    return 0


def build_revoke_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hotlink-relay token revoke",
        description=f"Add tokens to DIR/{REVOKED_FILE}, the relay's deny list. A running "
        "relay reloads it within a second: new connections with those tokens get HTTP 401 "
        "and live ones are closed (1008 'token revoked'). Other tokens, and the secret, "
        "stay valid.",
    )
    p.add_argument(
        "tokens",
        nargs="*",
        metavar="TOKEN_OR_ID",
        help="a token (as printed by 'hotlink-relay token') or its id",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="the relay's data directory")
    p.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="EMAIL",
        help="revoke every token of EMAIL issued up to now (repeatable)",
    )
    return p


def revoke_main(argv: list[str]) -> int:
    p = build_revoke_parser()
    args = p.parse_args(argv)
    if not args.tokens and not args.user:
        p.error("name at least one TOKEN_OR_ID or --user EMAIL")
    data = Path(args.data)
    if not (data / SECRET_FILE).is_file():
        print(f"hotlink-relay: no {SECRET_FILE} in {data}: not a relay data directory",
              file=sys.stderr)  # fmt: skip
        return 2
    from hotlink.wire.errors import ProtocolError
    from hotlink.wire.paths import normalize_email

    ids: dict[str, int] = {}
    try:
        secret = load_or_create_secret(data)
        for t in args.tokens:
            if "." in t:  # a whole token: its signature must be ours
                c = verify_claims(secret, t, now=0)
                ids[c.jti] = c.exp
            elif re.fullmatch(r"[0-9a-f]{1,64}", t):
                ids[t] = int(time.time()) + MAX_TTL
            else:
                raise AuthError(f"{t!r} is neither a token nor a token id")
        users = [normalize_email(u) for u in args.user]
        revoke(data, tokens=ids, users=users)
    except (AuthError, ProtocolError, OSError, ValueError) as exc:
        print(f"hotlink-relay: {exc}", file=sys.stderr)
        return 2
    for j in ids:
        print(f"revoked token {j}")
    for u in users:
        print(f"revoked all tokens of {u} issued up to now")
    return 0
