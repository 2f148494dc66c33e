"""The embedded spool's SQLite schema and queries (synchronous; one owning thread each).

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
from collections.abc import Callable, Iterable, Sequence

from mailwright.spool import _sessionjson
from mailwright.spool.model import (
    Attempt,
    BodyType,
    Envelope,
    QueueEntry,
    Recipient,
    RecipientState,
    RecipientStatus,
    RemoteReply,
    SpooledMessage,
)

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
# Stay well below SQLite's host-parameter limit (32766 since 3.32, 999 before).
MAX_IN_PARAMS = 500

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

_MESSAGE_COLUMNS = (
    "queue_id, mail_from, body_type, smtputf8, ret, envid, client_address, client_helo,"
    " auth_user, size, received_at, next_attempt, attempts, header_block"
)
# A message plus what the queue administration shows (``QueueEntry``).
_ENTRY_COLUMNS = _MESSAGE_COLUMNS + ", held_at, lease_owner, lease_until"
_RECIPIENT_COLUMNS = "queue_id, position, address, notify, orcpt, status, attempts, last_reply"
_RECIPIENT_READ = (
    "queue_id, position, address, notify, orcpt, status, attempts,"
    " reply_code, reply_enhanced, reply_text, delay_warned"
)

# Row tuples, built on the event loop and handed to the DB thread (immutable).
MessageRow = tuple[object, ...]
RecipientRow = tuple[object, ...]


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


# -- row conversion ----------------------------------------------------------------------


def message_row(message: SpooledMessage) -> MessageRow:
    env = message.envelope
    return (
        message.queue_id,
        env.mail_from,
        str(env.body_type),
        int(env.smtputf8),
        env.ret,
        env.envid,
        env.client_address,
        env.client_helo,
        env.auth_user,
        message.size,
        message.received_at,
        message.next_attempt,
        message.attempts,
        message.header_block or None,  # NULL: none added (and every pre-v4 row)
        len(message.pending),
    )


def recipient_rows(message: SpooledMessage) -> list[RecipientRow]:
    return [
        (
            message.queue_id,
            position,
            state.recipient.address,
            ",".join(state.recipient.notify),
            state.recipient.orcpt,
            str(state.status),
            state.attempts,
            None,  # version-2 column, no longer written (see the module docstring)
        )
        for position, state in enumerate(message.recipients)
    ]


def state_rows(message: SpooledMessage) -> list[tuple[object, ...]]:
    """(status, attempts, reply code, enhanced, text, delay_warned, queue_id, position)
    for ``update``."""
    rows: list[tuple[object, ...]] = []
    for position, s in enumerate(message.recipients):
        reply = s.last_reply
        if reply is None:
            code, enhanced, text = None, None, None
        else:
            code, enhanced, text = reply.code, reply.enhanced, reply.text
        warned = int(s.delay_warned)
        rows.append(
            (str(s.status), s.attempts, code, enhanced, text, warned, message.queue_id, position)
        )
    return rows


def attempt_rows(queue_id: str, attempts: Iterable[Attempt]) -> list[tuple[object, ...]]:
    return [
        (
            queue_id,
            a.position,
            a.at,
            str(a.status),
            a.reply.code,
            a.reply.enhanced,
            a.reply.text,
            a.remote_host,
            _sessionjson.dump(a.session),
        )
        for a in attempts
    ]


def _build(row: Sequence[object], recipients: list[Sequence[object]]) -> SpooledMessage:
    (
        qid,
        mail_from,
        body_type,
        smtputf8,
        ret,
        envid,
        client_address,
        client_helo,
        auth_user,
        size,
        received_at,
        next_attempt,
        attempts,
        header_block,
    ) = row[:14]
    states = [
        RecipientState(
            recipient=Recipient(
                address=str(r[2]),
                notify=tuple(str(r[3]).split(",")) if r[3] else (),
                orcpt=None if r[4] is None else str(r[4]),
            ),
            status=RecipientStatus(str(r[5])),
            attempts=int(r[6]),  # type: ignore[call-overload]
            last_reply=None
            if r[7] is None
            else RemoteReply(int(r[7]), str(r[8] or ""), str(r[9] or "")),  # type: ignore[call-overload]
            delay_warned=bool(r[10]),
        )
        for r in recipients
    ]
    envelope = Envelope(
        mail_from=str(mail_from),
        recipients=tuple(s.recipient for s in states),
        body_type=BodyType(str(body_type)),
        smtputf8=bool(smtputf8),
        ret=None if ret is None else str(ret),
        envid=None if envid is None else str(envid),
        client_address=str(client_address),
        client_helo=str(client_helo),
        auth_user=None if auth_user is None else str(auth_user),
    )
    return SpooledMessage(
        queue_id=str(qid),
        envelope=envelope,
        size=int(size),  # type: ignore[call-overload]
        received_at=float(received_at),  # type: ignore[arg-type]
        next_attempt=float(next_attempt),  # type: ignore[arg-type]
        attempts=int(attempts),  # type: ignore[call-overload]
        recipients=states,
        header_block=b"" if header_block is None else bytes(header_block),  # type: ignore[call-overload]
    )


def _with_recipients(
    conn: sqlite3.Connection, rows: list[Sequence[object]]
) -> list[SpooledMessage]:
    by_id: dict[str, list[Sequence[object]]] = {str(r[0]): [] for r in rows}
    ids = list(by_id)
    for start in range(0, len(ids), MAX_IN_PARAMS):
        chunk = ids[start : start + MAX_IN_PARAMS]
        marks = ",".join("?" * len(chunk))
        for r in conn.execute(
            f"SELECT {_RECIPIENT_READ} FROM recipients WHERE queue_id IN ({marks})"
            " ORDER BY queue_id, position",
            chunk,
        ):
            by_id[str(r[0])].append(r)
    return [_build(row, by_id[str(row[0])]) for row in rows]


# -- queries (run on the DB thread) ---------------------------------------------------------


def insert(conn: sqlite3.Connection, row: MessageRow, recipients: Iterable[RecipientRow]) -> None:
    conn.execute(f"INSERT INTO messages ({_MESSAGE_COLUMNS}, pending) VALUES ({'?,' * 14}?)", row)
    conn.executemany(
        f"INSERT INTO recipients ({_RECIPIENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", recipients
    )


def insert_body(conn: sqlite3.Connection, queue_id: str, data: bytes) -> None:
    conn.execute("INSERT INTO bodies (queue_id, data) VALUES (?, ?)", (queue_id, data))


def delete_body(conn: sqlite3.Connection, queue_id: str) -> bool:
    """Delete an inline body; False if the message has none (its body is a file)."""
    return conn.execute("DELETE FROM bodies WHERE queue_id = ?", (queue_id,)).rowcount > 0


def header_block(conn: sqlite3.Connection, queue_id: str) -> bytes:
    """The stored header block of ``queue_id`` (b"" if none, or no such message)."""
    row = conn.execute(
        "SELECT header_block FROM messages WHERE queue_id = ?", (queue_id,)
    ).fetchone()
    return b"" if row is None or row[0] is None else bytes(row[0])


def inline_body(conn: sqlite3.Connection, queue_id: str) -> bytes | None:
    row = conn.execute("SELECT data FROM bodies WHERE queue_id = ?", (queue_id,)).fetchone()
    return None if row is None else bytes(row[0])


def inline_among(conn: sqlite3.Connection, queue_ids: Sequence[str]) -> set[str]:
    """The ids in ``queue_ids`` whose body is inline."""
    found: set[str] = set()
    for start in range(0, len(queue_ids), MAX_IN_PARAMS):
        chunk = queue_ids[start : start + MAX_IN_PARAMS]
        marks = ",".join("?" * len(chunk))
        found.update(
            str(r[0])
            for r in conn.execute(f"SELECT queue_id FROM bodies WHERE queue_id IN ({marks})", chunk)
        )
    return found


def file_backed_ids(conn: sqlite3.Connection) -> set[str]:
    """The messages whose body is a file in msg/ (no ``bodies`` row).  Asked of SQLite
    rather than as "all ids minus inline ids" in Python: start-up then holds sets the
    size of the spilled messages, not two of the whole queue (100,000 queued small
    messages cost the server about 20 MiB of peak memory that way)."""
    query = "SELECT queue_id FROM messages WHERE queue_id NOT IN (SELECT queue_id FROM bodies)"
    return {str(r[0]) for r in conn.execute(query)}


def update(
    conn: sqlite3.Connection,
    queue_id: str,
    next_attempt: float,
    attempts: int,
    pending: int,
    states: list[tuple[object, ...]],
) -> bool:
    """Persist delivery state; False if the message does not exist."""
    cur = conn.execute(
        "UPDATE messages SET next_attempt = ?, attempts = ?, pending = ? WHERE queue_id = ?",
        (next_attempt, attempts, pending, queue_id),
    )
    if cur.rowcount == 0:
        return False
    conn.executemany(
        "UPDATE recipients SET status = ?, attempts = ?, reply_code = ?, reply_enhanced = ?,"
        " reply_text = ?, delay_warned = ? WHERE queue_id = ? AND position = ?",
        states,
    )
    return True


def insert_attempts(conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
    conn.executemany(
        "INSERT INTO attempts (queue_id, position, at, status, reply_code, reply_enhanced,"
        " reply_text, remote_host, session) VALUES (?,?,?,?,?,?,?,?,?)",
        rows,
    )


def attempts(conn: sqlite3.Connection, queue_id: str) -> list[Attempt]:
    return [
        Attempt(
            position=int(r[0]),
            at=float(r[1]),
            status=RecipientStatus(str(r[2])),
            reply=RemoteReply(int(r[3]), str(r[4]), str(r[5])),
            remote_host=None if r[6] is None else str(r[6]),
            session=_sessionjson.load(r[7]),
        )
        for r in conn.execute(
            "SELECT position, at, status, reply_code, reply_enhanced, reply_text, remote_host,"
            " session FROM attempts WHERE queue_id = ? ORDER BY rowid",
            (queue_id,),
        )
    ]


def claim(conn: sqlite3.Connection, now: float, limit: int, until: float, owner: str) -> list[str]:
    """Writer thread, in a transaction: lease the due, unleased messages; their ids in
    due order.  Only ids: the messages are read afterwards on the reader connection,
    so the batch's transaction (and the 250s waiting on it) stays short."""
    ids = [
        str(r[0])
        for r in conn.execute(
            "SELECT queue_id FROM messages WHERE pending > 0 AND next_attempt <= ?"
            " AND (lease_until IS NULL OR lease_until <= ?) AND held_at IS NULL"
            " ORDER BY next_attempt, queue_id LIMIT ?",
            (now, now, limit),
        )
    ]
    conn.executemany(
        "UPDATE messages SET lease_owner = ?, lease_until = ? WHERE queue_id = ?",
        ((owner, until, qid) for qid in ids),
    )
    return ids


def set_lease(
    conn: sqlite3.Connection, queue_ids: Sequence[str] | None, owner: str, until: float | None
) -> list[str]:
    """Renew (``until`` set) or release (None) ``owner``'s leases; the ids changed."""
    owner_until = None if until is None else owner
    if queue_ids is None:
        rows = conn.execute(
            "UPDATE messages SET lease_owner = ?, lease_until = ? WHERE lease_owner = ?"
            " RETURNING queue_id",
            (owner_until, until, owner),
        ).fetchall()
        return [str(r[0]) for r in rows]
    changed = []
    for qid in queue_ids:
        cur = conn.execute(
            "UPDATE messages SET lease_owner = ?, lease_until = ?"
            " WHERE queue_id = ? AND lease_owner = ?",
            (owner_until, until, qid, owner),
        )
        if cur.rowcount:
            changed.append(qid)
    return changed


def with_bodies(
    conn: sqlite3.Connection, queue_ids: Sequence[str]
) -> list[tuple[SpooledMessage, bytes | None]]:
    """Reader: the messages ``queue_ids`` (in that order, missing ones left out) with
    their inline bodies (after their header block), one query for all bodies."""
    rows: list[Sequence[object]] = []
    bodies: dict[str, bytes] = {}
    for start in range(0, len(queue_ids), MAX_IN_PARAMS):
        chunk = list(queue_ids[start : start + MAX_IN_PARAMS])
        marks = ",".join("?" * len(chunk))
        rows += conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE queue_id IN ({marks})", chunk
        ).fetchall()
        for qid, data in conn.execute(
            f"SELECT queue_id, data FROM bodies WHERE queue_id IN ({marks})", chunk
        ):
            bodies[str(qid)] = bytes(data)
    order = {qid: i for i, qid in enumerate(queue_ids)}
    rows.sort(key=lambda row: order[str(row[0])])
    return [
        (m, None if (body := bodies.get(m.queue_id)) is None else m.header_block + body)
        for m in _with_recipients(conn, rows)
    ]


def next_due(conn: sqlite3.Connection, now: float) -> float | None:
    row = conn.execute(  # walks the messages_due index, stops at the first unleased
        "SELECT next_attempt FROM messages WHERE pending > 0"
        " AND (lease_until IS NULL OR lease_until <= ?) AND held_at IS NULL"
        " ORDER BY next_attempt LIMIT 1",
        (now,),
    ).fetchone()
    return None if row is None else float(row[0])


def delete(conn: sqlite3.Connection, queue_id: str) -> None:
    conn.execute("DELETE FROM messages WHERE queue_id = ?", (queue_id,))


def delete_many(conn: sqlite3.Connection, queue_ids: Iterable[str]) -> None:
    conn.executemany("DELETE FROM messages WHERE queue_id = ?", ((q,) for q in queue_ids))


def load(conn: sqlite3.Connection, queue_id: str) -> SpooledMessage | None:
    row = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE queue_id = ?", (queue_id,)
    ).fetchone()
    return None if row is None else _with_recipients(conn, [row])[0]


def due(conn: sqlite3.Connection, now: float, limit: int) -> list[SpooledMessage]:
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE pending > 0 AND next_attempt <= ?"
        " AND held_at IS NULL ORDER BY next_attempt, queue_id LIMIT ?",
        (now, limit),
    ).fetchall()
    return _with_recipients(conn, rows)


def page(conn: sqlite3.Connection, after: str, limit: int) -> list[SpooledMessage]:
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE queue_id > ? ORDER BY queue_id LIMIT ?",
        (after, limit),
    ).fetchall()
    return _with_recipients(conn, rows)


# -- administration (``SpoolStore.scan`` and the operator's writes) ------------------------


def _entries(conn: sqlite3.Connection, rows: list[Sequence[object]]) -> list[QueueEntry]:
    return [
        QueueEntry(
            message,
            held_since=None if row[14] is None else float(row[14]),  # type: ignore[arg-type]
            lease_owner=None if row[15] is None else str(row[15]),
            lease_until=None if row[16] is None else float(row[16]),  # type: ignore[arg-type]
        )
        for message, row in zip(_with_recipients(conn, rows), rows, strict=True)
    ]


def entry_page(conn: sqlite3.Connection, after: str, limit: int) -> list[QueueEntry]:
    rows = conn.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM messages WHERE queue_id > ? ORDER BY queue_id LIMIT ?",
        (after, limit),
    ).fetchall()
    return _entries(conn, rows)


def entry(conn: sqlite3.Connection, queue_id: str) -> QueueEntry | None:
    row = conn.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM messages WHERE queue_id = ?", (queue_id,)
    ).fetchone()
    return None if row is None else _entries(conn, [row])[0]


def set_hold(conn: sqlite3.Connection, queue_id: str, since: float | None) -> bool:
    """Hold (``since`` set; an earlier hold keeps its time) or unhold; False if unknown."""
    if since is None:
        sql = "UPDATE messages SET held_at = NULL WHERE queue_id = ?"
        return conn.execute(sql, (queue_id,)).rowcount > 0
    sql = "UPDATE messages SET held_at = COALESCE(held_at, ?) WHERE queue_id = ?"
    return conn.execute(sql, (since, queue_id)).rowcount > 0


def retry(conn: sqlite3.Connection, now: float, queue_ids: Sequence[str] | None) -> list[str]:
    """Pending messages (all, or ``queue_ids``) due no later than ``now``; the ids."""
    sql = "UPDATE messages SET next_attempt = MIN(next_attempt, ?) WHERE pending > 0"
    if queue_ids is None:
        return sorted(str(r[0]) for r in conn.execute(sql + " RETURNING queue_id", (now,)))
    found = []
    for qid in queue_ids:
        if conn.execute(sql + " AND queue_id = ?", (now, qid)).rowcount:
            found.append(qid)
    return found


def delete_unleased(conn: sqlite3.Connection, queue_id: str, now: float) -> str:
    """``SpoolStore.delete``: "missing", "busy" (a live lease), or "inline"/"file" (the
    body form of the message deleted, so the caller knows whether to unlink a file)."""
    row = conn.execute(
        "SELECT lease_until FROM messages WHERE queue_id = ?", (queue_id,)
    ).fetchone()
    if row is None:
        return "missing"
    if row[0] is not None and float(row[0]) > now:
        return "busy"
    had_inline_body = delete_body(conn, queue_id)
    delete(conn, queue_id)
    return "inline" if had_inline_body else "file"
