"""A direct link proves both identities: pins on first use, a changed key refused (the
session stays on the relay and says why), `hotlinkctl peers` to see and forget pins.
Real relay and agents over loopback (tests/fixtures_*.py)."""

from __future__ import annotations

import json
import subprocess

import pytest
from fixtures_agent import AppClient, wait_for
from hotlink.agent.direct.identity import IDENTITY_FILE, Identity
from hotlink.agent.direct.pins import FIRST_USE, PINS_FILE, PinStore
from hotlink.ctl.errors import ExitCode
from hotlink.v1 import agent_pb2 as pb
from test_direct_e2e import AUTO, direct_pair
from test_fallback_e2e import HOTLINKCTL, PATH, A, B, Reader, send_paced

pytestmark = pytest.mark.e2e


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HOTLINKCTL, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_changed_identity_refused_until_forgotten(agent_factory):
    alice = agent_factory(A, args=AUTO)
    bob = agent_factory(B, args=AUTO)
    direct_pair(alice, bob)
    ha, hb = alice.root / ".hotlink", bob.root / ".hotlink"
    fa = Identity.load(ha / IDENTITY_FILE).fingerprint
    fb = Identity.load(hb / IDENTITY_FILE).fingerprint
    pins_a, pins_b = PinStore(ha / PINS_FILE), PinStore(hb / PINS_FILE)
    wait_for(lambda: B in pins_a.pins() and A in pins_b.pins(), 10, "both pinned")
    assert (pins_a.pins()[B].fingerprint, pins_a.pins()[B].how) == (fb, FIRST_USE)
    assert pins_b.pins()[A].fingerprint == fa

    # bob re-installs his agent: same user, a new identity key
    bob.stop()
    (hb / IDENTITY_FILE).unlink()
    bob.start()
    new_fb = Identity.load(hb / IDENTITY_FILE).fingerprint
    assert new_fb != fb
    s = alice.wait_session(PATH, lambda x: any("changed" in d.status for d in x.direct), 30)
    (d,) = s.direct
    assert fb in d.status and new_fb in d.status and "hotlinkctl peers forget" in d.status
    assert s.active_path == pb.ACTIVE_PATH_HOTLINK
    # ... and the stream goes on over the relay
    n = 300
    reader = Reader(bob, n)
    reader.start()
    send_paced(AppClient(alice.session_dir(PATH)), 0, n)
    reader.check()
    assert alice.session(PATH).active_path == pb.ACTIVE_PATH_HOTLINK

    r = ctl("--root", str(alice.root), "peers", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["identity"] == fa and doc["email"] == A
    assert [(p["email"], p["fingerprint"]) for p in doc["peers"]] == [(B, fb)]
    r = ctl("--root", str(alice.root), "peers", "forget", B)
    assert r.returncode == 0, r.stderr
    # alice's next retry pins bob's new key and the direct path is back
    alice.wait_session(PATH, lambda x: x.active_path == pb.ACTIVE_PATH_DIRECT, 90)
    assert pins_a.pins()[B].fingerprint == new_fb
    r = ctl("--root", str(alice.root), "peers", "forget", "Carol@Example.org")
    assert r.returncode == ExitCode.NOT_FOUND and "carol@example.org is not pinned" in r.stderr
    r = ctl("--root", str(alice.root), "peers", "pin", B, "SHA256:nope")
    assert r.returncode == ExitCode.USAGE and "not an identity fingerprint" in r.stderr


def test_pinned_by_hand_before_the_first_link(agent_factory):
    """A fingerprint compared out of band and pinned before the first contact: a
    different key is refused from the very first offer (no first-use gap)."""
    alice = agent_factory(A, args=AUTO)
    bob = agent_factory(B, args=AUTO)
    wrong = Identity.generate().fingerprint
    r = ctl("--root", str(bob.root), "peers", "pin", A, wrong)
    assert r.returncode == 0, r.stderr
    alice.open("_mpc/0_to_1", fallback_mode=pb.FALLBACK_MODE_OFF)
    bob.open(PATH)
    s = alice.wait_session(PATH, lambda x: any("offer refused" in d.status for d in x.direct), 30)
    assert s.active_path == pb.ACTIVE_PATH_HOTLINK
    b = bob.wait_session(PATH, lambda x: any("changed" in d.status for d in x.direct), 10)
    assert wrong in b.direct[0].status
    right = Identity.load(alice.root / ".hotlink" / IDENTITY_FILE).fingerprint
    r = ctl("--root", str(bob.root), "peers", "pin", A, right)
    assert r.returncode == 0 and f"was {wrong}" in r.stdout, r.stdout + r.stderr
    alice.wait_session(PATH, lambda x: x.active_path == pb.ACTIVE_PATH_DIRECT, 90)
