"""SyftBox-style ACLs: `syft.pub.yaml` files parsed into rules, and an index answering
`can(user, path, access)` (reference §4). Pure: no sockets; file reads only in `load`.

Semantics:
- the datasite owner (first path segment, exact match) always has full access;
- `admin` implies `write`, `write` implies `read`; `*` means every user;
- rule patterns are globs relative to the folder holding the yaml: `**` (any number of
  segments, including none), `*` (within one segment), `?` (one non-`/` character);
- the nearest `syft.pub.yaml` at or above the path that has a matching rule decides;
  within a file the first matching rule wins; no matching rule anywhere: owner only;
- `terminal: true` makes a file final for its subtree: deeper files are ignored and,
  when none of its rules match, files above it are not consulted.

Decisions are cached per (user, path, access); the cache belongs to one ACL
`generation`, which every change bumps, so callers can cache derived decisions too.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hotlink.wire.errors import ProtocolError
from hotlink.wire.paths import normalize_email, validate_path, validate_relpath

log = logging.getLogger(__name__)

ACL_FILE = "syft.pub.yaml"
EVERYONE = "*"
#: ACL files larger than this are refused (they are tiny in practice).
MAX_ACL_BYTES = 256 * 1024
#: Rules per file and user entries per file (all lists together). YAML aliases let a
#: small file repeat a big list many times (`[*r, *r, ...]`): without these caps a
#: 256 KiB file meant ~10^8 email checks, minutes of a stalled event loop.
MAX_RULES = 1024
MAX_ENTRIES = 16384
_CACHE_LIMIT = 1 << 16
#: libyaml's safe loader when built in: ~6x faster than the pure-Python one, and an ACL
#: upload is parsed on the relay's event loop (a 256 KiB file took ~1 s in Python).
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Access(enum.IntEnum):
    """Ordered so that a higher level implies the lower ones."""

    READ = 1
    WRITE = 2
    ADMIN = 3


class AclError(ProtocolError):
    """An ACL file that cannot be parsed or validated; the message says where and why."""


def _wildcard_match(
    pat: Sequence[str], items: Sequence[str], star: str, one: Callable[[str, str], bool]
) -> bool:
    """Does `pat` match all of `items`, `star` standing for any run of items?

    Greedy matching that backtracks only to the last star (the classic wildcard
    algorithm): O(len(pat) * len(items)) at worst. A backtracking regex would be
    exponential in the number of stars: `*a*a*a*a*b` against 200 `a`s took seconds, and
    ACL patterns come from users. Used per character within a segment (`*`, `?`) and
    per segment within a path (`**`).
    """
    p = i = 0
    back = -1
    mark = 0
    np_, ni = len(pat), len(items)
    while i < ni:
        if p < np_ and pat[p] == star:
            back, mark = p, i
            p += 1
        elif p < np_ and one(pat[p], items[i]):
            p += 1
            i += 1
        elif back >= 0:
            p = back + 1
            mark += 1
            i = mark
        else:
            return False
    while p < np_ and pat[p] == star:
        p += 1
    return p == np_


def _char_match(p: str, c: str) -> bool:
    return p == "?" or p == c


def _segment_match(pat: str, seg: str) -> bool:
    """`*`/`?` glob within one path segment."""
    if "*" not in pat and "?" not in pat:
        return pat == seg
    return _wildcard_match(pat, seg, "*", _char_match)


class Glob:
    """A compiled rule pattern, matched against paths relative to the yaml's folder.

    Same algorithm one level up: `**` is the "star" over whole segments, every other
    pattern segment matches exactly one path segment. Worst case is polynomial in the
    (bounded) pattern and path lengths, never exponential.
    """

    __slots__ = ("pattern", "segs")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.segs = tuple(pattern.split("/"))

    def fullmatch(self, rel: str) -> bool:
        pats = self.segs
        if pats == ("**",):
            return True
        return _wildcard_match(pats, rel.split("/"), "**", _segment_match)


def glob_to_regex(pattern: str) -> Glob:
    """Compile a rule pattern (kept name; returns a `Glob` with `fullmatch`)."""
    return Glob(pattern)


@dataclass(slots=True, frozen=True)
class Rule:
    pattern: str
    read: frozenset[str]
    write: frozenset[str]
    admin: frozenset[str]
    regex: Glob = field(compare=False, repr=False)

    def allows(self, user: str, access: Access) -> bool:
        if access is Access.READ:
            sets = (self.admin, self.write, self.read)
        elif access is Access.WRITE:
            sets = (self.admin, self.write)
        else:
            sets = (self.admin,)
        return any(user in s or EVERYONE in s for s in sets)


@dataclass(slots=True, frozen=True)
class AclFile:
    rules: tuple[Rule, ...]
    terminal: bool = False

    def match(self, rel: str) -> Rule | None:
        for rule in self.rules:
            if rule.regex.fullmatch(rel):
                return rule
        return None


#: What a file we could not parse at start-up means: owner only, for the whole subtree.
DENY_ALL = AclFile(rules=(), terminal=True)


def _users(v: Any, where: str, budget: list[int]) -> frozenset[str]:
    if v is None:
        return frozenset()
    if not isinstance(v, list):
        raise AclError(f"{where}: must be a list of emails or '*', got {type(v).__name__}")
    budget[0] -= len(v)
    if budget[0] < 0:
        raise AclError(f"{where}: more than {MAX_ENTRIES} user entries in the file")
    out = set()
    for u in v:
        if not isinstance(u, str):
            raise AclError(f"{where}: entries must be strings, got {type(u).__name__}")
        if u != EVERYONE:
            try:
                u = normalize_email(u)  # emails are case-insensitive: Bob@X is bob@x
            except ProtocolError:
                raise AclError(f"{where}: {u!r} is neither an email nor '*'") from None
        out.add(u)
    return frozenset(out)


def _rule(i: int, raw: Any, budget: list[int]) -> Rule:
    where = f"rules[{i}]"
    if not isinstance(raw, dict):
        raise AclError(f"{where}: must be a mapping with 'pattern' and 'access'")
    unknown = set(raw) - {"pattern", "access"}
    if unknown:
        raise AclError(f"{where}: unknown keys {sorted(map(str, unknown))}")
    pattern = raw.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise AclError(f"{where}.pattern: must be a non-empty string")
    try:
        validate_relpath(pattern)
    except ProtocolError as exc:
        raise AclError(f"{where}.pattern: {exc}") from None
    access = raw.get("access")
    if access is None:
        access = {}
    if not isinstance(access, dict):
        raise AclError(f"{where}.access: must be a mapping with read/write/admin lists")
    unknown = set(access) - {"read", "write", "admin"}
    if unknown:
        raise AclError(f"{where}.access: unknown keys {sorted(map(str, unknown))}")
    return Rule(
        pattern=pattern,
        read=_users(access.get("read"), f"{where}.access.read", budget),
        write=_users(access.get("write"), f"{where}.access.write", budget),
        admin=_users(access.get("admin"), f"{where}.access.admin", budget),
        regex=glob_to_regex(pattern),
    )


def parse_acl(data: bytes | str) -> AclFile:
    """Parse and strictly validate one `syft.pub.yaml`; raises only `AclError`."""
    if len(data) > MAX_ACL_BYTES:
        raise AclError(f"ACL file larger than {MAX_ACL_BYTES} bytes")
    try:
        doc = yaml.load(data, Loader=_LOADER)  # a safe loader (C or Python)
    except yaml.YAMLError as exc:
        raise AclError(f"invalid YAML: {exc}") from None
    except (ValueError, TypeError, RecursionError, UnicodeDecodeError) as exc:
        raise AclError(f"invalid YAML: {exc}") from None
    if doc is None:
        return AclFile(rules=())
    if not isinstance(doc, dict):
        raise AclError(f"top level must be a mapping with 'rules', got {type(doc).__name__}")
    unknown = set(doc) - {"rules", "terminal"}
    if unknown:
        raise AclError(f"unknown top-level keys {sorted(map(str, unknown))}")
    terminal = doc.get("terminal", False)
    if not isinstance(terminal, bool):
        raise AclError("'terminal' must be true or false")
    rules = doc.get("rules")
    if rules is None:
        rules = []
    if not isinstance(rules, list):
        raise AclError("'rules' must be a list")
    if len(rules) > MAX_RULES:
        raise AclError(f"more than {MAX_RULES} rules")
    budget = [MAX_ENTRIES]
    return AclFile(rules=tuple(_rule(i, r, budget) for i, r in enumerate(rules)), terminal=terminal)


def is_acl_path(path: str) -> bool:
    """True for a datasite path naming an ACL file."""
    return path == ACL_FILE or path.endswith("/" + ACL_FILE)


class AclIndex:
    """Every ACL file of the relay, keyed by its folder (datasite-relative, e.g.
    `alice@x.org/_mpc`), plus a decision cache tied to `generation`."""

    def __init__(self) -> None:
        self._files: dict[str, AclFile] = {}
        self._cache: dict[tuple[str, str, Access], bool] = {}
        #: Bumped on every change; anyone caching decisions compares against it.
        self.generation = 0

    @classmethod
    def load(cls, datasites: str | os.PathLike[str]) -> AclIndex:
        """Read every `syft.pub.yaml` under `DATA/datasites`. A broken file is logged
        and treated as deny-all (owner only) for its subtree: failing closed."""
        index = cls()
        root = Path(datasites)
        if not root.is_dir():
            return index
        for dirpath, _dirs, files in os.walk(root):
            if ACL_FILE not in files:
                continue
            folder = Path(dirpath).relative_to(root).as_posix()
            try:
                validate_path(folder)
            except ProtocolError:
                log.warning("ignoring ACL file outside a datasite: %s", folder)
                continue
            try:
                acl = parse_acl((Path(dirpath) / ACL_FILE).read_bytes())
            except (AclError, OSError) as exc:
                log.error("ACL %s/%s unusable, owner-only access: %s", folder, ACL_FILE, exc)
                acl = DENY_ALL
            index._files[folder] = acl
        return index

    def _bump(self) -> None:
        self.generation += 1
        self._cache.clear()

    def set_file(self, folder: str, acl: AclFile) -> None:
        """Install (or replace) the parsed ACL of `folder`; applies to the next check."""
        self._files[folder] = acl
        self._bump()

    def reload(self, datasites: str | os.PathLike[str]) -> None:
        """Replace every ACL with what is on disk now (another relay node sharing the
        data directory may have changed files this process did not see written)."""
        self._files = AclIndex.load(datasites)._files
        self._bump()

    def remove_file(self, folder: str) -> None:
        if self._files.pop(folder, None) is not None:
            self._bump()

    def get_file(self, folder: str) -> AclFile | None:
        return self._files.get(folder)

    def can(self, user: str, path: str, access: Access) -> bool:
        """May `user` have `access` to the datasite path `path` (already validated)?"""
        owner, _, _ = path.partition("/")
        if user == owner:
            return True
        key = (user, path, access)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        result = self._decide(user, path, access)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = result
        return result

    def _decide(self, user: str, path: str, access: Access) -> bool:
        segs = path.split("/")
        # folders from the datasite root down to the path itself (a session path is a
        # folder and may hold its own ACL); stop at the first terminal file.
        chain: list[tuple[int, AclFile]] = []
        for n in range(1, len(segs) + 1):
            acl = self._files.get("/".join(segs[:n]))
            if acl is not None:
                chain.append((n, acl))
                if acl.terminal:
                    break
        for n, acl in reversed(chain):
            rule = acl.match("/".join(segs[n:]))
            if rule is not None:
                return rule.allows(user, access)
            if acl.terminal:  # final for its subtree: nothing above may grant more
                return False
        return False
