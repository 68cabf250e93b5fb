"""Argument types shared by the relay's command lines (`cli`, `store_cli`)."""

from __future__ import annotations

import argparse
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
        return v

    return parse
