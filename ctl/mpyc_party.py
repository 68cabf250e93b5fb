"""One MPyC party of the tunnel demo: `python -m hotlink.ctl.mpyc_party -P ... -I i`.

An ordinary MPyC program, nothing Hotlink-specific: it only sees TCP addresses (`-P`
once per party, `-I` its index), whichever path its bytes take. Its input comes from
`HOTLINK_MPYC_INPUT` (MPyC owns the command line); `HOTLINK_MPYC_ROUNDS` sets how many
timed rounds to run. Prints one line `RESULT {json}` on stdout:
`sum` (secure sum of all inputs), `less` (is party 0's input < party 1's, securely
compared), `round_ms` (each timed round: one secure multiplication plus opening the
product to all parties, i.e. two message exchanges between the parties: a resharing
and the opening), `compare_ms` (each of a few secure comparisons of the same two
inputs, opened: a multi-exchange protocol, closer to real MPC work) and `sent` (bytes
this party sent to the others in the timed rounds, per round).

The value carried from round to round is reduced modulo 1000 *after* it is opened (a
public int): reducing the secret instead would run MPyC's secure modulo protocol, a
dozen or more further exchanges per round, and the "round" would no longer be one.
"""

from __future__ import annotations

import json
import os
import time

from mpyc.runtime import mpc

#: timed secure comparisons after the rounds
COMPARISONS = 5


async def main() -> None:
    secint = mpc.SecInt(32)
    value = int(os.environ.get("HOTLINK_MPYC_INPUT", "0"))
    rounds = int(os.environ.get("HOTLINK_MPYC_ROUNDS", "10"))
    await mpc.start()
    shares = mpc.input(secint(value))
    total = await mpc.output(mpc.sum(shares))
    less = bool(await mpc.output(shares[0] < shares[1]))
    x = shares[0] + 1
    sent0 = _bytes_sent()
    times: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        x = secint(await mpc.output(x * shares[1]) % 1000 + 1)
        times.append((time.perf_counter() - t0) * 1000)
    sent = (_bytes_sent() - sent0) / max(1, rounds)
    compare: list[float] = []
    for _ in range(COMPARISONS if rounds else 0):
        t0 = time.perf_counter()
        if bool(await mpc.output(shares[0] < shares[1])) != less:
            raise SystemExit("secure comparison gave two different answers")
        compare.append((time.perf_counter() - t0) * 1000)
    await mpc.shutdown()
    out = {"sum": int(total), "less": less, "round_ms": times, "compare_ms": compare}
    print("RESULT " + json.dumps(out | {"sent": sent}), flush=True)


def _bytes_sent() -> int:
    """Bytes MPyC wrote to the other parties so far (its own per-connection counter)."""
    return sum(
        p.protocol.nbytes_sent for p in mpc.parties if p.pid != mpc.pid and p.protocol is not None
    )


if __name__ == "__main__":
    mpc.run(main())
