"""The in-memory spool: the ``SpoolStore`` contract with no disk at all.

What it is for: the reference backend beside the embedded one in the backend-neutral
contract suite (``tests/spool/test_contract.py``), and a store for the queue runner's
own tests, which run unchanged on it.  It is **not durable**: a process exit loses
everything.  Nothing in ``serve`` uses it.

"Durable" here means *committed into the shared* ``MemoryState``: a new
``MemorySpool(state=old.state)`` is a restart of the store (writers in progress are
gone, committed messages are all there), which lets the contract suite's recovery
tests run over this backend too.  ``put`` yields to the event loop once before it
commits, as a real backend's commit does, so concurrent callers interleave.

Every read returns fresh copies: a caller mutating a ``SpooledMessage`` changes
nothing stored until it calls ``update``, exactly as with a database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace

from mailwright.spool.model import (
    Attempt,
    Claimed,
    Envelope,
    QueueEntry,
    RecipientState,
    SpooledMessage,
)
from mailwright.spool.queueid import is_queue_id, new_queue_id
from mailwright.spool.store import MessageBusy, MessageGone, MessageWriter, SpoolError

__all__ = ["MemorySpool", "MemoryState", "MemoryWriter"]


@dataclass(slots=True)
class MemoryState:
    """What a ``MemorySpool`` has committed; outlives the store object (a "restart")."""

    messages: dict[str, SpooledMessage] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, bytes] = field(default_factory=dict)  # id -> header_block
    leases: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (owner, until)
    history: dict[str, list[Attempt]] = field(default_factory=dict)
    held: dict[str, float] = field(default_factory=dict)  # id -> when it was held


class MemoryWriter:
    """A body being received, held in a ``bytearray`` until ``put``."""

    def __init__(self, store: MemorySpool, queue_id: str, error: SpoolError | None = None):
        self.store = store
        self.queue_id = queue_id
        self.size = 0
        self._buffer: bytearray | None = bytearray()
        self._error = error
        self._stored: bytes | None = None
        self._put = False

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._buffer is None:
            raise SpoolError(f"{self.queue_id}: body already stored or aborted")
        self._buffer += data
        self.size += len(data)

    def abort(self) -> None:
        if not self._put:
            self._buffer = None

    def body_bytes(self) -> bytes | None:
        return self._stored

    def take(self) -> bytes:
        """For ``put``: the body, once.  Raises what ``write`` would have raised."""
        if self._error is not None:
            raise self._error
        if self._buffer is None or self._put:
            raise SpoolError(f"{self.queue_id}: body already stored or aborted")
        self._put = True
        data, self._buffer = bytes(self._buffer), None
        return data

    def stored(self, data: bytes) -> None:
        self._stored = data


class MemorySpool:
    """``SpoolStore`` in memory.  See the module docstring."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, state: MemoryState | None = None
    ) -> None:
        self.state = state if state is not None else MemoryState()
        self._clock = clock
        self._open = False

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check_open(self) -> None:
        if not self._open:
            raise SpoolError("spool is closed")

    def new_message(self) -> MessageWriter:
        qid = new_queue_id(self._clock())
        if not self._open:
            return MemoryWriter(self, qid, SpoolError("spool is closed"))
        return MemoryWriter(self, qid)

    async def put(
        self, body: MessageWriter | bytes, envelope: Envelope, header_block: bytes = b""
    ) -> SpooledMessage:
        if isinstance(body, bytes):
            writer = MemoryWriter(self, new_queue_id(self._clock()))
            writer.write(body)
        elif isinstance(body, MemoryWriter) and body.store is self:
            writer = body
        else:
            raise ValueError("writer was not created by this spool")
        if not envelope.recipients:
            raise ValueError("an envelope needs at least one recipient")
        if not self._open:
            writer.abort()
            raise SpoolError(f"{writer.queue_id}: spool is closed")
        data = writer.take()
        await asyncio.sleep(0)  # a commit is a suspension point in every real backend
        self._check_open()
        if writer.queue_id in self.state.messages:
            raise SpoolError(f"{writer.queue_id}: duplicate id")
        now = self._clock()
        message = SpooledMessage(
            queue_id=writer.queue_id,
            envelope=envelope,
            size=len(header_block) + len(data),
            received_at=now,
            next_attempt=now,
            recipients=[RecipientState(r) for r in envelope.recipients],
            header_block=header_block,
        )
        self.state.messages[message.queue_id] = _copy(message)
        # Kept apart from the body, as a real backend keeps it, and joined on read.
        self.state.headers[message.queue_id] = header_block
        self.state.bodies[message.queue_id] = data
        writer.stored(data)
        return message

    async def load(self, queue_id: str) -> SpooledMessage | None:
        self._check_open()
        message = self.state.messages.get(queue_id)
        return None if message is None else _copy(message)

    async def read_body(self, queue_id: str) -> bytes:
        self._check_open()
        try:
            return self.state.headers[queue_id] + self.state.bodies[queue_id]
        except KeyError:
            if not is_queue_id(queue_id):
                raise SpoolError(f"{queue_id!r} is not a queue id") from None
            raise SpoolError(f"{queue_id}: cannot read body: no such message") from None

    async def update(self, message: SpooledMessage) -> None:
        self._check_open()
        stored = self.state.messages.get(message.queue_id)
        if stored is None:
            raise MessageGone(f"{message.queue_id}: no such message")
        stored.next_attempt = message.next_attempt
        stored.attempts = message.attempts
        stored.recipients = [replace(s) for s in message.recipients]

    async def due(self, now: float, limit: int) -> list[SpooledMessage]:
        self._check_open()
        if limit <= 0:
            return []
        due = [
            m
            for m in self.state.messages.values()
            if m.pending and m.next_attempt <= now and m.queue_id not in self.state.held
        ]
        due.sort(key=lambda m: (m.next_attempt, m.queue_id))
        return [_copy(m) for m in due[:limit]]

    def _leased(self, queue_id: str, now: float) -> bool:
        lease = self.state.leases.get(queue_id)
        return lease is not None and lease[1] > now

    async def claim(self, now: float, limit: int, lease: float, owner: str) -> list[Claimed]:
        self._check_open()
        if limit <= 0:
            return []
        due = [
            m
            for m in self.state.messages.values()
            if m.pending
            and m.next_attempt <= now
            and not self._leased(m.queue_id, now)
            and m.queue_id not in self.state.held
        ]
        due.sort(key=lambda m: (m.next_attempt, m.queue_id))
        until = now + lease
        claimed = []
        for message in due[:limit]:
            self.state.leases[message.queue_id] = (owner, until)
            qid = message.queue_id
            body = self.state.headers[qid] + self.state.bodies[qid]
            claimed.append(Claimed(_copy(message), body, until))
        return claimed

    async def renew(self, queue_ids: Sequence[str], owner: str, until: float) -> list[str]:
        self._check_open()
        renewed = []
        for queue_id in queue_ids:
            lease = self.state.leases.get(queue_id)
            if lease is not None and lease[0] == owner:
                self.state.leases[queue_id] = (owner, until)
                renewed.append(queue_id)
        return renewed

    async def release(self, owner: str, queue_ids: Sequence[str] | None = None) -> None:
        self._check_open()
        leases = self.state.leases
        for queue_id in list(leases) if queue_ids is None else queue_ids:
            lease = leases.get(queue_id)
            if lease is not None and lease[0] == owner:
                del leases[queue_id]

    async def next_due(self, now: float) -> float | None:
        self._check_open()
        times = [
            m.next_attempt
            for m in self.state.messages.values()
            if m.pending and not self._leased(m.queue_id, now) and m.queue_id not in self.state.held
        ]
        return min(times, default=None)

    async def record_attempt(
        self, message: SpooledMessage, attempts: Sequence[Attempt], owner: str | None = None
    ) -> None:
        await self.update(message)
        self.state.history.setdefault(message.queue_id, []).extend(attempts)
        if owner is not None:
            await self.release(owner, [message.queue_id])

    async def record_progress(
        self, message: SpooledMessage, attempts: Sequence[Attempt], owner: str
    ) -> None:
        self._check_open()
        lease = self.state.leases.get(message.queue_id)
        if (
            message.queue_id in self.state.messages
            and lease is not None
            and lease[0] != owner
            and self._leased(message.queue_id, self._clock())
        ):
            raise MessageBusy(f"{message.queue_id}: leased to {lease[0]}")
        await self.update(message)  # MessageGone if it is not stored
        self.state.history.setdefault(message.queue_id, []).extend(attempts)

    async def attempts(self, queue_id: str) -> list[Attempt]:
        self._check_open()
        return list(self.state.history.get(queue_id, ()))

    async def remove(self, queue_id: str) -> None:
        self._check_open()
        self.state.messages.pop(queue_id, None)
        self.state.bodies.pop(queue_id, None)
        self.state.headers.pop(queue_id, None)
        self.state.leases.pop(queue_id, None)
        self.state.history.pop(queue_id, None)
        self.state.held.pop(queue_id, None)

    async def iterate(self) -> AsyncIterator[SpooledMessage]:
        self._check_open()
        for queue_id in sorted(self.state.messages):
            message = self.state.messages.get(queue_id)
            if message is not None:
                yield _copy(message)

    # -- administration ----------------------------------------------------------------

    def _entry(self, message: SpooledMessage) -> QueueEntry:
        lease = self.state.leases.get(message.queue_id)
        return QueueEntry(
            _copy(message),
            held_since=self.state.held.get(message.queue_id),
            lease_owner=None if lease is None else lease[0],
            lease_until=None if lease is None else lease[1],
        )

    async def scan(self) -> AsyncIterator[QueueEntry]:
        self._check_open()
        for queue_id in sorted(self.state.messages):
            message = self.state.messages.get(queue_id)
            if message is not None:
                yield self._entry(message)

    async def entry(self, queue_id: str) -> QueueEntry | None:
        self._check_open()
        message = self.state.messages.get(queue_id)
        return None if message is None else self._entry(message)

    async def hold(self, queue_id: str, now: float) -> bool:
        self._check_open()
        if queue_id not in self.state.messages:
            return False
        self.state.held.setdefault(queue_id, now)
        return True

    async def unhold(self, queue_id: str) -> bool:
        self._check_open()
        self.state.held.pop(queue_id, None)
        return queue_id in self.state.messages

    async def retry(self, now: float, queue_ids: Sequence[str] | None = None) -> list[str]:
        self._check_open()
        messages = self.state.messages
        ids = sorted(messages) if queue_ids is None else [q for q in queue_ids if q in messages]
        found = []
        for queue_id in ids:
            message = messages[queue_id]
            if message.pending:
                message.next_attempt = min(message.next_attempt, now)
                found.append(queue_id)
        return found

    async def delete(self, queue_id: str, now: float) -> bool:
        self._check_open()
        if queue_id not in self.state.messages:
            return False
        if self._leased(queue_id, now):
            raise MessageBusy(f"{queue_id}: being delivered right now")
        await self.remove(queue_id)
        return True


def _copy(message: SpooledMessage) -> SpooledMessage:
    return replace(message, recipients=[replace(s) for s in message.recipients])
