"""Maildir delivery, as specified at https://cr.yp.to/proto/maildir.html.

A delivery creates a uniquely named file in ``tmp/``, writes and fsyncs it, hard-links
it into ``new/`` (falling back to ``rename`` on file systems without hard links),
removes the ``tmp/`` name and fsyncs ``new/``.  Only then is it delivered, so
the delivery agent reports success only for mail that survives a crash (DESIGN
principle 3).  The fsyncs go through ``mailwright.fs.durable``, the one helper for
durable writes.

**Line endings.**  A Maildir file holds the message with LF line endings, as Postfix's
local/virtual agents and Dovecot's LDA write it; mutt, s-nail and Python's ``mailbox``
read it that way (on a CRLF file s-nail reports "Malformed message: headers and body
not separated" and mutt's pager shows ``^M``).  ``stage`` takes the message in its wire
form (CRLF, as the spool keeps it) and writes ``maildir_form(data)``: every CRLF pair
becomes LF and every other byte stays as it was.  A body taken with DATA holds no other
CR or LF (the SMTP core stops at a bare one and the session answers 521 5.5.2), and our
own header lines end in CRLF; a BDAT chunk is taken as sent (RFC 3030), so a bare CR
or LF that came that way is kept rather than guessed at (a line that ends in a bare CR
then reads as ending in CRLF: an LF file cannot tell them apart, and Postfix's local
agent writes the same).  The conversion is one ``bytes.replace`` over the whole
message, which delivery gets in one buffer from the spool, so no CRLF is ever split
between two writes: C speed, no line loop.

File names follow the modern form of the spec, as Dovecot writes them::

    <seconds>.M<usec>P<pid>Q<counter>R<random hex>.<hostname>,S=<size>,W=<vsize>

``Q`` counts deliveries in this process, ``R`` adds 64 random bits, so names stay
unique across threads, processes, restarts and clock steps.  In the host name "/" and
":" are replaced by ``\\057`` and ``\\072`` (the spec and Dovecot do so: ":" starts the
info part of a name in ``cur/``).  ``,S=`` and ``,W=`` are Dovecot's size fields
(https://doc.dovecot.org/admin_manual/mailbox_formats/maildir/): ``S`` the size of the
file, ``W`` its "virtual" size, the message with CRLF line endings, which is what IMAP
reports as RFC822.SIZE.  With both, Dovecot answers a FETCH of sizes without a stat()
or reading the file; mutt, s-nail and Python's ``mailbox`` ignore them.

**Re-delivery after a crash.**  The queue runner records a delivery in the spool only
after the agent returns, so a crash between "file linked into ``new/``" and "attempt
recorded" leaves the recipient PENDING and the restarted runner delivers it again.
Postfix's local(8) and Dovecot's LDA mostly do nothing about that: local(8) marks a
recipient done in the queue file only after the delivery, so a crash in between makes
the queue manager run it again, which appends a second mbox copy or writes a second
Maildir file under a fresh unique name; Dovecot's LDA cannot know it ran before (its
duplicate database serves Sieve's vacation and ``duplicate`` tests).  Cyrus's lmtpd
suppresses by Message-ID, which also drops distinct messages that share one.  We can
do better because the spool names the delivery: a message staged with a
``DeliveryKey`` gets a *deterministic* name in ``new/``::

    <received seconds>.M<usec>K<queue id>.<hostname>,S=<size>,W=<vsize>

Queue ids never repeat (``spool.queueid``) and a folder is one mailbox, so the name
says "this message, in this mailbox", and the unique part (up to the host name) is
the same on every attempt.  (The time in it is the arrival time, so such names sort
by arrival, not by delivery; readers must not interpret names, and Dovecot takes a
message's received date from the file's mtime, not the name.)  A re-delivery then
recognises its own earlier copy:

* in ``new/``, for free: ``link(2)`` to the same name fails with ``EEXIST`` — no extra
  system call on any delivery — and the earlier copy stands;
* in ``cur/``, where a reader moved it (Dovecot and mutt keep the base name and add
  the info part, ``cur/<base>:2,S``): that needs a look at the folder, so it is done
  only when ``DeliveryKey.recheck`` says a previous attempt *may* have written the
  file — the local agent sets it when the message was attempted before or was queued
  before this process started (``local``), never on a first delivery, so the hot path
  pays nothing.  The re-check matches the unique part only, so a copy written under
  another host name (the server renamed) is recognised too.  After a restart with a
  backlog, every queued message is such a re-delivery; one listing per message would
  make draining a large mailbox quadratic.  A message this process never attempted
  (``DeliveryKey.ended_only``) can only have been written by a process that has
  ended, before this one started, so a listing taken since then answers for all of
  them: ``Maildir`` keeps the keyed names it found (``SNAPSHOT_TTL``), and a reader
  moving a file to ``cur/`` meanwhile changes nothing (the base name stays).

``stage`` then returns the earlier copy's name as an ``EarlierCopy``, which a failed
``new/`` sync never removes (it may have been read already).  The batch still fsyncs
``new/``: a copy linked just before a crash may not have reached the disk's directory
yet, and it is now reported delivered.  The ``tmp/`` file keeps a random unique name
(a crash may leave one there, which must not block the retry), and a message staged
without a key (tests, tools) gets a random unique name in ``new/`` too.  What a
crash can still duplicate: nothing in a folder, except when a reader moved the copy
*out* of ``new/`` and ``cur/`` (another folder, or deleted it) before the re-delivery,
which then writes it again — a re-delivery of something the owner already handled,
which RFC 5321 §6.1 prefers to a loss.

Directories are created with mode 0o700 and messages 0o600: mail is private.  The
functions here block; the agent runs them in a worker thread, in batches
(``mailwright.delivery.batch``): ``stage`` does everything but the fsync of ``new/``,
which a batch then does once for all the messages it staged into that folder.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import random
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mailwright.fs.durable import DIR_MODE, FILE_MODE, ensure_dir, write_durable

MAILDIR_SUBDIRS = ("tmp", "new", "cur")
KEY_FIELD = "K"  # in a deterministic name: the queue id follows
INFO_SEPARATOR = ":"  # starts the info part of a name in cur/ (the Maildir spec)
# Seconds a Maildir keeps its listing of keyed names for ``DeliveryKey.ended_only``
# re-checks: one listing per mailbox per minute while a backlog from before a restart
# drains, then the memory goes (the next look lists again).
SNAPSHOT_TTL = 60.0
RANDOM_BITS = 64  # in the R field, as 16 hex digits
SIZE_FIELD = ",S="  # Dovecot: physical size of the file (LF line endings)
VSIZE_FIELD = ",W="  # Dovecot: virtual size, the RFC822.SIZE (CRLF line endings)
CR = b"\r"
CRLF = b"\r\n"  # line ending on the wire (RFC 5321 §2.3.8) and in the spool
LF = b"\n"  # line ending in a Maildir file
# link(2) errors meaning "this file system has no hard links": fall back to rename(2).
_NO_LINK_ERRNOS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}
)

# The unique part of a keyed name (``DeliveryKey.unique``); queue ids are upper-case
# Crockford base32 (``spool.queueid``).
_KEYED_RE = re.compile(rf"[0-9]+\.M[0-9]+{KEY_FIELD}[0-9A-Z]+\.")

_counter = itertools.count(1)
_counter_lock = threading.Lock()
# R field source: seeded from os.urandom, and again in a forked child (which would
# otherwise repeat the parent's sequence).  Not a secret, only a collision guard next
# to time, pid and counter, so one getrandom(2) per process instead of per delivery.
_random = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_random.seed)


def maildir_path(mail_root: Path, domain: str, mailbox: str) -> Path:
    """The one place that maps a mailbox to its folder: ``<mail_root>/<domain>/<mailbox>``.

    ``mail_root`` is ``<data_dir>/mail``.  Both parts are checked so that no name can
    escape the mail root (``..``, a slash or a NUL byte), whatever the config allowed.
    """
    for part in (domain, mailbox):
        if part in ("", ".", "..") or "/" in part or "\0" in part or os.sep in part:
            raise ValueError(f"{part!r} cannot be used as a Maildir path component")
    return mail_root / domain / mailbox


def safe_hostname(hostname: str) -> str:
    """The host name as the Maildir spec wants it in a file name."""
    return hostname.replace("/", "\\057").replace(":", "\\072")


def maildir_form(wire: bytes) -> bytes:
    """The message as a Maildir file holds it: every CRLF becomes LF, nothing else."""
    return wire.replace(CRLF, LF)


def virtual_size(data: bytes) -> int:
    """The size of Maildir file content ``data`` with CRLF line endings: its RFC822.SIZE.

    Counted as Dovecot counts it when it has no ``W=`` to go by: each LF without a CR
    before it is one more octet.  For a message whose wire form had only CRLF line
    endings this is the size of that wire form.
    """
    if CR not in data:  # the usual case: maildir_form left no CR at all
        return len(data) + data.count(LF)
    return len(data) + data.count(LF) - data.count(CRLF)


def unique_name(hostname: str, size: int, vsize: int, now: float | None = None) -> str:
    """A new ``<time>.M<usec>P<pid>Q<n>R<hex>.<host>,S=<size>,W=<vsize>`` file name."""
    now = time.time() if now is None else now
    seconds = int(now)
    usec = int((now - seconds) * 1_000_000)
    with _counter_lock:
        count = next(_counter)
        rand = _random.getrandbits(RANDOM_BITS)
    return (
        f"{seconds}.M{usec}P{os.getpid()}Q{count}R{rand:016x}.{safe_hostname(hostname)}"
        f"{SIZE_FIELD}{size}{VSIZE_FIELD}{vsize}"
    )


@dataclass(frozen=True, slots=True)
class DeliveryKey:
    """What names one delivery of a queued message into one folder (see "Re-delivery
    after a crash"): its queue id and arrival time, and whether an earlier attempt may
    have written it (then ``stage`` also looks in ``cur/``)."""

    queue_id: str
    received_at: float  # unix time, as the spool stores it
    recheck: bool = False
    # Only a process that has ended may have written it (queued before this one
    # started, not attempted since): a listing taken since this process started will do.
    ended_only: bool = False

    def unique(self) -> str:
        """``<seconds>.M<usec>K<queue id>.``: the part of the name before the host."""
        seconds = int(self.received_at)
        usec = int((self.received_at - seconds) * 1_000_000)
        return f"{seconds}.M{usec}{KEY_FIELD}{self.queue_id}."


class EarlierCopy(str):
    """A name ``stage`` returned for a copy an earlier attempt wrote: never unstaged."""

    __slots__ = ()


def keyed_name(key: DeliveryKey, hostname: str, size: int, vsize: int) -> str:
    """The deterministic name of ``key``'s delivery (see "Re-delivery after a crash")."""
    return f"{key.unique()}{safe_hostname(hostname)}{SIZE_FIELD}{size}{VSIZE_FIELD}{vsize}"


class Maildir:
    """One Maildir folder (``root`` holds ``tmp``, ``new`` and ``cur``)."""

    def __init__(self, root: Path, hostname: str | None = None) -> None:
        self.root = Path(root)
        self.hostname = hostname or socket.gethostname()
        # Plain strings: built once, not per delivery (pathlib costs microseconds).
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.new_dir = os.path.join(self.root, "new")
        self.cur_dir = os.path.join(self.root, "cur")
        # (monotonic time taken, unique part -> base name) of keyed names in new/, cur/.
        self._snapshot: tuple[float, dict[str, str]] | None = None

    def ensure(self) -> None:
        """Create the folder and its ``cur``/``new``/``tmp`` (mode 0o700) if missing."""
        # ensure_dir fsyncs the parent of every folder it creates: a message made
        # durable in new/ is only safe if new/ itself is recorded in its parent.
        ensure_dir(self.root, DIR_MODE)
        for sub in MAILDIR_SUBDIRS:
            ensure_dir(self.root / sub, DIR_MODE)

    def earlier_copy(self, key: DeliveryKey) -> str | None:
        """The name of a copy of ``key``'s delivery in ``new/`` or ``cur/``, if any.

        Lists both folders: only for a re-delivery (``key.recheck``), never per
        message; for an ``ended_only`` key, a listing kept from a recent look.
        """
        unique = key.unique()
        if key.ended_only:
            return self._keyed_names().get(unique)
        for entry in self._entries():
            if entry.startswith(unique):
                return entry.partition(INFO_SEPARATOR)[0]
        return None

    def _entries(self) -> list[str]:
        names: list[str] = []
        for folder in (self.new_dir, self.cur_dir):
            with contextlib.suppress(FileNotFoundError):
                names.extend(os.listdir(folder))
        return names

    def _keyed_names(self) -> dict[str, str]:
        now = time.monotonic()
        snapshot = self._snapshot
        if snapshot is not None and now - snapshot[0] < SNAPSHOT_TTL:
            return snapshot[1]
        names: dict[str, str] = {}
        for entry in self._entries():
            match = _KEYED_RE.match(entry)
            if match:
                names[match.group(0)] = entry.partition(INFO_SEPARATOR)[0]
        self._snapshot = (now, names)  # one assignment: threads see old or new
        return names

    def stage(self, data: bytes, key: DeliveryKey | None = None) -> str:
        """Write message ``data`` (wire form, CRLF) to ``tmp/`` with LF line endings,
        fsync it, link it into ``new/``; return its name.

        With a ``key`` the name in ``new/`` is ``keyed_name``'s, and a copy an earlier
        attempt left there (or in ``cur/``, if ``key.recheck``) is recognised: nothing
        is written and its name comes back as an ``EarlierCopy``.

        Everything but the final fsync of ``new/``: the message is *not* durable yet,
        and must not be reported delivered until a ``fsync_dir(new_dir)`` that starts
        after this returns has succeeded (``batch.MaildirBatcher`` syncs ``new/`` once
        for every message staged into it meanwhile).  If that
        sync fails, ``unstage`` the name.  On failure here nothing is left in ``tmp/``
        or ``new/``.  The file is fsynced *before* the link, as the spec requires: a
        crash never leaves a partial file in ``new/``, where readers would see it.
        """
        if key is not None and key.recheck:
            earlier = self.earlier_copy(key)
            if earlier is not None:
                return EarlierCopy(earlier)
        data = maildir_form(data)
        size, vsize = len(data), virtual_size(data)
        tmp_name = name = unique_name(self.hostname, size, vsize)
        if key is not None:
            name = keyed_name(key, self.hostname, size, vsize)
        tmp_path = os.path.join(self.tmp_dir, tmp_name)
        new_path = os.path.join(self.new_dir, name)
        # O_EXCL create, write, fsync; removes the partial file itself on failure.
        write_durable(tmp_path, data, FILE_MODE)
        linked = False
        try:
            try:
                os.link(tmp_path, new_path)
                linked = True
                os.unlink(tmp_path)
            except FileExistsError:
                if key is None or linked:
                    raise
                # An earlier attempt's copy (the keyed name is this delivery's own):
                # it stands, ours goes.  Not unstaged on failure: it is not ours.
                os.unlink(tmp_path)
                return EarlierCopy(name)
            except OSError as exc:
                if linked or exc.errno not in _NO_LINK_ERRNOS:
                    raise
                # rename(2) replaces an earlier copy of the same name: still one copy.
                os.rename(tmp_path, new_path)
                linked = True
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_path)
            if linked:
                with contextlib.suppress(OSError):
                    os.unlink(new_path)
            raise
        return name

    def unstage(self, name: str) -> None:
        """Remove a staged message whose ``new/`` sync failed.

        Not known to be durable, and the caller reports a temporary failure and
        retries: remove it so that the retry does not deliver a second copy.  An
        ``EarlierCopy`` stays: an earlier attempt wrote it, and it may have been read.
        """
        if isinstance(name, EarlierCopy):
            return
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.new_dir, name))
