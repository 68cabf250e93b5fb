"""Known peers' identity fingerprints: `ROOT/.hotlink/peers.json`, trust on first use.

The first direct link that completes with a peer pins the fingerprint of the identity
key that signed its ephemeral key (`identity.py`); from then on a direct leg with that
user is refused unless the same key signs it. A refusal costs the direct path only:
the session stays on the relay, and `hotlinkctl get` / the event stream say why.

A user whose agent was re-installed (a new key) is forgotten by hand
(`hotlinkctl peers forget EMAIL`), and a fingerprint learnt out of band can be pinned
before the first contact (`hotlinkctl peers pin EMAIL SHA256:...`), which closes the
first-use gap. The agent and `hotlinkctl` both edit the file, each read-modify-write
under an exclusive `flock` of `peers.json.lock`, and the agent reads it again whenever
it changed (mtime), so an edit applies to the next negotiation without a restart.

File: `{"version": 1, "peers": {"bob@x.org": {"fingerprint": "SHA256:...",
"pinned_at": "2026-12-05T14:00:00Z", "how": "first use" | "by hand"}}}`, mode 0600.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hotlink.common.atomic import write_atomic
from hotlink.common.locks import file_lock

log = logging.getLogger("hotlink.agent.direct")

PINS_FILE = "peers.json"
PINS_VERSION = 1
FIRST_USE = "first use"
BY_HAND = "by hand"


@dataclass(frozen=True, slots=True)
class Pin:
    fingerprint: str
    pinned_at: str
    how: str


def _now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_fingerprint(text: str) -> str:
    """`text` if it looks like `fingerprint()`'s output; ValueError otherwise."""
    body = text[7:] if text.startswith("SHA256:") else ""
    if len(body) != 43 or not all(c.isalnum() or c in "+/" for c in body):
        raise ValueError(f"not an identity fingerprint (SHA256:<43 base64 chars>): {text!r}")
    return text


class PinStore:
    """The pins of one agent root (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: dict[str, Pin] = {}
        self._stamp: tuple[int, int] | None = None

    # --- reading ------------------------------------------------------------------

    def pins(self) -> dict[str, Pin]:
        """The current pins (re-read when the file changed; a missing file is none; an
        unreadable one is logged and counts as none, never a crash)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._cache, self._stamp = {}, None
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._cache = self._read()
            self._stamp = stamp
        return self._cache

    def _read(self) -> dict[str, Pin]:
        try:
            raw = json.loads(self.path.read_text())
            if not isinstance(raw, dict) or raw.get("version") != PINS_VERSION:
                raise ValueError("unknown version")
            out: dict[str, Pin] = {}
            for email, d in (raw.get("peers") or {}).items():
                out[str(email)] = Pin(
                    check_fingerprint(str(d["fingerprint"])),
                    str(d.get("pinned_at", "")),
                    str(d.get("how", "")),
                )
            return out
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring unreadable peer pins %s: %s", self.path, exc)
            return {}

    def refusal(self, peer: str, fp: str) -> str:
        """Why a leg signed by `fp` must not be trusted as `peer` ("" = no objection:
        the same pin, or no pin yet)."""
        pin = self.pins().get(peer)
        if pin is None or pin.fingerprint == fp:
            return ""
        return (
            f"identity key of {peer} changed: pinned {pin.fingerprint}, offered {fp} "
            f"(if {peer} re-installed their agent: hotlinkctl peers forget {peer})"
        )

    # --- writing ------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Pin]]:
        """Read-modify-write under the lock; the yielded dict is written back."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            self._stamp = None
            pins = dict(self.pins())
            yield pins
            doc = {
                "version": PINS_VERSION,
                "peers": {
                    e: {"fingerprint": p.fingerprint, "pinned_at": p.pinned_at, "how": p.how}
                    for e, p in sorted(pins.items())
                },
            }
            write_atomic(self.path, json.dumps(doc, indent=1) + "\n", mode=0o600)
            self._stamp = None

    def pin_first_use(self, peer: str, fp: str) -> bool:
        """Pin `fp` for `peer` unless a pin exists (True when this pinned it)."""
        if peer in self.pins():
            return False
        with self._locked() as pins:
            if peer in pins:
                return False
            pins[peer] = Pin(fp, _now_text(), FIRST_USE)
        log.info("pinned the identity key of %s: %s (first direct link)", peer, fp)
        return True

    def pin(self, peer: str, fp: str) -> Pin | None:
        """Pin `fp` for `peer` by hand; the pin it replaced, if any."""
        check_fingerprint(fp)
        with self._locked() as pins:
            old = pins.get(peer)
            pins[peer] = Pin(fp, _now_text(), BY_HAND)
        return old

    def forget(self, peer: str) -> Pin | None:
        """Drop the pin of `peer`; the pin it was, or None when there was none."""
        if peer not in self.pins():
            return None
        with self._locked() as pins:
            return pins.pop(peer, None)
