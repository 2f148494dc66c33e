"""The embedded spool's SQLite schema: connection settings, tables and migrations.

The queries that read and write these tables are in ``_db``; like them, everything
here is synchronous and runs on the thread that owns the connection.

Settings, and why:

* ``journal_mode=WAL``: a commit appends to one log file and fsyncs it once, and
  readers never block the writer (the store reads on its own connection, see
  ``embedded``).
* ``synchronous=FULL`` for every transaction that stores a message: in WAL mode
  ``NORMAL`` does *not* fsync the log at commit, so a power cut can roll back a
  committed transaction — a message we answered 250 for would vanish.  FULL fsyncs the
  WAL on every commit; group commit (see ``embedded``) amortises that one fsync over
  every concurrent session.  (``embedded`` lowers it to NORMAL for batches that store
  nothing new; its module docstring argues why that cannot lose a message.)
* ``foreign_keys=ON`` so deleting a message deletes its recipient rows and body.
* ``user_version`` records the schema version.  Older versions are migrated in place,
  in one transaction, when the store opens (``_MIGRATIONS``): a queue written by the
  previous release keeps every message.  A newer, unknown version refuses to open
  rather than guessing.

Tables: ``messages`` (envelope, timing, a ``pending`` recipient count),
``recipients`` (one row per RCPT with its delivery state) and, since version 2,
``bodies`` (the bytes of *inline* bodies, see ``embedded``) and, since version 3,
``attempts`` (the delivery history: one row per recipient per attempt, with the
structured reply and the remote host), the lease columns of ``messages``
(``lease_owner``, ``lease_until``: see ``SpoolStore``) and the structured last reply
of ``recipients`` (``reply_code``, ``reply_enhanced``, ``reply_text``; the version-2
``last_reply`` string is converted once by the migration and no longer written);
since version 4, ``messages.header_block`` (the header fields the MESSAGE stage
added, prepended on read; NULL when none, as for every message stored before);
since version 5, ``messages.held_at`` (``SpoolStore.hold``: when the operator held
it; NULL when not held — every message stored before — and ``claim``, ``due`` and
``next_due`` skip held rows);
since version 6, ``recipients.delay_warned`` (1 once a delay DSN was queued for the
recipient, so a restart never sends a second one; 0 for every row stored before);
since version 7, ``attempts.session`` (the remote session of a relay attempt as JSON,
``_sessionjson``: host and address, TLS, the policy, the replies; NULL before).
``attempts`` is an ordinary rowid table: the rowid gives the order of the history
and the ``attempts_message`` index serves both reading it and the cascading delete.
A separate recipients
table lets ``update`` touch only state columns and lets the queue CLI search by
recipient.  The partial index ``messages_due(next_attempt) WHERE pending > 0`` serves
``due``: finished messages (removed soon anyway) never clutter it.  ``messages`` and
``recipients`` are ``WITHOUT ROWID`` because every lookup is by the text key and rows
are small; ``bodies`` is an ordinary rowid table, because SQLite advises WITHOUT ROWID
only for rows below about 1/20 of a page, and a body row is usually larger than that.
A message whose body is a file has no ``bodies`` row; ``bodies`` rows never exist
without their ``messages`` row (the foreign key, and both are written in one
transaction).
"""

from __future__ import annotations

import re
import sqlite3
import sys
import time
from collections.abc import Callable

SCHEMA_VERSION = 7
BUSY_TIMEOUT_MS = 10_000
# How often a writer retries BEGIN IMMEDIATE while another process (the delivery
# worker, a session process) holds the write lock.  SQLite's default busy handler,
# which ``busy_timeout`` installs, does not wake when the lock is released: it sleeps
# 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and then 100 ms between tries (main.c,
# sqliteDefaultBusyCallback), so a lock held for 80 ms cost the waiting session 103 ms
# before its 250, one held for 130 ms 178 ms.  Retrying every millisecond bounds that
# overshoot at about 1 ms, for a few microseconds of CPU per try.
WRITE_LOCK_POLL = 0.001  # seconds
# After a checkpoint, truncate the WAL back to this size instead of letting it grow.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

# Version 1: messages and recipients.  Kept verbatim: tests build a version-1 database
# from it to check the migration.
SCHEMA_V1 = """
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
"""

_BODIES = """
CREATE TABLE IF NOT EXISTS bodies (
    queue_id TEXT PRIMARY KEY REFERENCES messages (queue_id) ON DELETE CASCADE,
    data     BLOB NOT NULL
);
"""

# Version 2 -> 3: leases, structured replies, the attempt history.
_V3 = """
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
CREATE INDEX IF NOT EXISTS attempts_message ON attempts (queue_id)
"""

# Version 3 -> 4: the header block the MESSAGE stage added (see ``SpoolStore``).
_V4 = """
ALTER TABLE messages ADD COLUMN header_block BLOB
"""

# Version 4 -> 5: the operator's hold (see ``SpoolStore``).
_V5 = """
ALTER TABLE messages ADD COLUMN held_at REAL
"""

# Version 5 -> 6: the delay warning sent per recipient (``RecipientState.delay_warned``).
_V6_DELAY_WARNED = """
ALTER TABLE recipients ADD COLUMN delay_warned INTEGER NOT NULL DEFAULT 0
"""

# Version 6 -> 7: the attempt's session (``Attempt.session``, JSON: ``_sessionjson``).
_V7_SESSION = """
ALTER TABLE attempts ADD COLUMN session TEXT
"""

# The version-2 ``last_reply`` strings were written by ``str(Reply)``: "451 4.2.0 text"
# or "451 text".  Read once, by the migration; nothing parses replies after it.
_V2_REPLY = re.compile(r"^([245]\d\d)(?: ([245]\.\d{1,3}\.\d{1,3}))?(?: (.*))?$", re.S)


def _structure_v2_replies(conn: sqlite3.Connection) -> None:
    rows = conn.execute(
        "SELECT queue_id, position, last_reply FROM recipients WHERE last_reply IS NOT NULL"
    ).fetchall()
    updates = []
    for queue_id, position, text in rows:
        match = _V2_REPLY.match(str(text))
        if match is None:  # not ours: keep the words, as a temporary failure
            code, enhanced, rest = 451, "", str(text)
        else:
            code, enhanced, rest = int(match[1]), match[2] or "", match[3] or ""
        updates.append((code, enhanced, rest, queue_id, position))
    conn.executemany(
        "UPDATE recipients SET reply_code = ?, reply_enhanced = ?, reply_text = ?,"
        " last_reply = NULL WHERE queue_id = ? AND position = ?",
        updates,
    )


# from_version -> what brings a database of that version to the next one: statements,
# then an optional data conversion.
_MIGRATIONS: dict[int, tuple[str, Callable[[sqlite3.Connection], None] | None]] = {
    1: (_BODIES, None),
    2: (_V3, _structure_v2_replies),
    3: (_V4, None),
    4: (_V5, None),
    5: (_V6_DELAY_WARNED, None),
    6: (_V7_SESSION, None),
}


class SchemaError(Exception):
    """The database was written by an incompatible version."""


def connect(path: str) -> sqlite3.Connection:
    """Open the queue database with the durability settings described above."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise sqlite3.OperationalError(f"cannot enable WAL mode (got {mode})")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    if sys.platform == "darwin":  # pragma: no cover - see fs.durable.fsync_file
        conn.execute("PRAGMA fullfsync=ON")
        conn.execute("PRAGMA checkpoint_fullfsync=ON")
    return conn


def connect_reader(path: str) -> sqlite3.Connection:
    """A second, read-only connection: WAL lets it read while the writer commits."""
    conn = sqlite3.connect(
        path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only=ON")
    return conn


def begin_immediate(conn: sqlite3.Connection) -> None:
    """``BEGIN IMMEDIATE``: take the write lock, waiting for another writer up to
    ``BUSY_TIMEOUT_MS`` and trying again every ``WRITE_LOCK_POLL`` (see there).
    Raises ``sqlite3.OperationalError`` ("database is locked") when the wait is over."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    conn.execute("PRAGMA busy_timeout=0")  # fail at once while locked: we poll instead
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise
            time.sleep(WRITE_LOCK_POLL)
    finally:
        # Every other statement (a COMMIT's checkpoint, a reader) keeps SQLite's wait.
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def set_synchronous(conn: sqlite3.Connection, full: bool) -> None:
    """FULL or NORMAL for the next commits (SQLite refuses this inside a transaction)."""
    conn.execute("PRAGMA synchronous=FULL" if full else "PRAGMA synchronous=NORMAL")


def create_schema(conn: sqlite3.Connection) -> int:
    """Create or migrate the schema to ``SCHEMA_VERSION``; return the version found.

    Everything happens in one transaction: a failed migration leaves the old schema.
    """
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return version
    if version != 0 and version not in _MIGRATIONS:
        raise SchemaError(f"queue database has schema version {version}, expected {SCHEMA_VERSION}")
    # executescript() would COMMIT first; one explicit transaction keeps it all-or-nothing.
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version == 0:
            _run_script(conn, SCHEMA_V1 + _BODIES + ";" + _V3 + ";" + _V4 + ";" + _V5)
            _run_script(conn, _V6_DELAY_WARNED)
            _run_script(conn, _V7_SESSION)
        else:
            for step in range(version, SCHEMA_VERSION):
                script, convert = _MIGRATIONS[step]
                _run_script(conn, script)
                if convert is not None:
                    convert(conn)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return version


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)
