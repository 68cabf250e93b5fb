"""The reference's own Go message code against our relay and agents.

Runs `../shared/interop/run.sh` (see its README.txt): a Go client built from the
reference's `syftmsg` + `wsproto` packages, unmodified, as sender and as reader,
msgpack and JSON, opening the way the reference really does (on a file path), plus
an offline codec cross-check. Needs ../shared/interop and Go 1.23 (`.ci/run` installs
it with the script's setup.sh); skipped with the reason otherwise. About 30 s once
the Go client is built (cached under $INTEROP_DIR, default /tmp/hotlink-interop).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
INTEROP = ROOT.parent / "shared" / "interop"
GO = Path("/usr/lib/go-1.23/bin/go")
CASES = ("A", "B", "A-json", "B-json", "A-refopen", "GG", "GG-refopen")
N = 200
#: Our extension message types: never sent to a peer that did not announce them
#: (wire/extensions.py), so the reference decoder rejecting them is expected.
EXTENSION_TYPES = {15, 16}


def _skip_reason() -> str | None:
    if not (INTEROP / "run.sh").is_file():
        return f"{INTEROP} is not present"
    if not (Path(sys.prefix) / "bin" / "hotlink-relay").exists():
        return f"run.sh needs a virtualenv with the project installed; {sys.prefix} is not one"
    if not os.access(GO, os.X_OK):
        return f"Go 1.23 is not installed ({GO}); install it with: bash {INTEROP}/setup.sh (root)"
    return None


@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
@pytest.mark.timeout(600)
def test_reference_go_client_interop(tmp_path: Path) -> None:
    env = {**os.environ, "VENV": sys.prefix, "N": str(N)}
    proc = subprocess.run(
        ["bash", str(INTEROP / "run.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    out = proc.stdout
    (tmp_path / "interop.out").write_text(out + "\n--- stderr ---\n" + proc.stderr)
    tail = "\n".join(out.splitlines()[-4:])
    assert proc.returncode == 0, f"{tail}\n{proc.stderr[-3000:]}"

    # every case, the extras included: all frames, in order
    results = dict(re.findall(r"(?:^|[:,] )([A-Za-z-]+) (ok \d+/\d+|fail[^,\n]*)", tail))
    for case in CASES:
        assert results.get(case) == f"ok {N}/{N}", f"case {case}: {results.get(case)}\n{tail}"

    # codec: the reference decodes everything we encode, except our extension types
    codec = next(line for line in out.splitlines() if line.startswith("codec: "))
    assert codec.startswith("codec: go->py ok;"), codec
    rejected = re.findall(r"^DECODE (\S+) error: (.*)$", out, re.M)
    for name, why in rejected:
        m = re.match(r"unknown message type: (\d+)", why)
        assert m and int(m.group(1)) in EXTENSION_TYPES, f"Go rejected {name}: {why}"

    # the reference matches our Acks to what it sent; nothing it cannot decode
    # (an Ack as the Go client decoded it, also JSON-escaped inside its lists)
    assert not re.search(r'\{\\?"oid\\?":\\?"\\?"\}', out), "an Ack with an empty id"
    uploads = re.findall(r"ACL-UPLOAD ACK .* oid_matches=(\w+)", out)
    assert uploads and set(uploads) == {"true"}, uploads
    errors = re.findall(r"(?:SENDER|READER)-DECODE-ERRORS (.*)", out)
    assert errors and set(errors) == {"null"}, errors
