"""The single error type of the protocol core.

Every decoder and validator raises `ProtocolError` (or a subclass) for bad input and
nothing else, so an adapter can catch one type, report it, and keep serving.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Input that violates the wire format or the protocol rules."""


class FrameTooLarge(ProtocolError):
    """A frame or message claims more bytes than the configured maximum."""
