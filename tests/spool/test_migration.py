"""An embedded queue written by an earlier release (schema version 2, 3 or 4) opens and
keeps every message: migrated in place at start-up, checked through the store's API.

The old database is built here from the version-2 schema *as that release shipped
it* (copied verbatim, not imported: a later edit to ``_schema`` must not change what this
test calls "the old database").  This is the only place besides the version-1 test
that touches ``queue.db`` directly: there is no API for writing an old format.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers.spoolkit import BIG, BODY, Clock, put, run
from mailwright.queue.dsn import status_of
from mailwright.spool._schema import SCHEMA_VERSION
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import Attempt, RecipientStatus, RemoteReply

SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS messages (
    queue_id       TEXT PRIMARY KEY,
    mail_from      TEXT NOT NULL,
    body_type      TEXT NOT NULL,
    smtputf8       INTEGER NOT NULL,
    ret            TEXT,
    envid          TEXT,
    client_address TEXT NOT NULL,
    client_helo    TEXT NOT NULL,
    auth_user      TEXT,
    size           INTEGER NOT NULL,
    received_at    REAL NOT NULL,
    next_attempt   REAL NOT NULL,
    attempts       INTEGER NOT NULL,
    pending        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_due ON messages (next_attempt) WHERE pending > 0;
CREATE TABLE IF NOT EXISTS recipients (
    queue_id   TEXT NOT NULL REFERENCES messages (queue_id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    address    TEXT NOT NULL,
    notify     TEXT NOT NULL,
    orcpt      TEXT,
    status     TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    last_reply TEXT,
    PRIMARY KEY (queue_id, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bodies (
    queue_id TEXT PRIMARY KEY REFERENCES messages (queue_id) ON DELETE CASCADE,
    data     BLOB NOT NULL
);
PRAGMA user_version=2;
"""

INLINE = "1HF00000000000AB"  # deferred twice, one recipient delivered, one pending
FILED = "1HF00000000000CD"  # never attempted, body in msg/
ODD = "1HF00000000000EF"  # a last_reply string in no form we ever wrote


def old_database(root: Path, now: float) -> None:
    spool = root / "spool"
    (spool / "msg").mkdir(parents=True)
    (spool / "tmp").mkdir()
    conn = sqlite3.connect(spool / "queue.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA_V2)
    message = "INSERT INTO messages VALUES (?, 'a@example.com', '7BIT', 0, NULL, NULL,"
    message += " '192.0.2.1', 'client.example', NULL, ?, ?, ?, ?, ?)"
    recipient = "INSERT INTO recipients VALUES (?, ?, ?, '', NULL, ?, ?, ?)"
    conn.execute(message, (INLINE, len(BODY), now - 600, now - 1, 2, 1))
    conn.execute(recipient, (INLINE, 0, "b@example.net", "delivered", 1, "250 2.0.0 Ok"))
    conn.execute(
        recipient, (INLINE, 1, "c@example.org", "pending", 2, "451 4.2.0 Mailbox busy, try later")
    )
    conn.execute("INSERT INTO bodies VALUES (?, ?)", (INLINE, BODY))
    conn.execute(message, (FILED, len(BIG), now - 5, now - 5, 0, 1))
    conn.execute(recipient, (FILED, 0, "d@example.net", "pending", 0, None))
    conn.execute(message, (ODD, len(BODY), now - 4, now + 900, 1, 1))
    conn.execute(recipient, (ODD, 0, "e@example.net", "pending", 1, "421 no enhanced code"))
    conn.execute(
        "INSERT INTO bodies VALUES (?, ?)",
        (ODD, BODY),
    )
    conn.commit()
    conn.close()
    (spool / "msg" / FILED).write_bytes(BIG)


def test_version_2_queue_is_migrated_in_place_and_loses_nothing(
    tmp_path: Path, clock: Clock
) -> None:
    old_database(tmp_path, clock.now)

    async def main() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        assert store.recovery is not None and store.recovery.missing_bodies == []
        assert [m.queue_id async for m in store.iterate()] == [INLINE, FILED, ODD]

        inline = await store.load(INLINE)
        assert inline is not None and inline.attempts == 2
        delivered, pending = inline.recipients
        assert delivered.status is RecipientStatus.DELIVERED
        assert delivered.last_reply == RemoteReply(250, "2.0.0", "Ok")
        assert pending.status is RecipientStatus.PENDING and pending.attempts == 2
        assert pending.last_reply == RemoteReply(451, "4.2.0", "Mailbox busy, try later")
        assert status_of(pending.last_reply) == ("4.2.0", "451 4.2.0 Mailbox busy, try later")
        odd = await store.load(ODD)
        assert odd is not None
        assert odd.recipients[0].last_reply == RemoteReply(421, "", "no enhanced code")
        assert status_of(odd.recipients[0].last_reply)[0] == "4.0.0"

        # The migrated messages are claimable (no lease) and keep their bodies.
        claimed = await store.claim(clock.now, 10, 60, "runner")
        assert [c.message.queue_id for c in claimed] == [FILED, INLINE]  # due order; ODD later
        assert await store.read_body(INLINE) == BODY
        assert await store.read_body(FILED) == BIG
        # The new tables work on the migrated database.
        assert await store.attempts(INLINE) == []
        reply = RemoteReply(250, "2.0.0", "Ok")
        inline.recipients[1].status = RecipientStatus.DELIVERED
        inline.recipients[1].last_reply = reply
        done = [Attempt(1, clock.now, RecipientStatus.DELIVERED, reply, "mx.example.org")]
        await store.record_attempt(inline, done, "runner")
        assert await store.attempts(INLINE) == done
        fresh = await put(store)
        await store.close()

        reopened = EmbeddedSpool(tmp_path, clock=clock)  # a second start: nothing to do
        await reopened.open()
        assert [m.queue_id async for m in reopened.iterate()] == [
            INLINE,
            FILED,
            ODD,
            fresh.queue_id,
        ]
        assert await reopened.attempts(INLINE) == done
        await reopened.close()

    run(main())


# Version 3 as that release shipped it: version 2 plus these statements (verbatim).
SCHEMA_V3_ADDED = """
ALTER TABLE messages ADD COLUMN lease_owner TEXT;
ALTER TABLE messages ADD COLUMN lease_until REAL;
ALTER TABLE recipients ADD COLUMN reply_code INTEGER;
ALTER TABLE recipients ADD COLUMN reply_enhanced TEXT;
ALTER TABLE recipients ADD COLUMN reply_text TEXT;
CREATE TABLE IF NOT EXISTS attempts (
    queue_id       TEXT NOT NULL REFERENCES messages (queue_id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    at             REAL NOT NULL,
    status         TEXT NOT NULL,
    reply_code     INTEGER NOT NULL,
    reply_enhanced TEXT NOT NULL,
    reply_text     TEXT NOT NULL,
    remote_host    TEXT
);
CREATE INDEX IF NOT EXISTS attempts_message ON attempts (queue_id);
PRAGMA user_version=3;
"""


def version_3_database(root: Path, now: float) -> None:
    spool = root / "spool"
    (spool / "msg").mkdir(parents=True)
    (spool / "tmp").mkdir()
    conn = sqlite3.connect(spool / "queue.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA_V2 + SCHEMA_V3_ADDED)
    conn.execute(
        "INSERT INTO messages VALUES (?, 'a@example.com', '7BIT', 0, NULL, NULL,"
        " '192.0.2.1', 'client.example', NULL, ?, ?, ?, 1, 1, 'old-runner', ?)",
        (INLINE, len(BODY), now - 600, now - 1, now - 30),
    )
    conn.execute(
        "INSERT INTO recipients VALUES (?, 0, 'b@example.net', '', NULL, 'pending', 1,"
        " NULL, 451, '4.2.0', 'Mailbox busy')",
        (INLINE,),
    )
    conn.execute("INSERT INTO bodies VALUES (?, ?)", (INLINE, BODY))
    conn.execute(
        "INSERT INTO messages VALUES (?, 'a@example.com', '7BIT', 0, NULL, NULL,"
        " '192.0.2.1', 'client.example', NULL, ?, ?, ?, 0, 1, NULL, NULL)",
        (FILED, len(BIG), now - 5, now - 5),
    )
    conn.execute(
        "INSERT INTO recipients VALUES (?, 0, 'd@example.net', '', NULL, 'pending', 0,"
        " NULL, NULL, NULL, NULL)",
        (FILED,),
    )
    conn.commit()
    conn.close()
    (spool / "msg" / FILED).write_bytes(BIG)


def test_version_3_queue_gains_the_header_block_column_and_loses_nothing(
    tmp_path: Path, clock: Clock
) -> None:
    version_3_database(tmp_path, clock.now)
    block = b"X-Test: yes\r\n"

    async def main() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        assert [m.queue_id async for m in store.iterate()] == [INLINE, FILED]
        inline = await store.load(INLINE)
        assert inline is not None and inline.header_block == b"" and inline.size == len(BODY)
        assert inline.recipients[0].last_reply == RemoteReply(451, "4.2.0", "Mailbox busy")
        # Old rows have no header block: their bytes are read back unchanged.
        claimed = await store.claim(clock.now, 10, 60, "runner")
        assert {c.message.queue_id for c in claimed} == {INLINE, FILED}
        assert await store.read_body(INLINE) == BODY
        assert await store.read_body(FILED) == BIG
        writer = store.new_message()
        writer.write(BODY)
        fresh = await store.put(writer, inline.envelope, block)
        await store.close()

        reopened = EmbeddedSpool(tmp_path, clock=clock)  # a second start: nothing to do
        await reopened.open()
        assert [m.queue_id async for m in reopened.iterate()] == [INLINE, FILED, fresh.queue_id]
        assert await reopened.read_body(fresh.queue_id) == block + BODY
        assert await reopened.read_body(INLINE) == BODY
        await reopened.close()
        conn = sqlite3.connect(tmp_path / "spool" / "queue.db")
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        finally:
            conn.close()

    run(main())


# Version 4 added the header block; copied verbatim like the versions before it.
SCHEMA_V4_ADDED = """
ALTER TABLE messages ADD COLUMN header_block BLOB;
PRAGMA user_version=4;
"""


def test_version_4_queue_gains_the_hold_column_and_loses_nothing(
    tmp_path: Path, clock: Clock
) -> None:
    """Version 5 adds the operator's hold: old rows are not held and stay claimable."""
    version_3_database(tmp_path, clock.now)
    conn = sqlite3.connect(tmp_path / "spool" / "queue.db")
    conn.executescript(SCHEMA_V4_ADDED)
    conn.execute("UPDATE messages SET header_block = ? WHERE queue_id = ?", (b"X: 1\r\n", FILED))
    conn.commit()
    conn.close()

    async def main() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        entries = [e async for e in store.scan()]
        assert [e.message.queue_id for e in entries] == [INLINE, FILED]
        assert [e.held_since for e in entries] == [None, None]
        assert await store.read_body(FILED) == b"X: 1\r\n" + BIG
        assert await store.hold(FILED, clock.now)
        claimed = await store.claim(clock.now, 10, 60, "runner")
        assert [c.message.queue_id for c in claimed] == [INLINE]
        await store.close()
        conn = sqlite3.connect(tmp_path / "spool" / "queue.db")
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        finally:
            conn.close()

    run(main())
