"""`FileData`: a frame replayed from a fallback file.

Its own module so that the reader stream's module can be compiled (mypyc): a dataclass
with slots subclassing the wire message cannot be a compiled class.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotlink.wire import messages as m


@dataclass(slots=True)
class FileData(m.HotlinkData):
    """The same fields as HotlinkData; the type tells the reader where it came from."""
