"""An embedded queue from before the per-recipient delay-warning mark opens, migrated
in place: every message kept, no recipient counted as already warned.

The older database is made by dropping what the migration step adds from a fresh one
(``BEFORE``: the version that step starts from, found in ``_schema._MIGRATIONS``; what the
later steps add is dropped too, so that the result is exactly that release's layout).
Every other table was already checked by ``test_migration``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers.spoolkit import BODY, Clock, envelope, put, run
from mailwright.spool import _schema
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import RemoteReply

BEFORE = next(v for v, (script, _) in _schema._MIGRATIONS.items() if "delay_warned" in script)


def test_queue_before_delay_warned_gains_it_and_loses_nothing(tmp_path: Path, clock: Clock) -> None:
    async def make() -> str:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        message = await put(store, envelope("a@example.net", "b@example.net"))
        message.recipients[0].last_reply = RemoteReply(451, "4.2.0", "Mailbox busy")
        message.recipients[0].attempts = 1
        await store.update(message)
        await store.close()
        return message.queue_id

    qid = run(make())
    conn = sqlite3.connect(tmp_path / "spool" / "queue.db")
    conn.execute("ALTER TABLE recipients DROP COLUMN delay_warned")
    conn.execute("ALTER TABLE attempts DROP COLUMN session")  # version 7's
    conn.execute(f"PRAGMA user_version={BEFORE}")
    conn.commit()
    conn.close()

    async def reopen() -> None:
        store = EmbeddedSpool(tmp_path, clock=clock)
        await store.open()
        loaded = await store.load(qid)
        assert loaded is not None
        assert [s.delay_warned for s in loaded.recipients] == [False, False]
        assert loaded.recipients[0].last_reply == RemoteReply(451, "4.2.0", "Mailbox busy")
        assert await store.read_body(qid) == BODY
        loaded.recipients[0].delay_warned = True
        await store.update(loaded)
        await store.close()
        again = EmbeddedSpool(tmp_path, clock=clock)
        await again.open()
        reloaded = await again.load(qid)
        assert reloaded is not None
        assert [s.delay_warned for s in reloaded.recipients] == [True, False]
        await again.close()

    run(reopen())
    conn = sqlite3.connect(tmp_path / "spool" / "queue.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == _schema.SCHEMA_VERSION
        assert BEFORE == 5 and _schema.SCHEMA_VERSION == 7  # a new step: drop its additions
    finally:
        conn.close()
