"""The ``SpoolStore`` protocol: the seam between the server, the queue runner and storage.

Contract (every backend keeps it):

* ``new_message()`` allocates a queue id and a *temporary* body that the session
  writes into as DATA/BDAT arrives.  Nothing about it is durable or visible to
  ``due``/``iterate`` yet.
* ``await put(body, envelope)`` makes body and envelope durable (a body file and
  its directory fsynced, or the body committed in the same database transaction as
  the envelope) and only then returns.  The server sends 250 after it
  returns and never before (DESIGN principle 3).  If it raises ``SpoolError`` the
  server answers 451 4.3.0 and the temporary body is gone.  Concurrent ``put`` calls
  share fsyncs and commits (group commit).  ``body`` is either a writer from this
  store's ``new_message`` (the streaming path: the session writes the body while DATA
  arrives, never holding a large one in memory) or the whole body as ``bytes`` (a
  bounce, an import, a message moved from another store): any backend takes both.
* ``writer.body_bytes()`` (once ``put`` returned) is the stored body when the backend
  holds it in memory anyway (the embedded store: bodies up to ``INLINE_BODY_MAX``),
  else None.  The server passes it with the ``SpooledMessage`` that ``put`` returned to
  ``QueueRunner.offer``, which can then deliver fresh mail without reading it back;
  None costs one ``read_body``.  The bytes are exactly what ``read_body`` returns.
* ``writer.abort()`` discards a temporary body (client vanished, size exceeded,
  smuggling).  A crash before ``put`` returns leaves at most a temporary file that
  ``open`` removes at start-up: nothing half-written survives a restart.
* ``load``/``due``/``iterate`` return committed messages; ``update`` persists the
  per-recipient state after a delivery attempt; ``remove`` deletes a finished message.
* ``read_body`` returns the message bytes exactly as accepted (with our Received
  header first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Container
from typing import Protocol, runtime_checkable

from mailwright.spool.model import Envelope, SpooledMessage


class SpoolError(Exception):
    """Storing failed (disk full, permissions, I/O error).  Always temporary for peers."""


class MessageWriter(Protocol):
    queue_id: str
    size: int

    def write(self, data: bytes) -> None:
        """Append body bytes.  Raises SpoolError on I/O failure."""

    def abort(self) -> None:
        """Discard the temporary body.  Idempotent."""

    def body_bytes(self) -> bytes | None:
        """After ``put``: the stored body if the backend kept it in memory, else None."""


class SpoolStore(Protocol):
    async def open(self) -> None:
        """Create folders/database as needed and remove debris of interrupted writes."""

    async def close(self) -> None: ...

    def new_message(self) -> MessageWriter: ...

    async def put(self, body: MessageWriter | bytes, envelope: Envelope) -> SpooledMessage:
        """Store ``body`` (a writer from ``new_message``, or bytes) with ``envelope``."""

    async def load(self, queue_id: str) -> SpooledMessage | None: ...

    async def read_body(self, queue_id: str) -> bytes: ...

    async def update(self, message: SpooledMessage) -> None:
        """Persist ``message.recipients``, ``attempts`` and ``next_attempt``."""

    async def due(self, now: float, limit: int) -> list[SpooledMessage]:
        """Messages with pending recipients whose ``next_attempt`` <= now, oldest first."""

    async def remove(self, queue_id: str) -> None: ...

    def iterate(self) -> AsyncIterator[SpooledMessage]:
        """Every committed message (for `queue list` and recovery)."""


@runtime_checkable
class BodyPrefetchStore(Protocol):
    """Optional store capability: a due scan that also returns inline bodies
    (``EmbeddedSpool.due_with_bodies``), so the queue runner needs no ``read_body`` per
    delivery.  Other stores get ``read_body`` per message."""

    async def due_with_bodies(
        self, horizon: float, limit: int, *, now: float, skip: Container[str] = ()
    ) -> tuple[int, list[tuple[SpooledMessage, bytes | None]]]: ...
