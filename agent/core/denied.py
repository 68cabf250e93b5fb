"""What a relay's "permission denied" on a sender's session means, in words a user can
act on.

The relay's Reject says only "permission denied" (the reference's reason, kept on the
wire). For a sender it has two causes (hotlink-protocol.md §3): the sender lacks write
access to the path, or the reader named with `--to` lacks read access. The owner of a
datasite always has every access to it, so when the owner sends only the second cause
is left: the reason then names the reader and the grant that lets it in, instead of
sending the owner to look for a grant of its own.
"""

from __future__ import annotations

import shlex

from hotlink.wire.messages import REASON_PERMISSION_DENIED
from hotlink.wire.paths import split_owner


def sender_denied(path: str, sender: str, to: str) -> str:
    """The reason to show for a sender's session on `path` (`owner@host/folder...`)
    that the relay turned down with "permission denied"; `sender` is this agent's
    user ("" if unknown), `to` the reader named at the open ("" if none)."""
    owner, rest = split_owner(path)
    folder = shlex.quote(rest)  # pasted into a shell as it is
    base = REASON_PERMISSION_DENIED
    if not sender or not rest:
        return base
    # the owner (like the sender itself) needs no grant to read
    reader = to if to and to not in (sender, owner) else ""
    if sender == owner:
        if not reader:  # the owner's own open: not an ACL verdict we can explain
            return base
        return (
            f"{base}: {reader} has no read access to {path} "
            f"(grant it: hotlinkctl acl grant {folder} {reader} --read)"
        )
    if reader:
        return (
            f"{base}: sending on {path} needs write access for {sender} and read access "
            f"for {reader}, both granted by {owner} (on {owner}'s agent: hotlinkctl acl "
            f"grant {folder} EMAIL --write or --read)"
        )
    return (
        f"{base}: {sender} has no write access to {path} "
        f"(on {owner}'s agent: hotlinkctl acl grant {folder} {sender} --write)"
    )
