"""Argument types shared by the command lines (relay `cli` and `store_cli`,
`hotlinkctl`): numbers that must be finite and not negative, with the reason."""

from __future__ import annotations

import argparse
import math
from typing import Any


def non_negative(kind: type[int] | type[float]) -> Any:
    """An argparse `type=` that reads `kind` and refuses negatives, with the reason."""

    def parse(text: str) -> int | float:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
        return v

    return parse
