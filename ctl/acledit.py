"""Edit one `syft.pub.yaml`: grant or revoke one user's access on one rule pattern.

Pure text in, text out (no file I/O), so every edit is testable without an agent.
Every result is validated by the relay's own parser (`hotlink.relay.acl.parse_acl`):
a file this module writes is one the relay accepts, and a hand-written file that the
relay would refuse is reported instead of being silently rewritten.

Edits keep the other rules and their order. A grant adds the user to the rule whose
pattern is exactly the one given; when there is none it appends a new rule, so it
never shadows a rule that already decides some paths (within a file the first
matching rule wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from hotlink.relay.acl import EVERYONE, AclError, parse_acl
from hotlink.wire.errors import ProtocolError
from hotlink.wire.paths import normalize_email

ACCESS_LEVELS = ("read", "write", "admin")
#: the pattern a folder-wide grant uses: the folder and everything below it
ALL = "**"
HEADER = "# syft.pub.yaml: who may read/write this folder (edited by hotlinkctl acl)\n"


class AclEditError(ValueError):
    """The file cannot be edited (invalid as it is) or the edit is invalid."""


@dataclass(frozen=True, slots=True)
class RuleView:
    pattern: str
    read: tuple[str, ...]
    write: tuple[str, ...]
    admin: tuple[str, ...]


def _load(text: str) -> dict[str, Any]:
    if not text.strip():
        return {"rules": []}
    try:
        parse_acl(text)
    except AclError as exc:
        raise AclEditError(f"the existing file is invalid ({exc}); fix or remove it") from None
    doc = yaml.safe_load(text)
    if doc is None:
        return {"rules": []}
    doc.setdefault("rules", [])
    if doc["rules"] is None:
        doc["rules"] = []
    return doc


def _dump(doc: dict[str, Any]) -> str:
    out = HEADER + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
    parse_acl(out)  # what we write, the relay accepts
    return out


def check_user(email: str) -> str:
    """The canonical (lower-case) form of a user to list, or '*'."""
    if email == EVERYONE:
        return email
    try:
        return normalize_email(email)
    except ProtocolError as exc:
        raise AclEditError(f"{email!r} is neither an email nor '*': {exc}") from None


def grant(text: str, email: str, access: str = "read", pattern: str = ALL) -> str:
    """`text` with `email` given `access` on `pattern` (idempotent)."""
    if access not in ACCESS_LEVELS:
        raise AclEditError(f"access must be one of {', '.join(ACCESS_LEVELS)}, got {access!r}")
    email = check_user(email)
    doc = _load(text)
    rule = next((r for r in doc["rules"] if r.get("pattern") == pattern), None)
    if rule is None:
        rule = {"pattern": pattern, "access": {}}
        doc["rules"].append(rule)
    acc = rule.setdefault("access", {}) or {}
    rule["access"] = acc
    users = acc.get(access) or []
    if email not in users:
        users.append(email)
    acc[access] = users
    try:
        return _dump(doc)
    except AclError as exc:
        raise AclEditError(f"pattern {pattern!r}: {exc}") from None


def revoke(text: str, email: str, pattern: str | None = None) -> tuple[str, int]:
    """`text` without `email` in any access list (of `pattern` only, if given), and how
    many entries were removed. A wildcard (`*`) entry is not touched: revoke `*` itself."""
    email = check_user(email)
    doc = _load(text)
    removed = 0
    for rule in doc["rules"]:
        if pattern is not None and rule.get("pattern") != pattern:
            continue
        acc = rule.get("access") or {}
        for level in ACCESS_LEVELS:
            users = acc.get(level) or []
            if email in users:
                acc[level] = [u for u in users if u != email]
                removed += 1
    return _dump(doc), removed


def rules(text: str) -> list[RuleView]:
    """The rules of a (valid) file, for display."""
    doc = _load(text)
    out = []
    for r in doc["rules"]:
        acc = r.get("access") or {}
        out.append(
            RuleView(
                str(r.get("pattern")),
                *(tuple(acc.get(level) or ()) for level in ACCESS_LEVELS),
            )
        )
    return out
