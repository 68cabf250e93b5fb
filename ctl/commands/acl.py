"""`hotlinkctl acl`: grant, revoke and show access to folders of your own datasite.

Access is decided by `syft.pub.yaml` files that the datasite owner writes; the agent
uploads them to the relay as soon as they change (it watches them). Without a grant a
reader's session waits forever, so this is the one step every walkthrough needs; the
command spares users from learning the YAML format first. It asks the agent who it is
(email) and where its datasite lives (root), edits the file atomically (the agent's
watcher never reads half a file), and checks
with the relay's own ACL evaluator that the user now has the access asked for.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from hotlink.common.atomic import write_atomic
from hotlink.relay.acl import ACL_FILE, Access, AclIndex
from hotlink.v1 import agent_pb2 as pb
from hotlink.wire.errors import ProtocolError
from hotlink.wire.paths import validate_relpath

from .. import acledit, output
from ..errors import ExitCode, NotFound, UsageError
from .common import run, say, with_agent

_LEVEL = {"read": Access.READ, "write": Access.WRITE, "admin": Access.ADMIN}


def _folder(path: str, email: str, root: str) -> str:
    """PATH (`_mpc`, `alice@x/_mpc`, `.`, or the folder's absolute path inside the own
    datasite) -> the folder relative to the own datasite."""
    p = path.strip()
    if p.startswith("/"):
        base = (Path(root) / "datasites" / email).resolve()
        try:
            p = Path(p).resolve().relative_to(base).as_posix()
        except ValueError:
            raise UsageError(
                f"{path} is not inside your datasite ({base})",
                "name the folder relative to it, e.g. _mpc",
            ) from None
    p = p.strip("/")
    first, _, rest = p.partition("/")
    if "@" in first:
        if first != email:
            raise UsageError(
                f"{path}: that is {first}'s datasite; this agent is {email}",
                "only a datasite's owner grants access to it; run this on the owner's agent",
            )
        p = rest
    if p in ("", "."):
        return ""
    try:
        return validate_relpath(p)
    except ProtocolError as exc:
        raise UsageError(f"bad folder {path!r}: {exc}", "e.g. _mpc or _mpc/0_to_1") from None


def _user(email: str) -> str:
    try:
        return acledit.check_user(email)
    except acledit.AclEditError as exc:
        raise UsageError(str(exc)) from None


async def _whoami(args: argparse.Namespace) -> pb.GetStatusResponse:
    return await with_agent(args, lambda c: c.get_status())


def _acl_file(st: pb.GetStatusResponse, folder: str) -> Path:
    base = Path(st.root) / "datasites" / st.email
    return (base / folder if folder else base) / ACL_FILE


def _effective(st: pb.GetStatusResponse, folder: str, user: str, access: Access) -> bool:
    """Would the relay, holding this datasite's ACL files, give `user` `access` to
    the folder's contents? (The files above the folder take part, as on the relay.)"""
    idx = AclIndex.load(Path(st.root) / "datasites")
    probe = "/".join(x for x in (st.email, folder, "probe") if x)
    return idx.can(user, probe, access)


def cmd_acl_grant(args: argparse.Namespace) -> int:
    level = "admin" if args.admin else "write" if args.write else "read"
    st = run(_whoami(args))
    folder = _folder(args.path, st.email, st.root)
    user = _user(args.email)
    f = _acl_file(st, folder)
    old = f.read_text() if f.exists() else ""
    try:
        new = acledit.grant(old, user, level, args.pattern)
    except acledit.AclEditError as exc:
        raise UsageError(f"{f}: {exc}") from None
    changed = new != old
    if changed:
        write_atomic(f, new, mode=0o644, mkdir=True)  # ACLs are public by nature
    ok = args.pattern != acledit.ALL or _effective(st, folder, user, _LEVEL[level])
    where = f"{st.email}/{folder}" if folder else st.email
    if args.json:
        output.dump_json(
            {"file": str(f), "user": user, "access": level, "pattern": args.pattern,
             "folder": where, "effective": ok, "changed": changed}
        )  # fmt: skip
    else:
        print(f"{user} may {level} {where}/{args.pattern} ({f})")
        if changed:
            say(args, "the agent uploads the file to the relay within about a second")
        else:
            say(args, "already granted: the file is unchanged")
    if not ok:
        say(
            args,
            f"warning: another rule still decides {where} for {args.email} (the first "
            "matching rule of the nearest file wins); see: hotlinkctl acl show",
        )
        return ExitCode.ERROR
    return ExitCode.OK


def cmd_acl_revoke(args: argparse.Namespace) -> int:
    st = run(_whoami(args))
    folder = _folder(args.path, st.email, st.root)
    user = _user(args.email)
    f = _acl_file(st, folder)
    if not f.exists():
        raise NotFound(f"no {ACL_FILE} in {f.parent}", "nothing granted there: owner-only access")
    old = f.read_text()
    try:
        new, removed = acledit.revoke(old, user, args.pattern)
    except acledit.AclEditError as exc:
        raise UsageError(f"{f}: {exc}") from None
    if removed:
        write_atomic(f, new, mode=0o644, mkdir=True)  # ACLs are public by nature
    if args.json:
        output.dump_json({"file": str(f), "user": user, "removed": removed})
    else:
        print(f"{user}: {removed} entr{'y' if removed == 1 else 'ies'} removed ({f})")
    return ExitCode.OK if removed else ExitCode.NOT_FOUND


def cmd_acl_show(args: argparse.Namespace) -> int:
    st = run(_whoami(args))
    folder = _folder(args.path or ".", st.email, st.root)
    base = Path(st.root) / "datasites" / st.email
    start = base / folder if folder else base
    files = sorted(start.rglob(ACL_FILE)) if start.is_dir() else []
    shown = []
    for f in files:
        try:
            views = acledit.rules(f.read_text())
            err = ""
        except (acledit.AclEditError, OSError) as exc:
            views, err = [], str(exc)
        shown.append((f, views, err))
    if args.json:
        output.dump_json(
            {"files": [{"file": str(f), "error": err,
                        "rules": [{"pattern": v.pattern, "read": list(v.read),
                                   "write": list(v.write), "admin": list(v.admin)}
                                  for v in views]} for f, views, err in shown]}
        )  # fmt: skip
        return ExitCode.ERROR if any(err for _, _, err in shown) else ExitCode.OK
    if not shown:
        print(f"no {ACL_FILE} under {start}: only {st.email} has access")
    for f, views, err in shown:
        print(f"{f.relative_to(base.parent)}:" + (f" INVALID: {err}" if err else ""))
        if err:
            print(
                "  the relay refuses this file and keeps enforcing the last version it "
                "accepted (if any): fix it, or remove it for owner-only access"
            )
        for v in views:
            levels = (("read", v.read), ("write", v.write), ("admin", v.admin))
            parts = [f"{lvl} {', '.join(users)}" for lvl, users in levels if users]
            print(f"  {v.pattern:<16} {'; '.join(parts) or '(nobody)'}")
    return ExitCode.ERROR if any(err for _, _, err in shown) else ExitCode.OK


def register(add: Callable[..., argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add `hotlinkctl acl grant|revoke|show` to the parser."""
    p = add(
        "acl",
        "grant, revoke or show access to folders of your datasite (syft.pub.yaml)",
        cmd_acl_show,
        "Readers need read access to a sender's session folder before the relay offers\n"
        "it to them. These commands edit DIR/syft.pub.yaml in your own datasite; the\n"
        "agent uploads it to the relay at once. Example (on alice's agent):\n"
        "  hotlinkctl --root ./alice acl grant _mpc bob@example.org --read",
    )
    p.set_defaults(path=None)
    sub = p.add_subparsers(dest="acl_action", metavar="ACTION")
    g = sub.add_parser(
        "grant", help="give a user read (default), write or admin access to a folder",
        description="Give EMAIL ('*' = everyone) access to FOLDER of your datasite "
        "(e.g. _mpc: every session under it). Write implies read.",
        parents=[common],
    )  # fmt: skip
    g.set_defaults(func=cmd_acl_grant)
    g.add_argument("path", metavar="FOLDER", help="folder of your datasite, e.g. _mpc")
    g.add_argument("email", metavar="EMAIL", help="the user, or '*' for everyone")
    lvl = g.add_mutually_exclusive_group()
    lvl.add_argument("--read", action="store_true", help="read access (the default)")
    lvl.add_argument("--write", action="store_true", help="write access (implies read)")
    lvl.add_argument("--admin", action="store_true", help="admin access (implies write)")
    g.add_argument(
        "--pattern", default=acledit.ALL, metavar="GLOB",
        help="rule pattern relative to FOLDER (default **: the folder and everything below)",
    )  # fmt: skip
    r = sub.add_parser(
        "revoke", help="remove a user from a folder's access lists",
        description="Remove EMAIL from every access list of FOLDER's syft.pub.yaml "
        "(only from rule GLOB with --pattern). Exit 4 if EMAIL was not listed.",
        parents=[common],
    )  # fmt: skip
    r.set_defaults(func=cmd_acl_revoke)
    r.add_argument("path", metavar="FOLDER")
    r.add_argument("email", metavar="EMAIL")
    r.add_argument("--pattern", default=None, metavar="GLOB", help="only this rule")
    s = sub.add_parser(
        "show", help="print the rules of the folder's syft.pub.yaml files (default: all)",
        parents=[common],
    )  # fmt: skip
    s.set_defaults(func=cmd_acl_show)
    s.add_argument("path", metavar="FOLDER", nargs="?", default=None)
