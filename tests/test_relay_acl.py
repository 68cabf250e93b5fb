"""Unit tests for ACL parsing and evaluation (pure, no sockets)."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import pytest
from hotlink.relay.acl import (
    DENY_ALL,
    Access,
    AclError,
    AclIndex,
    glob_to_regex,
    parse_acl,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

A = "alice@example.org"
B = "bob@example.org"  # reader
W = "wendy@example.org"  # writer
D = "dave@example.org"  # admin
S = "stranger@example.org"

BASE = f"""
rules:
  - pattern: "**"
    access:
      admin: ["{D}"]
      write: ["{W}"]
      read: ["{B}"]
"""


def index_with(files: dict[str, str]) -> AclIndex:
    idx = AclIndex()
    for folder, text in files.items():
        idx.set_file(folder, parse_acl(text))
    return idx


# ------------------------------------------------------------------------ matrix

MATRIX = [
    # user, READ, WRITE, ADMIN
    (A, True, True, True),  # owner
    (D, True, True, True),  # admin implies write implies read
    (W, True, True, False),
    (B, True, False, False),
    (S, False, False, False),
]


@pytest.mark.parametrize(("user", "r", "w", "adm"), MATRIX)
def test_matrix(user: str, r: bool, w: bool, adm: bool) -> None:
    idx = index_with({A: BASE})
    path = f"{A}/_mpc/0_to_1"
    assert idx.can(user, path, Access.READ) is r
    assert idx.can(user, path, Access.WRITE) is w
    assert idx.can(user, path, Access.ADMIN) is adm


def test_no_rule_means_owner_only() -> None:
    idx = AclIndex()
    assert idx.can(A, f"{A}/x", Access.ADMIN)
    assert not idx.can(B, f"{A}/x", Access.READ)


def test_everyone() -> None:
    idx = index_with({A: 'rules: [{pattern: "**", access: {read: ["*"]}}]'})
    assert idx.can(S, f"{A}/pub/file", Access.READ)
    assert not idx.can(S, f"{A}/pub/file", Access.WRITE)


def test_owner_is_exact_first_segment() -> None:
    idx = index_with({A: 'rules: [{pattern: "**", access: {read: ["*"]}}]'})
    evil = f"{A}.evil"
    # alice does not own alice@example.org.evil/..., and alice's ACL does not apply there
    assert not idx.can(A, f"{evil}/x", Access.WRITE)
    assert not idx.can(S, f"{evil}/x", Access.READ)
    assert idx.can(evil, f"{evil}/x", Access.WRITE)


def test_nested_nearest_matching_file_decides() -> None:
    idx = index_with(
        {
            A: BASE,
            f"{A}/private": f'rules: [{{pattern: "**", access: {{read: ["{S}"]}}}}]',
            f"{A}/partial": f'rules: [{{pattern: "*.txt", access: {{read: ["{S}"]}}}}]',
        }
    )
    assert idx.can(S, f"{A}/private/deep/x", Access.READ)
    assert not idx.can(B, f"{A}/private/deep/x", Access.READ)  # nearest file decided
    # no rule matches in the nearer file -> the parent's rule decides
    assert idx.can(S, f"{A}/partial/a.txt", Access.READ)
    assert not idx.can(S, f"{A}/partial/a.bin", Access.READ)
    assert idx.can(B, f"{A}/partial/a.bin", Access.READ)


def test_acl_in_session_folder_itself() -> None:
    idx = index_with({f"{A}/_mpc/0_to_1": f'rules: [{{pattern: "**", access: {{read: ["{B}"]}}}}]'})
    assert idx.can(B, f"{A}/_mpc/0_to_1", Access.READ)
    assert idx.can(B, f"{A}/_mpc/0_to_1/00000001.request", Access.READ)
    assert not idx.can(B, f"{A}/_mpc/other", Access.READ)


def test_terminal_ignores_deeper_files() -> None:
    idx = index_with(
        {
            A: f'terminal: true\nrules: [{{pattern: "**", access: {{read: ["{B}"]}}}}]',
            f"{A}/sub": f'rules: [{{pattern: "**", access: {{read: ["{S}"]}}}}]',
        }
    )
    assert not idx.can(S, f"{A}/sub/x", Access.READ)
    assert idx.can(B, f"{A}/sub/x", Access.READ)


def test_first_matching_rule_in_file_wins() -> None:
    text = f"""
rules:
  - pattern: "secret/**"
    access: {{read: []}}
  - pattern: "**"
    access: {{read: ["{B}"]}}
"""
    idx = index_with({A: text})
    assert not idx.can(B, f"{A}/secret/x", Access.READ)
    assert idx.can(B, f"{A}/open/x", Access.READ)


def test_change_bumps_generation_and_invalidates_cache() -> None:
    idx = index_with({A: BASE})
    gen = idx.generation
    assert idx.can(B, f"{A}/s", Access.READ)  # cached now
    idx.set_file(A, parse_acl(f'rules: [{{pattern: "**", access: {{read: ["{S}"]}}}}]'))
    assert idx.generation > gen
    assert not idx.can(B, f"{A}/s", Access.READ)
    assert idx.can(S, f"{A}/s", Access.READ)
    idx.remove_file(A)
    assert not idx.can(S, f"{A}/s", Access.READ)


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("**", ["", "a", "a/b/c"], []),
        ("*", ["a", "abc"], ["a/b"]),
        ("*.txt", ["a.txt"], ["a/b.txt", "a.txtx"]),
        ("a/**", ["a", "a/b", "a/b/c"], ["ab", "b/a"]),
        ("**/x", ["x", "a/x", "a/b/x"], ["ax", "a/x/y"]),
        ("a/**/z", ["a/z", "a/b/z", "a/b/c/z"], ["a/bz", "z"]),
        ("?.bin", ["a.bin"], ["ab.bin", ".bin"]),
        ("a+b(c)", ["a+b(c)"], ["aab(c)"]),
    ],
)
def test_glob(pattern: str, yes: list[str], no: list[str]) -> None:
    rx = glob_to_regex(pattern)
    for p in yes:
        assert rx.fullmatch(p), (pattern, p)
    for p in no:
        assert not rx.fullmatch(p), (pattern, p)


def _regex_oracle(pattern: str) -> re.Pattern[str]:
    """The former regex translation: exact semantics, exponential worst case."""

    def seg(s: str) -> str:
        return "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in s)

    segs = pattern.split("/")
    out = []
    for i, sg in enumerate(segs):
        last = i == len(segs) - 1
        if sg == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
        else:
            out.append(seg(sg) + ("" if last else "/"))
    rx = "".join(out)
    if len(segs) > 1 and segs[-1] == "**":
        rx = rx[: -len("/.*")] + "(?:/.*)?"
    return re.compile(rx, re.DOTALL)


_GSEG = st.text("ab*?", min_size=1, max_size=4) | st.just("**")
_PSEG = st.text("ab", min_size=1, max_size=5)


@settings(max_examples=400, deadline=None)
@given(st.lists(_GSEG, min_size=1, max_size=4), st.lists(_PSEG, min_size=0, max_size=5))
def test_glob_matches_regex_semantics(pat: list[str], path: list[str]) -> None:
    # the old translation mangled a trailing `**/**` (matched nothing sensible)
    assume(pat[-2:] != ["**", "**"])
    pattern, rel = "/".join(pat), "/".join(path)
    assert glob_to_regex(pattern).fullmatch(rel) == bool(_regex_oracle(pattern).fullmatch(rel))


def test_glob_no_catastrophic_backtracking() -> None:
    """A user-written pattern must not stall the relay's event loop (ReDoS)."""
    t0 = time.perf_counter()
    for pattern, rel in [
        ("*a*a*a*a*a*b", "a" * 4000),
        ("*" * 40 + "x", "a" * 4000),
        ("**/" * 40 + "x", "/".join("a" * 2000)),
        ("**/*a*a*a*b/**/" * 8 + "z", "/".join(["a" * 60] * 60)),
    ]:
        assert not glob_to_regex(pattern).fullmatch(rel)
    assert glob_to_regex("**/**").fullmatch("a/b") and glob_to_regex("a/**/**").fullmatch("a")
    assert time.perf_counter() - t0 < 2.0


# ------------------------------------------------------------------------ parser


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("rules: [", "invalid YAML"),
        ("- a\n- b", "top level"),
        ("rulez: []", "unknown top-level"),
        ("rules: {}", "'rules' must be a list"),
        ("rules: [42]", r"rules\[0\]"),
        ("rules: [{access: {}}]", "pattern"),
        ('rules: [{pattern: "/abs", access: {}}]', "absolute"),
        ('rules: [{pattern: "../x", access: {}}]', "'..'"),
        ('rules: [{pattern: "**", access: {read: "bob@example.org"}}]', "must be a list"),
        ('rules: [{pattern: "**", access: {read: ["not-an-email"]}}]', "neither an email"),
        ('rules: [{pattern: "**", access: {read: [1]}}]', "strings"),
        ('rules: [{pattern: "**", access: {own: []}}]', "unknown keys"),
        ('rules: [{pattern: "**", access: [], x: 1}]', "unknown keys"),
        ("terminal: yes-please", "terminal"),
    ],
)
def test_parse_errors(text: str, msg: str) -> None:
    with pytest.raises(AclError, match=msg):
        parse_acl(text)


def test_parse_empty_and_ok() -> None:
    assert parse_acl("").rules == ()
    acl = parse_acl(BASE.encode())
    assert len(acl.rules) == 1 and acl.rules[0].read == frozenset({B})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_parser_bytes_raise_only_acl_error(data: bytes) -> None:
    with contextlib.suppress(AclError):
        parse_acl(data)


_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=20), st.just("*"), st.just(B)
)
_yamlish = st.recursive(
    _scalar,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["rules", "pattern", "access", "read", "write", "admin", "x"]),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_yamlish)
def test_parser_structures_raise_only_acl_error(doc: object) -> None:
    import yaml

    with contextlib.suppress(AclError):
        parse_acl(yaml.safe_dump(doc))


# ------------------------------------------------------------------------ loading


def test_load_from_disk_and_broken_file_fails_closed(tmp_path: Path) -> None:
    ds = tmp_path / "datasites"
    (ds / A / "pub").mkdir(parents=True)
    (ds / A / "syft.pub.yaml").write_text(BASE)
    (ds / A / "pub" / "syft.pub.yaml").write_text("rules: [")
    idx = AclIndex.load(ds)
    assert idx.can(B, f"{A}/x", Access.READ)
    assert idx.get_file(f"{A}/pub") is DENY_ALL
    assert not idx.can(B, f"{A}/pub/x", Access.READ)  # broken file: owner only
    assert idx.can(A, f"{A}/pub/x", Access.WRITE)


def test_alias_bomb_refused_quickly() -> None:
    """YAML aliases repeating a big list: refused by the entry/rule caps, not evaluated
    for minutes on the relay's event loop."""
    users = ",".join(f"u{i}@x.io" for i in range(3000))
    head = f"rules: [&r {{pattern: '**', access: {{read: &u [{users}], write: *u}}}},"
    t0 = time.perf_counter()
    for n in (10, 5000):
        with pytest.raises(AclError, match="more than"):
            parse_acl(head + ",".join(["*r"] * n) + "]")
    assert time.perf_counter() - t0 < 5.0


def test_star_in_a_path_segment_does_not_swallow_the_pattern_star() -> None:
    """A literal `*` in a path segment must not be consumed as a literal by a pattern
    `*` (that made `*b` miss `*ab`)."""
    from hotlink.relay.acl import _segment_match

    assert _segment_match("*b", "*ab")
    assert _segment_match("a*", "a*")
    assert not _segment_match("*b", "*a")
