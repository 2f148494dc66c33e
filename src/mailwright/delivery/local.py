"""Local delivery: recipients of local domains into their Maildirs.

For each recipient the ``LocalDirectory`` gives the mailboxes (after aliases,
plus-addressing, catch-all).  Each mailbox receives the message with two trace
headers prepended, in this order:

* ``Return-Path: <reverse-path>`` — RFC 5321 §4.4: the final delivery agent records
  the envelope sender there (``<>`` for the null sender of bounces);
* ``Delivered-To: <mailbox address>`` — as Postfix's local/virtual agents write it.
  It names the *final* mailbox (after alias expansion), which is what loop detection
  and mail filters use.

De-duplication: a mailbox reached by two recipients of the same message (an alias
and its member, two aliases that share a member, ``bob`` and ``bob+tag``) gets one
copy, as Postfix does for duplicate recipients; both recipients report success once
it is stored.

A recipient succeeds only when every one of its mailboxes has the message.  If one
write fails the recipient gets the (temporary) failure and is retried as a whole;
the mailboxes that already got it recognise their copy then, as does every mailbox
after a crash between the write and the spool's record of it: each copy is named
after the queue id (``maildir.DeliveryKey``, "Re-delivery after a crash" in
``maildir``).  ``new/`` recognises it for free; a look at ``cur/`` (where a reader
may have moved it) is paid only on a *re*-delivery — the message was attempted
before, or queued before this agent was built (a previous process may have written
it before it died) — never on a message's first delivery.

Errors never escape ``deliver``: an unknown recipient is a permanent 550 5.1.1, a
recipient in a domain that is not local a permanent 550 5.1.2, and every storage
error is temporary (RFC 3463: X.2.2 mailbox full for quota, X.3.1 mail system full
for a full disk, X.3.0 otherwise, including permissions, which the operator can fix).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from functools import partial
from pathlib import Path

from mailwright.accounts.directory import LocalDirectory, Mailbox
from mailwright.delivery.base import DeliveryResult, Progress
from mailwright.delivery.batch import MaildirBatcher
from mailwright.delivery.maildir import DeliveryKey, EarlierCopy, Maildir, maildir_path
from mailwright.smtp import Reply, codes
from mailwright.spool.model import Recipient, SpooledMessage

log = logging.getLogger(__name__)

MAIL_SUBDIR = "mail"  # Maildirs live in <data_dir>/mail/<domain>/<mailbox>
# Maildir objects kept per mailbox; beyond this (a huge catch-all) they are rebuilt.
MAILDIR_CACHE_MAX = 10_000


_QUOTA_ERRNOS = frozenset({getattr(errno, "EDQUOT", -1)})
_FULL_ERRNOS = frozenset({errno.ENOSPC})


def mail_root(data_dir: Path) -> Path:
    """Where the Maildirs of a server with this data folder live."""
    return Path(data_dir) / MAIL_SUBDIR


def failure_reply(exc: BaseException) -> Reply:
    """The temporary reply for a storage error; unknown errors are temporary too."""
    err = getattr(exc, "errno", None)
    if err in _QUOTA_ERRNOS:
        return codes.R452_MAILBOX_FULL
    if err in _FULL_ERRNOS:
        return codes.R452_SYSTEM_FULL
    return codes.R451_DELIVERY_FAILED


def _header_value(value: str) -> str:
    # The SMTP core never accepts CR/LF in a path, but a header is no place to trust
    # that: a stray line break would let an envelope forge headers.
    return "".join(ch for ch in value if ch >= " " and ch != "\x7f")


def trace_headers(mail_from: str, mailbox: Mailbox) -> bytes:
    """``Return-Path`` and ``Delivered-To`` lines to put in front of the message, in
    wire form (CRLF) like the spooled body: ``Maildir.stage`` writes both with LF."""
    return (
        f"Return-Path: <{_header_value(mail_from)}>\r\n"
        f"Delivered-To: {_header_value(mailbox.address)}\r\n"
    ).encode()  # UTF-8 only for SMTPUTF8 addresses (RFC 6532 §3.2)


class LocalDeliveryAgent:
    """``DeliveryAgent`` for local domains; writes Maildirs in batches (``batch``)."""

    def __init__(self, directory: LocalDirectory, mail_root: Path, hostname: str) -> None:
        self.directory = directory
        self.mail_root = Path(mail_root)
        self.hostname = hostname
        self.batcher = MaildirBatcher()
        self._ensured: set[Path] = set()
        self._maildirs: dict[Mailbox, Maildir] = {}  # built once per mailbox
        # A message queued before this moment may have been written by a previous
        # process that died before recording it: its delivery re-checks ``cur/``.
        # (Wall-clock, as the spool's ``received_at``; a clock stepped back further
        # than a restart takes skips the look at cur/, never the one at new/.)
        self.started = time.time()

    def maildir(self, mailbox: Mailbox) -> Maildir:
        maildir = self._maildirs.get(mailbox)
        if maildir is None:
            maildir = Maildir(
                maildir_path(self.mail_root, mailbox.domain, mailbox.name), self.hostname
            )
            if len(self._maildirs) < MAILDIR_CACHE_MAX:
                self._maildirs[mailbox] = maildir
        return maildir

    def ensure_all(self) -> None:
        """Create the Maildir of every configured mailbox (blocking; at start-up)."""
        for mailbox in self.directory.known_mailboxes():
            self._ensure(self.maildir(mailbox))

    def _ensure(self, maildir: Maildir) -> None:
        if maildir.root not in self._ensured:
            maildir.ensure()
            self._ensured.add(maildir.root)

    def key(self, message: SpooledMessage) -> DeliveryKey:
        """The name of ``message``'s deliveries, re-checked if this may be a re-delivery."""
        before = message.received_at < self.started
        recheck = message.attempts > 0 or before
        # Attempted before, maybe by us: look now.  Else only an ended process can
        # have written it, and a listing kept from a recent look answers.
        return DeliveryKey(
            message.queue_id, message.received_at, recheck, before and message.attempts == 0
        )

    def _stage(self, maildir: Maildir, data: bytes, key: DeliveryKey) -> str:
        """Worker thread (``MaildirBatcher``): link a fsynced copy into ``new/``."""
        self._ensure(maildir)
        try:
            return maildir.stage(data, key)
        except FileNotFoundError:
            # The folder vanished since we created it (an operator moved it away):
            # re-create it once rather than failing until the next restart.
            self._ensured.discard(maildir.root)
            self._ensure(maildir)
            return maildir.stage(data, key)

    async def _store(self, mailbox: Mailbox, data: bytes, key: DeliveryKey) -> DeliveryResult:
        maildir = self.maildir(mailbox)
        try:
            name = await self.batcher.deliver(maildir, partial(self._stage, maildir, data, key))
        except Exception as exc:  # never raise for one mailbox: report it
            log.warning("delivery to %s failed: %r", mailbox.address, exc)
            return DeliveryResult(failure_reply(exc), f"{mailbox.address}: {exc}")
        if isinstance(name, EarlierCopy):  # in new/ or cur/, from an earlier attempt
            log.info("%s: %s already holds %s", key.queue_id, mailbox.address, name)
            return DeliveryResult(
                codes.R250_DELIVERED, f"{os.path.join(maildir.root, name)} (earlier copy)"
            )
        return DeliveryResult(codes.R250_DELIVERED, os.path.join(maildir.new_dir, name))

    async def deliver(
        self,
        message: SpooledMessage,
        body: bytes,
        recipients: list[Recipient],
        progress: Progress | None = None,
    ) -> dict[str, DeliveryResult]:
        # ``progress`` goes unused: the mailboxes are written together, in
        # milliseconds, so there is no earlier answer to report.
        results: dict[str, DeliveryResult] = {}
        plan: dict[str, list[Mailbox]] = {}  # recipient address -> its mailboxes
        for rcpt in recipients:
            address = rcpt.address
            if address in results or address in plan:
                continue  # the same RCPT twice: one result
            domain = address.rpartition("@")[2] if "@" in address else None
            if domain is not None and not self.directory.is_local_domain(domain):
                results[address] = DeliveryResult(codes.R550_NOT_LOCAL, f"{domain} is not local")
                continue
            mailboxes = self.directory.resolve(address)
            if mailboxes is None:
                results[address] = DeliveryResult(codes.R550_UNKNOWN_MAILBOX, "unknown recipient")
            else:
                plan[address] = mailboxes

        unique = list(dict.fromkeys(m for boxes in plan.values() for m in boxes))
        mail_from = message.envelope.mail_from
        key = self.key(message)
        if len(unique) == 1:  # the common case: no gather, no extra tasks
            box = unique[0]
            stored = [await self._store(box, trace_headers(mail_from, box) + body, key)]
        else:
            stored = await asyncio.gather(
                *(self._store(m, trace_headers(mail_from, m) + body, key) for m in unique)
            )
        by_mailbox = dict(zip(unique, stored, strict=True))

        for address, mailboxes in plan.items():
            outcomes = [by_mailbox[m] for m in mailboxes]
            failed = [r for r in outcomes if not r.ok]
            if failed:
                results[address] = failed[0]
            else:
                results[address] = DeliveryResult(
                    codes.R250_DELIVERED, " ".join(r.reason for r in outcomes)
                )
        return results
