"""Which sessions carry a tunnel, and who may read them.

A tunnel on `owner/P` between the owner O (expose side) and a forwarder F uses three
sessions, each sent by the datasite owner of its path (the relay's rule):

- the door `O/P` (sender O, `to` = `--to` if given): carries nothing but HELLO/PING;
  the relay lets F accept it only if O's `syft.pub.yaml` grants F read on `P`. O
  learns of F from that accept, so the relay's ACL decision is the admission check:
  O never opens a data session to a peer the relay has not admitted on `P`.
- down `O/_hotlink/tunnels/down/F/P` (sender O, to F): bytes O -> F.
- up `F/_hotlink/tunnels/up/O/P` (sender F, to O): bytes F -> O.

Each side writes an ACL file next to its data session granting exactly the other peer
read access (`acl_yaml`), and uploads it before opening the session. Every peer gets
its own pair of data sessions, so forwarders never see each other's bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

AREA = "_hotlink/tunnels"


def down_path(owner: str, rel: str, forwarder: str) -> str:
    return f"{owner}/{AREA}/down/{forwarder}/{rel}"


def up_path(owner: str, rel: str, forwarder: str) -> str:
    return f"{forwarder}/{AREA}/up/{owner}/{rel}"


def acl_dir(root: Path, me: str, kind: str, peer: str) -> Path:
    """Folder of the ACL file for my data sessions of `kind` (down|up) towards `peer`."""
    return root / "datasites" / me / AREA / kind / peer


def acl_yaml(peer: str) -> str:
    return (
        "# written by hotlink-agent: tunnel sessions to this peer; only it may read\n"
        "terminal: true\n"
        "rules:\n"
        '  - pattern: "**"\n'
        "    access:\n"
        "      admin: []\n"
        "      write: []\n"
        f"      read: [{json.dumps(peer)}]\n"
    )
