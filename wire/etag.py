"""The ETag of a file's content: lowercase hex MD5, as SyftBox and the reference use.

One function for every route a file takes (the agent's uploads and `syft.pub.yaml`
sync, the relay's broadcast and its catch-up pages), so one file has one etag
whichever way it arrives. MD5 here names content, it is not a security check.
"""

from __future__ import annotations

import hashlib


def etag_of(content: bytes) -> str:
    return hashlib.md5(content, usedforsecurity=False).hexdigest()
