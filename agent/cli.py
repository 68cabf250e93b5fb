"""`hotlink-agent` entry point."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from hotlink.common.fd_limit import raise_nofile_limit
from hotlink.common.loop import run_main

from .config import ConfigError, load_config


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = load_config(argv)
    except ConfigError as exc:
        print(f"hotlink-agent: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=cfg.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Library loggers that log per message at DEBUG would put logging on the hot path.
    for noisy in ("websockets", "grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    from .app import FatalError, StartupError, run_agent

    # app and tunnel connections, the state and files it writes: each a descriptor
    logging.getLogger("hotlink.agent").info("%s", raise_nofile_limit().describe())
    try:
        run_main(run_agent(cfg))
    except FatalError as exc:
        logging.getLogger("hotlink.agent").error("stopped: %s", exc)
        return 1
    except StartupError as exc:
        logging.getLogger("hotlink.agent").error("cannot start: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
