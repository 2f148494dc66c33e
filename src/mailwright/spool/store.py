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
* ``load``/``due``/``iterate`` return committed messages (fresh copies: mutating one
  changes nothing stored); ``update`` persists the per-recipient state; ``remove``
  deletes a finished message.
* ``put(..., header_block=)`` stores the header fields the MESSAGE stage added
  with the row (``SpooledMessage.header_block``), never in the body, which stays
  write-once.  Everything that returns a message's bytes (``read_body``,
  ``Claimed.body``, and what the server hands the runner) returns the header block
  first: RFC 8601 §5 and RFC 7208 §9.1 put Authentication-Results and Received-SPF
  above the Received field of the host that adds them.  ``size`` counts it.
* ``read_body`` returns the message bytes exactly as accepted (the header block,
  then our Received header first).

**Leases** make runners exclusive, whether they share one process, one host or (with
a shared backend) one database: ``claim(now, limit, lease, owner)`` atomically takes
up to ``limit`` due messages (pending, ``next_attempt <= now``) that no one holds — or
whose lease expired (``lease_until <= now``) — earliest due first, and leases them to
``owner`` until ``now + lease``.  A second claimer never gets a message while its lease
runs; after expiry anyone may claim it (the holder died: at-least-once delivery).
``renew`` extends the leases ``owner`` still holds, ``release`` gives them back (all of
``owner``'s when no ids are given: a restarted runner frees what it held before).
Owners are compared as strings; a node-stable owner lets a restart take its own
leases back at once.

**Attempts.**  ``record_attempt(message, attempts, owner)`` persists the message's
state as ``update`` does, appends ``attempts`` (one ``Attempt`` per recipient tried:
time, structured reply, remote host and, for a relay attempt, its ``RemoteSession``:
host name and address, TLS, the TLS policy, the replies that concern the recipient)
to its history and ends ``owner``'s lease, in one
commit.  ``attempts(queue_id)`` returns the history oldest first; it goes with the
message when it is removed.  Lease and history writes need not be synced to disk at
once: losing the last ones in a power cut re-delivers a message (allowed) and never
loses one.

**Progress.**  ``record_progress(message, attempts, owner)`` records part of an
attempt while it still runs (recipients a remote host already took with 250): the
message's state as ``update`` writes it and ``attempts`` appended to its history, in
one commit, *synced before it returns* (its whole point is that a 250 is not
forgotten, in a crash or a power cut), and the lease is *kept*: the attempt goes on
and ends with ``record_attempt``.  Only the attempt's runner may do it: a live lease
held by another owner raises ``MessageBusy`` (the lease ran out and someone else took
the message), a message no longer stored raises ``MessageGone``; an unleased message
(fresh mail attempted from an offer) is allowed.  The caller leaves a recipient
pending (``record_attempt``/``remove`` finish the message, never this).

**Administration** (``mailwright queue``; the operator's view, cheap: no bodies).
``scan()`` yields every message as a ``QueueEntry`` (its state, whether it is held,
its lease) in arrival order; ``entry(queue_id)`` one of them.  ``hold(queue_id, now)``
keeps a message from being claimed (``claim``, ``due`` and ``next_due`` skip it) until
``unhold`` — named so because ``release`` already ends leases; the hold is stored
state (it survives restarts) and an attempt already running when it is set finishes,
as ``postsuper -h`` lets an active delivery finish.  A held message keeps its
``next_attempt``: released after it passed, it is due at once.  ``retry(now, ids)``
makes the pending messages ``ids`` (None: every message with a pending recipient)
due now (``next_attempt = min(next_attempt, now)``, so the order of what is already
due is kept) and returns the ids it matched.  ``delete(queue_id, now)`` removes a
message as ``remove`` does (row, history and body, durably) but refuses, with
``MessageBusy``, one that a runner holds a live lease on: the attempt in progress
owns it, and a message is never half-deleted under a runner.  A message a runner
attempts *without* a lease (fresh mail it was offered) can still be deleted; that
attempt's ``record_attempt`` then raises ``MessageGone`` and the runner drops it.
These writes are synced to disk before they return (FULL): a hold or a delete the
operator was told about does not come undone in a power cut.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from mailwright.spool.model import Attempt, Claimed, Envelope, QueueEntry, SpooledMessage


class SpoolError(Exception):
    """Storing failed (disk full, permissions, I/O error).  Always temporary for peers."""


class MessageGone(SpoolError):
    """``update``/``record_attempt`` of a message that is no longer stored (deleted by
    the operator while it was being attempted): nothing to record."""


class MessageBusy(SpoolError):
    """``delete`` of a message a runner holds a live lease on (being attempted), or
    ``record_progress`` of one whose live lease another runner holds."""


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

    async def put(
        self, body: MessageWriter | bytes, envelope: Envelope, header_block: bytes = b""
    ) -> SpooledMessage:
        """Store ``body`` (a writer from ``new_message``, or bytes) with ``envelope`` and
        the ``header_block`` to prepend on read."""

    async def load(self, queue_id: str) -> SpooledMessage | None: ...

    async def read_body(self, queue_id: str) -> bytes: ...

    async def update(self, message: SpooledMessage) -> None:
        """Persist ``message.recipients``, ``attempts`` and ``next_attempt``."""

    async def due(self, now: float, limit: int) -> list[SpooledMessage]:
        """Messages with pending recipients whose ``next_attempt`` <= now, oldest first."""

    async def claim(self, now: float, limit: int, lease: float, owner: str) -> list[Claimed]:
        """Lease up to ``limit`` due, unleased messages to ``owner`` until ``now + lease``."""

    async def renew(self, queue_ids: Sequence[str], owner: str, until: float) -> list[str]:
        """Extend ``owner``'s leases on ``queue_ids`` to ``until``; return the ids renewed."""

    async def release(self, owner: str, queue_ids: Sequence[str] | None = None) -> None:
        """End ``owner``'s leases on ``queue_ids`` (None: every lease ``owner`` holds)."""

    async def next_due(self, now: float) -> float | None:
        """The earliest ``next_attempt`` of a pending message no live lease holds."""

    async def record_attempt(
        self, message: SpooledMessage, attempts: Sequence[Attempt], owner: str | None = None
    ) -> None:
        """``update(message)``, append ``attempts`` to its history, end ``owner``'s lease."""

    async def record_progress(
        self, message: SpooledMessage, attempts: Sequence[Attempt], owner: str
    ) -> None:
        """``update(message)`` and append ``attempts``, synced, ``owner``'s lease kept."""

    async def attempts(self, queue_id: str) -> list[Attempt]:
        """The message's delivery history, oldest first ([] if unknown)."""

    async def remove(self, queue_id: str) -> None: ...

    def iterate(self) -> AsyncIterator[SpooledMessage]:
        """Every committed message (for `queue list` and recovery)."""

    def scan(self) -> AsyncIterator[QueueEntry]:
        """Every committed message with its hold and lease, arrival order, no bodies."""

    async def entry(self, queue_id: str) -> QueueEntry | None:
        """One message as ``scan`` gives it (None if unknown)."""

    async def hold(self, queue_id: str, now: float) -> bool:
        """Hold ``queue_id`` (kept from delivery until ``unhold``); False if unknown."""

    async def unhold(self, queue_id: str) -> bool:
        """End the hold of ``queue_id``; False if unknown."""

    async def retry(self, now: float, queue_ids: Sequence[str] | None = None) -> list[str]:
        """Make the pending messages ``queue_ids`` (None: all) due now; the ids matched."""

    async def delete(self, queue_id: str, now: float) -> bool:
        """Remove ``queue_id`` unless leased (``MessageBusy``); False if unknown."""
