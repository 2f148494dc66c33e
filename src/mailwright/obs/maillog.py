"""The mail log: one line per mail event, greppable by queue id (or session id).

Modelled on Postfix's maillog and chasquid's ``maillog``: an operator answers "what
happened to this message?" with ``grep <queue id>``.  Text lines look like::

    2026-11-21T12:00:00.123Z Q5f2c: accepted from=<a@b> size=123 nrcpt=1 to=<c@d> ...

— a UTC timestamp with milliseconds, the id (``-`` when an event has none), a colon,
the event name and ``key=value`` pairs.  A value is double-quoted (with ``\\"`` and
``\\\\`` escapes) when it is empty or contains white space or a quote.  With
``json_format`` each line is instead one JSON object with the same keys plus ``ts``,
``id`` and ``event``; numbers stay numbers and address lists are arrays.

Log injection: HELO names, addresses and reasons come from the peer.  Every control
character (C0, DEL, C1, and the Unicode line/paragraph separators that some viewers
break lines on) is written as a backslash escape, and so is the backslash itself, so
no value can end a line early or forge the start of another one.

Writes are line-buffered and serialised by a lock; a file is opened in append mode
(``O_APPEND``: concurrent writers and logrotate's copytruncate stay safe).  A failing
log write (disk full) is reported on the debug log and never breaks mail handling.

Order: several processes write one log (the server or its session processes write
``accepted``; the delivery worker, or the in-process runner, writes ``delivered``,
``deferred``, ``bounced``), each with its own buffer.  For one queue id the lines
still appear in the order the events happened, because nobody may deliver a message
before its ``accepted`` line is in the file: whoever tells the queue runner about new
mail flushes this log first (``runtime.workerlink.DeliveryWorker``, ``runtime.sessions.Reports``;
in one process the runner writes to the same buffer, after the line), and the runner
leaves a fresh message that a due scan finds before it was told about it alone for
``queue.runner.FRESH_HOLD`` seconds.

Rotation: ``reopen()`` writes what is buffered to the file it has, then opens the
configured path again, so after a rename (logrotate without ``copytruncate``) lines go
to a new file and none is lost or written twice.  Every process that writes the log
reopens it on ``SIGUSR1``, and on ``SIGHUP`` (which also reloads the TLS
certificates); the server passes the signal on to its session processes (control line
``o``) and to the delivery worker, so ``kill -USR1 <server pid>`` is enough, and
``systemctl kill -s USR1`` (every process of the unit) is harmless.  Standard error
needs no reopening: ``reopen()`` is a no-op for it and for a stream given by the caller.
``contrib/mailwright.logrotate`` is the logrotate configuration.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import select
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from mailwright.config import LogConfig
from mailwright.smtp import Reply

log = logging.getLogger(__name__)

NO_ID = "-"  # the id column of events that belong to no session or message
STDERR_PATH = "-"  # LogConfig.mail_log value meaning standard error
_SPECIAL_ESCAPES = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}
_LINE_BREAKERS = frozenset("\x85\u2028\u2029")  # NEL, LINE/PARAGRAPH SEPARATOR


def _escape_char(ch: str) -> str:
    if ch in _SPECIAL_ESCAPES:
        return _SPECIAL_ESCAPES[ch]
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"\\x{code:02x}"
    if ch in _LINE_BREAKERS or 0xD800 <= code <= 0xDFFF:  # separators, lone surrogates
        return f"\\u{code:04x}"
    return ch


def escape_control(value: str) -> str:
    """``value`` with backslashes and control/line-break characters escaped."""
    if value.isprintable() and "\\" not in value:
        return value  # the common case: nothing to do
    return "".join(_escape_char(ch) for ch in value)


# White space (str.isspace's set: \s in a str pattern) or a quote: the value is quoted.
_NEEDS_QUOTES = re.compile(r'[\s"]')


def _quote(value: str) -> str:
    value = escape_control(value)
    if value and _NEEDS_QUOTES.search(value) is None:
        return value
    return '"' + value.replace('"', '\\"') + '"'


def _bracket(address: str) -> str:
    return f"<{address}>"


_second_cache: tuple[int, str] = (-1, "")


def format_timestamp(when: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-21T12:00:00.123Z``.

    The date part is formatted once per second (several lines per message share it)."""
    global _second_cache
    millis = int(when * 1000)
    second = millis // 1000
    cached_second, prefix = _second_cache
    if second != cached_second:
        prefix = f"{datetime.fromtimestamp(second, UTC):%Y-%m-%dT%H:%M:%S}"
        _second_cache = (second, prefix)
    return f"{prefix}.{millis % 1000:03d}Z"


def _peer(peer: object) -> str:
    if isinstance(peer, tuple | list) and peer:
        host = str(peer[0])
        if len(peer) < 2:
            return host
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)


@functools.lru_cache(maxsize=256)  # a handful of stats keys, logged per session
def _safe_key(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in str(key)) or "_"


Value = str | int | float | list[str] | None


# A buffered log writes at once when this many lines are waiting.
MAX_PENDING_LINES = 512
# Several processes write one mail log (session processes, the delivery worker).  An
# append to a regular file is one atomic write whatever its size; to a pipe or socket
# (stderr under a service manager) only writes of at most PIPE_BUF bytes are (POSIX),
# so there batches go out in whole lines of at most this many characters (UTF-8: four
# bytes a character at most) and lines of two processes never interleave.
ATOMIC_WRITE_CHARS = getattr(select, "PIPE_BUF", 512) // 4


def _is_regular_file(stream: TextIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # no descriptor (StringIO): one writer
        return True


def _atomic_chunks(text: str) -> list[str]:
    """``text`` (whole lines) cut at line ends into pieces of ATOMIC_WRITE_CHARS at most;
    a longer line is a piece alone."""
    chunks: list[str] = []
    start = 0
    while len(text) - start > ATOMIC_WRITE_CHARS:
        cut = text.rfind("\n", start, start + ATOMIC_WRITE_CHARS)
        if cut < 0:  # one line longer than the limit
            cut = text.find("\n", start + ATOMIC_WRITE_CHARS)
            if cut < 0:
                break
        chunks.append(text[start : cut + 1])
        start = cut + 1
    if start < len(text):
        chunks.append(text[start:])
    return chunks


class MailLog:
    """The mail log.  ``stream_or_path``: an open text stream, a path, or "-" (stderr)."""

    def __init__(
        self,
        stream_or_path: TextIO | str | Path,
        json_format: bool = False,
        clock: Callable[[], float] = time.time,
        *,
        buffered: bool = False,
    ) -> None:
        self.json_format = json_format
        # Buffered: lines collect in memory and reach the file on flush() (the app
        # calls it every LogConfig.flush_interval) or when MAX_PENDING_LINES pile up.
        # One write per batch instead of one per line keeps logging off the hot path;
        # a crash loses at most the last interval's lines, never mail.
        self.buffered = buffered
        self._pending: list[str] = []
        self._clock = clock
        self._lock = threading.Lock()
        self._owned = False
        self._failed = False
        self._path: Path | None = None  # the file we opened, and reopen
        if isinstance(stream_or_path, str | Path):
            if str(stream_or_path) == STDERR_PATH:
                self._stream: TextIO = sys.stderr
            else:
                self._path = Path(stream_or_path)
                self._stream = self._open(self._path)
                self._owned = True
        else:
            self._stream = stream_or_path
        self._chunked = not _is_regular_file(self._stream)

    @staticmethod
    def _open(path: Path) -> TextIO:
        path.parent.mkdir(parents=True, exist_ok=True)
        # We flush per write (a line, or a buffered batch); backslashreplace: never
        # fail to encode.
        return open(path, "a", encoding="utf-8", errors="backslashreplace")

    @classmethod
    def from_config(cls, config: LogConfig, data_dir: Path) -> MailLog:
        """Open the configured mail log; a relative path is under ``data_dir``."""
        buffered = config.flush_interval > 0
        if config.mail_log == STDERR_PATH:
            return cls(STDERR_PATH, config.json_format, buffered=buffered)
        return cls(Path(data_dir) / config.mail_log, config.json_format, buffered=buffered)

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._owned and not self._stream.closed:
                self._stream.close()

    def reopen(self) -> None:
        """Open the log file's path again (after logrotate renamed it; see the module
        docstring).  Buffered lines go to the old file first: they happened before.
        If the path cannot be opened, logging goes on to the old file (reported on the
        debug log) and the next reopen tries again."""
        if self._path is None or self._stream.closed:
            return  # standard error or a caller's stream (or closed): nothing to reopen
        self.flush()
        try:
            stream = self._open(self._path)
        except OSError as exc:
            log.error("cannot reopen the mail log %s: %s", self._path, exc)
            return
        with self._lock:
            old, self._stream = self._stream, stream
            self._chunked = not _is_regular_file(stream)
        if not old.closed:
            old.close()

    # -- formatting -----------------------------------------------------------------

    def format(self, ident: str | None, event: str, fields: dict[str, Value]) -> str:
        """One log line (with its newline) for ``event``; ``None`` values are left out."""
        ts = format_timestamp(self._clock())
        ident = ident or NO_ID
        if self.json_format:
            fields = {k: v for k, v in fields.items() if v is not None}
            obj: dict[str, Value] = {"ts": ts, "id": ident, "event": event, **fields}
            line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
            # json escapes C0 controls; escape the separators some tools break lines on.
            for ch in _LINE_BREAKERS:
                line = line.replace(ch, f"\\u{ord(ch):04x}")
            return line + "\n"
        parts = [ts, f"{escape_control(ident)}:", event]
        for key, value in fields.items():
            if value is None:
                continue
            if isinstance(value, list):
                value = ",".join([f"<{a}>" for a in value])
            parts.append(f"{key}={_quote(value if isinstance(value, str) else str(value))}")
        return " ".join(parts) + "\n"

    def _text_fields(self, fields: dict[str, Value], addresses: Iterable[str]) -> None:
        # Addresses show as <a@b> in text, so the null sender <> is visible.
        if not self.json_format:
            for key in addresses:
                value = fields.get(key)
                if isinstance(value, str):
                    fields[key] = _bracket(value)

    def emit(self, ident: str | None, event: str, **fields: Value) -> None:
        """Write one event.  Never raises for I/O trouble."""
        self._text_fields(fields, ("from", "to"))
        self._add(self.format(ident, event, fields))

    def _add(self, line: str) -> None:
        if self.buffered:
            with self._lock:
                self._pending.append(line)
                if len(self._pending) < MAX_PENDING_LINES:
                    return
            self.flush()
            return
        self._write(line)

    def flush(self) -> None:
        """Write buffered lines (no-op when unbuffered or empty)."""
        with self._lock:
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending.clear()
        self._write(text)

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                if self._chunked and len(text) > ATOMIC_WRITE_CHARS:
                    for chunk in _atomic_chunks(text):
                        self._stream.write(chunk)
                        self._stream.flush()
                else:
                    self._stream.write(text)
                    self._stream.flush()
            except (OSError, ValueError) as exc:
                if not self._failed:  # report once, not once per message
                    log.error("cannot write the mail log: %s", exc)
                self._failed = True
            else:
                self._failed = False

    # -- events ---------------------------------------------------------------------

    def listening(self, address: str, port: int, role: str) -> None:
        self.emit(None, "listening", address=address, port=port, role=str(role))

    def connect(self, session_id: str, peer: object) -> None:
        if self.json_format:
            self.emit(session_id, "connect", client=_peer(peer))
            return
        # Once per connection: the line is built directly, as format() would build it.
        ts = format_timestamp(self._clock())
        self._add(f"{ts} {escape_control(session_id)}: connect client={_quote(_peer(peer))}\n")

    def disconnect(self, session_id: str, peer: object, stats: Mapping[str, object]) -> None:
        """``stats``: command counts and the like, e.g. ``{"ehlo": 1, "mail": 1}``."""
        if not self.json_format and all(type(v) is int for v in stats.values()):
            # Once per connection, so built directly (as format() would build it).
            parts = [
                format_timestamp(self._clock()),
                f"{escape_control(session_id)}:",
                "disconnect",
                f"client={_quote(_peer(peer))}",
            ]
            taken = {"client", "ts", "id", "event"}
            for key, value in stats.items():
                safe = _safe_key(key)
                if safe in taken:
                    safe = f"stats.{safe}"
                taken.add(safe)
                parts.append(f"{safe}={value}")
            self._add(" ".join(parts) + "\n")
            return
        fields: dict[str, Value] = {"client": _peer(peer)}
        for key, value in stats.items():
            safe = _safe_key(key)
            if safe in fields or safe in ("ts", "id", "event"):
                safe = f"stats.{safe}"
            fields[safe] = value if isinstance(value, int | float) else str(value)
        self.emit(session_id, "disconnect", **fields)

    def accepted(
        self,
        queue_id: str,
        mail_from: str,
        size: int,
        recipients: Iterable[str],
        peer: object,
        session_id: str,
        helo: str | None = None,
    ) -> None:
        to = list(recipients)
        if not self.json_format:
            # Once per message, so built directly (as format() would build it).
            parts = [
                format_timestamp(self._clock()),
                f"{escape_control(queue_id)}:",
                "accepted",
                f"from={_quote(f'<{mail_from}>')}",
                f"size={size}",
                f"nrcpt={len(to)}",
                f"to={_quote(','.join([f'<{a}>' for a in to]))}",
                f"client={_quote(_peer(peer))}",
            ]
            if helo is not None:
                parts.append(f"helo={_quote(helo)}")
            parts.append(f"session={_quote(session_id)}")
            self._add(" ".join(parts) + "\n")
            return
        self.emit(
            queue_id,
            "accepted",
            **{"from": mail_from},
            size=size,
            nrcpt=len(to),
            to=to,
            client=_peer(peer),
            helo=helo,
            session=session_id,
        )

    def rejected(
        self,
        session_id: str,
        peer: object,
        stage: str,
        reply: Reply | str,
        reason: str,
        mail_from: str | None = None,
        rcpt: str | None = None,
        helo: str | None = None,
    ) -> None:
        """A refused command: ``reply`` is what the peer saw, ``reason`` why (private)."""
        self.emit(
            session_id,
            "rejected",
            stage=str(stage),
            client=_peer(peer),
            helo=helo,
            **{"from": mail_from},
            to=rcpt,
            reply=str(reply),
            reason=reason,
        )

    # ``relay`` is the host that answered (Postfix's relay=, "mx[192.0.2.1]:25") and
    # ``detail`` the relay's account of the route and TLS policy; None for local mail.
    def delivered(
        self,
        queue_id: str,
        rcpt: str,
        reply: Reply | str,
        relay: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.emit(queue_id, "delivered", to=rcpt, reply=str(reply), relay=relay, detail=detail)

    def deferred(
        self,
        queue_id: str,
        rcpt: str,
        reply: Reply | str,
        next_attempt: float,
        relay: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.emit(
            queue_id,
            "deferred",
            to=rcpt,
            reply=str(reply),
            next=format_timestamp(next_attempt),
            relay=relay,
            detail=detail,
        )

    def bounced(
        self,
        queue_id: str,
        rcpt: str,
        reply: Reply | str,
        relay: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.emit(queue_id, "bounced", to=rcpt, reply=str(reply), relay=relay, detail=detail)

    def expired(self, queue_id: str, rcpt: str) -> None:
        self.emit(queue_id, "expired", to=rcpt)

    def authenticated(self, session_id: str, peer: object, user: str, mechanism: str) -> None:
        """A successful AUTH (RFC 4954): who, from where, how; never a secret."""
        self.emit(session_id, "auth", client=_peer(peer), user=user, mechanism=mechanism)
