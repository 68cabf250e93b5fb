"""`hotlinkctl peers`: this agent's identity fingerprint and the peers it has pinned.

A direct link proves both identities with each agent's long-term key, pinned on first
use (`agent/direct/pins.py`). These commands read and edit the pins file in the
agent's root (found from the agent itself, as `acl` does); the agent picks up an edit
at its next negotiation, without a restart.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from hotlink.agent.direct.identity import IDENTITY_FILE, Identity
from hotlink.agent.direct.pins import PINS_FILE, PinStore, check_fingerprint
from hotlink.wire.errors import ProtocolError
from hotlink.wire.paths import normalize_email

from .. import output
from ..errors import ExitCode, NotFound, UsageError
from .common import run, with_agent


def _hl_dir(args: argparse.Namespace) -> tuple[str, Path]:
    st = run(with_agent(args, lambda c: c.get_status()))
    return st.email, Path(st.root) / ".hotlink"


def _email(text: str) -> str:
    try:
        return normalize_email(text)
    except ProtocolError as exc:
        raise UsageError(f"bad email {text!r}: {exc}") from None


def cmd_peers_show(args: argparse.Namespace) -> int:
    email, hl = _hl_dir(args)
    try:
        own = Identity.load(hl / IDENTITY_FILE).fingerprint
    except FileNotFoundError:
        own = ""
    except ValueError as exc:
        own = f"unreadable: {exc}"
    pins = PinStore(hl / PINS_FILE).pins()
    if args.json:
        output.dump_json(
            {"email": email, "identity": own,
             "peers": [{"email": e, "fingerprint": p.fingerprint, "how": p.how,
                        "pinned_at": p.pinned_at} for e, p in sorted(pins.items())]}
        )  # fmt: skip
        return ExitCode.OK
    print(f"{email}: {own or 'no identity key yet (made when the direct path starts)'}")
    if not pins:
        print("no peers pinned yet (a peer is pinned at its first direct link)")
    for e, p in sorted(pins.items()):
        print(f"  {e:<32} {p.fingerprint}  {p.how}, {p.pinned_at}")
    return ExitCode.OK


def cmd_peers_forget(args: argparse.Namespace) -> int:
    peer = _email(args.email)
    _, hl = _hl_dir(args)
    old = PinStore(hl / PINS_FILE).forget(peer)
    if old is None:
        raise NotFound(f"{peer} is not pinned", "list the pins with: hotlinkctl peers")
    if args.json:
        output.dump_json({"email": peer, "forgotten": old.fingerprint})
    else:
        print(f"forgot {peer} ({old.fingerprint}); the next direct link pins its key again")
    return ExitCode.OK


def cmd_peers_pin(args: argparse.Namespace) -> int:
    peer = _email(args.email)
    try:
        fp = check_fingerprint(args.fingerprint)
    except ValueError as exc:
        raise UsageError(str(exc), "the peer reads it from: hotlinkctl peers") from None
    _, hl = _hl_dir(args)
    old = PinStore(hl / PINS_FILE).pin(peer, fp)
    if args.json:
        replaced = old.fingerprint if old else ""
        output.dump_json({"email": peer, "fingerprint": fp, "replaced": replaced})
    else:
        was = f" (was {old.fingerprint})" if old and old.fingerprint != fp else ""
        print(f"pinned {peer}: {fp}{was}")
    return ExitCode.OK


def register(add: Callable[..., argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add `hotlinkctl peers [forget|pin]` to the parser."""
    p = add(
        "peers",
        "this agent's identity fingerprint and the peers' pinned ones (direct path)",
        cmd_peers_show,
        "A direct link proves both identities: each agent signs its link keys with a\n"
        "long-term key (ROOT/.hotlink/identity.key), and the first direct link with a\n"
        "user pins that user's fingerprint (ROOT/.hotlink/peers.json). A later link\n"
        "signed by another key is refused (the session stays on the relay and says why).\n"
        "Compare fingerprints out of band to close the first-use gap:\n"
        "  hotlinkctl peers                                  # yours, and the pinned ones\n"
        "  hotlinkctl peers pin bob@example.org SHA256:...   # before the first link\n"
        "  hotlinkctl peers forget bob@example.org           # bob re-installed his agent",
    )
    sub = p.add_subparsers(dest="peers_action", metavar="ACTION")
    f = sub.add_parser(
        "forget", help="drop a peer's pin (its next direct link pins its key again)",
        description="Drop EMAIL's pinned fingerprint, e.g. after that user re-installed "
        "their agent (a new identity key). Exit 4 if EMAIL was not pinned.",
        parents=[common],
    )  # fmt: skip
    f.set_defaults(func=cmd_peers_forget)
    f.add_argument("email", metavar="EMAIL")
    pn = sub.add_parser(
        "pin", help="pin a peer's fingerprint learnt out of band",
        description="Pin EMAIL to FINGERPRINT (SHA256:..., as `hotlinkctl peers` prints "
        "it on that user's machine), replacing any pin it had.",
        parents=[common],
    )  # fmt: skip
    pn.set_defaults(func=cmd_peers_pin)
    pn.add_argument("email", metavar="EMAIL")
    pn.add_argument("fingerprint", metavar="FINGERPRINT")
