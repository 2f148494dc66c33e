"""An embedded queue from before the attempt's session column (schema version 6) opens,
migrated in place: its history kept, the old rows without a session, new rows with one.

The older database is made by dropping what the step adds from a fresh one (``BEFORE``
is the version the step starts from, found in ``_schema._MIGRATIONS``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers.spoolkit import BODY, Clock, envelope, put, run
from mailwright.spool import _schema
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import (
    Attempt,
    RecipientStatus,
    RemoteReply,
    RemoteSession,
    SessionReply,
)

BEFORE = next(v for v, (script, _) in _schema._MIGRATIONS.items() if "session" in script)
BUSY = RemoteReply(451, "4.2.0", "Mailbox busy")


def test_queue_before_attempt_sessions_gains_the_column_and_keeps_its_history(
    tmp_path: Path, clock: Clock
) -> None:
    old = Attempt(0, clock.now, RecipientStatus.PENDING, BUSY, "mx1.example.net[192.0.2.1]:25")

    async def make() -> str:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        message = await put(store, envelope("a@example.net"))
        message.recipients[0].last_reply = BUSY
        message.recipients[0].attempts = message.attempts = 1
        await store.record_attempt(message, [old])
        await store.close()
        return message.queue_id

    qid = run(make())
    conn = sqlite3.connect(tmp_path / "spool" / "queue.db")
    conn.execute("ALTER TABLE attempts DROP COLUMN session")
    conn.execute(f"PRAGMA user_version={BEFORE}")
    conn.commit()
    conn.close()

    session = RemoteSession(
        "mx2.example.net",
        "192.0.2.2",
        25,
        "TLSv1.3",
        "TLS_AES_256_GCM_SHA384",
        "may",
        "default",
        "opportunistic STARTTLS",
        (SessionReply("greeting", "", RemoteReply(220, "", "mx2 ESMTP")),),
    )
    new = Attempt(0, clock.now + 60, RecipientStatus.PENDING, BUSY, "mx2", session)

    async def reopen() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        assert await store.attempts(qid) == [old]
        loaded = await store.load(qid)
        assert loaded is not None and await store.read_body(qid) == BODY
        loaded.attempts = 2
        await store.record_attempt(loaded, [new])
        await store.close()
        again = EmbeddedSpool(tmp_path, clock=clock)
        await again.open()
        assert await again.attempts(qid) == [old, new]
        await again.close()

    run(reopen())
    conn = sqlite3.connect(tmp_path / "spool" / "queue.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == _schema.SCHEMA_VERSION
        assert BEFORE == _schema.SCHEMA_VERSION - 1
    finally:
        conn.close()
