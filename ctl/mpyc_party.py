"""One MPyC party of the tunnel demo: `python -m hotlink.ctl.mpyc_party -P ... -I i`.

An ordinary MPyC program, nothing Hotlink-specific: it only sees TCP addresses (`-P`
once per party, `-I` its index), whichever path its bytes take. Its input comes from
`HOTLINK_MPYC_INPUT` (MPyC owns the command line); `HOTLINK_MPYC_ROUNDS` sets how many
timed rounds to run. Prints one line `RESULT {json}` on stdout:
`sum` (secure sum of all inputs), `less` (is party 0's input < party 1's, securely
compared), `round_ms` (each timed round: one secure multiplication plus opening the
product to all parties, i.e. two message exchanges between the parties).
"""

from __future__ import annotations

import json
import os
import time

from mpyc.runtime import mpc


async def main() -> None:
    secint = mpc.SecInt(32)
    value = int(os.environ.get("HOTLINK_MPYC_INPUT", "0"))
    rounds = int(os.environ.get("HOTLINK_MPYC_ROUNDS", "10"))
    await mpc.start()
    shares = mpc.input(secint(value))
    total = await mpc.output(mpc.sum(shares))
    less = bool(await mpc.output(shares[0] < shares[1]))
    x = shares[0] + 1
    times: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        x = secint(await mpc.output(x * shares[1])) % 1000 + 1
        times.append((time.perf_counter() - t0) * 1000)
    await mpc.shutdown()
    print("RESULT " + json.dumps({"sum": int(total), "less": less, "round_ms": times}), flush=True)


if __name__ == "__main__":
    mpc.run(main())
