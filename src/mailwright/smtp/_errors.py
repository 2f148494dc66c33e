"""Protocol errors of the sans-IO core.

Exception tree (httpx style)::

    ProtocolError
      + LocalProtocolError   our side tried something illegal (a bug in the caller)
      + RemoteProtocolError  the peer broke the protocol (client: unparseable reply)

The *server* core never raises for peer misbehaviour it can answer: a bad command
becomes a ``CommandError`` event carrying the reply to send, because in SMTP a peer's
mistake is answered, not fatal.  Only the client core, which cannot answer a broken
reply, raises ``RemoteProtocolError``.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class; not raised directly."""


class LocalProtocolError(ProtocolError):
    """The application drove the connection wrongly (e.g. sent a reply nobody asked for)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that cannot be understood or answered."""
