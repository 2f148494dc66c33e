"""``mailwright queue list|show|retry|flush|delete|hold|release``: the mail queue.

The commands work on the spool of the configuration's ``data_dir`` while the server
runs (``cli.spoolaccess``: as the server's user, SQLite in WAL mode).  ``list`` is
``mailq``/``postqueue -p`` (``--json`` is ``postqueue -j``: one JSON object per message
and line, fields in ``queue.admin``); ``delete``/``hold``/``release`` are ``postsuper
-d/-h/-H``; ``retry``/``flush`` are ``postqueue -i``/``-f``.

Waking the runner: ``retry``, ``release`` and ``flush`` write to ``spool/wake``
(``spool.wakeup``), so a running server's queue runner looks at the queue at once;
with no server running the mail goes out when it starts.

Exit status: 0 done; 1 when a queue id names no queued message (it may just have
been delivered — postqueue/postsuper print the same kind of one-line notice) or
``delete`` found it being delivered right now; 2 for usage and configuration errors,
a malformed queue id, or a spool that cannot be opened.  Every error is one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import click

from mailwright.cli.configload import EXIT_CONFIG, load_or_exit
from mailwright.cli.spoolaccess import AccessError, become_mail_user, spool_exists, spool_of
from mailwright.config import Config
from mailwright.queue.admin import (
    QueueFilter,
    State,
    as_json,
    queue_name,
    states,
)
from mailwright.queue.timeline import attempt_record, timeline_lines
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import QueueEntry
from mailwright.spool.queueid import is_queue_id
from mailwright.spool.store import MessageBusy, SpoolError
from mailwright.spool.wakeup import notify

T = TypeVar("T")

EXIT_NOT_FOUND = 1
EMPTY = "Mail queue is empty"
ID_WIDTH = 17  # a 16-character queue id and the hold marker "!"
# Indent of a recipient line in the table: under the "Sender / recipients" column.
RECIPIENT_INDENT = ID_WIDTH + 1 + 9 + 1 + 19 + 2

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML configuration file (default: the embedded configuration, "
    "data in ./mailwright-data).",
)
ids_argument = click.argument("queue_ids", metavar="ID...", nargs=-1, required=True)


def _fail(message: str, status: int = EXIT_CONFIG) -> NoReturn:
    click.echo(f"mailwright: queue: {message}", err=True)
    sys.exit(status)


def _config(config_path: Path | None) -> Config:
    config = load_or_exit(config_path)
    try:
        become_mail_user(config)
    except AccessError as exc:
        _fail(str(exc))
    return config


def _check_ids(queue_ids: tuple[str, ...]) -> list[str]:
    for qid in queue_ids:
        if not is_queue_id(qid):
            _fail(f"{qid!r} is not a queue id")
    return list(dict.fromkeys(queue_ids))  # each once, in the order given


def _with_spool(config: Config, work: Callable[[EmbeddedSpool], Awaitable[T]]) -> T:
    """Run ``work`` on the open spool; a spool error is one line and exit 2."""

    async def main() -> T:
        spool = spool_of(config)
        await spool.open()
        try:
            return await work(spool)
        finally:
            await spool.close()

    try:
        return asyncio.run(main())
    except SpoolError as exc:
        _fail(str(exc))


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _sender(address: str) -> str:
    return address or "<>"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def queue() -> None:
    """Show and manage the mail queue (as mailq, postqueue and postsuper).

    Exit status: 0 done; 1 an ID names no queued message (or delete found it being
    delivered right now); 2 usage or configuration errors, a malformed ID, or a
    spool that cannot be opened.

    \b
    Examples:
      mailwright queue list                       # as mailq
      mailwright queue list --state deferred --domain example.net
      mailwright queue list --json | jq .         # one object per line, as postqueue -j
      mailwright queue show 1M91PGH0FPTBT27G      # envelope, per-recipient timeline
      mailwright queue hold 1M91PGH0FPTBT27G && mailwright queue release 1M91PGH0FPTBT27G
      mailwright queue flush                      # every pending message now
    """


# -- list ------------------------------------------------------------------------------


@queue.command("list")
@click.option("--sender", metavar="ADDR", help="Only mail from ADDR (<> for bounces).")
@click.option("--recipient", metavar="ADDR", help="Only mail with recipient ADDR.")
@click.option("--domain", metavar="DOMAIN", help="Only mail with a recipient in DOMAIN.")
@click.option(
    "--state",
    type=click.Choice([s.value for s in State]),
    help="Only mail with a recipient in this state.",
)
@click.option("--json", "as_json_lines", is_flag=True, help="One JSON object per message.")
@config_option
def list_(
    sender: str | None,
    recipient: str | None,
    domain: str | None,
    state: str | None,
    as_json_lines: bool,
    config_path: Path | None,
) -> None:
    """List queued messages, each with its recipients and their states.

    States: queued (never tried), deferred (tried, with the last reply), delivered,
    bounced, expired (queue lifetime ran out), held.  A "!" after the queue id marks
    a held message, a "*" one being delivered right now.  --json prints one object
    per line, as postqueue -j, and nothing for an empty queue.
    """
    config = _config(config_path)
    wanted = QueueFilter(sender, recipient, domain, None if state is None else State(state))
    if not spool_exists(config):
        if not as_json_lines:
            click.echo(EMPTY)
        return

    async def work(spool: EmbeddedSpool) -> None:
        now = time.time()
        total = shown = size = 0
        entries: AsyncIterator[QueueEntry] = spool.scan()
        async for entry in entries:
            total += 1
            if not wanted.matches(entry):
                continue
            shown += 1
            size += entry.message.size
            if as_json_lines:
                click.echo(json.dumps(as_json(entry, now)))
            else:
                if shown == 1:
                    click.echo(
                        f"{'Queue ID':<{ID_WIDTH}} {'Size':>9} {'Arrival':<19}  Sender / recipients"
                    )
                _print_entry(entry, now)
        if as_json_lines:
            return
        if total == 0:
            click.echo(EMPTY)
        elif shown == 0:
            click.echo(f"No message matches ({total} queued)")
        else:
            noun = "message" if shown == 1 else "messages"
            click.echo(f"-- {shown} {noun}, {size} bytes")

    _with_spool(config, work)


def _print_entry(entry: QueueEntry, now: float) -> None:
    message = entry.message
    marker = {"hold": "!", "active": "*"}.get(queue_name(entry, now), "")
    click.echo(
        f"{message.queue_id + marker:<{ID_WIDTH}} {message.size:>9} "
        f"{_when(message.received_at):<19}  {_sender(message.envelope.mail_from)}"
    )
    pad = " " * RECIPIENT_INDENT
    for rcpt, name in zip(message.recipients, states(entry), strict=True):
        line = f"{pad}{rcpt.recipient.address}  {name}"
        if rcpt.last_reply is not None and name is not State.DELIVERED:
            line += f"  ({rcpt.last_reply})"
        click.echo(line)


# -- show ------------------------------------------------------------------------------


@queue.command("show")
@click.argument("queue_id", metavar="ID")
@click.option("--body", is_flag=True, help="Print the whole message, not only its header.")
@click.option("--json", "as_json_object", is_flag=True, help="One JSON object (no message text).")
@config_option
def show(queue_id: str, body: bool, as_json_object: bool, config_path: Path | None) -> None:
    """Show one message: envelope, recipients' states, attempt history, header."""
    config = _config(config_path)
    (qid,) = _check_ids((queue_id,))
    if not spool_exists(config):
        _fail(f"{qid}: no such message in the queue", EXIT_NOT_FOUND)

    async def work(spool: EmbeddedSpool) -> bool:
        entry = await spool.entry(qid)
        if entry is None:
            return False
        history = await spool.attempts(qid)
        now = time.time()
        message = entry.message
        addresses = [s.recipient.address for s in message.recipients]
        if as_json_object:
            record = as_json(entry, now)
            record["history"] = [attempt_record(a, addresses) for a in history]
            click.echo(json.dumps(record))
            return True
        text = await _message_text(spool, qid)
        env = message.envelope
        click.echo(f"Queue ID:     {qid}")
        click.echo(f"Queue:        {queue_name(entry, now)}")
        click.echo(f"Arrival:      {_when(message.received_at)}")
        click.echo(f"Size:         {message.size}")
        click.echo(f"Sender:       <{env.mail_from}>")
        if entry.held_since is not None:
            click.echo(f"Held since:   {_when(entry.held_since)}")
        if entry.leased(now) and entry.lease_until is not None:
            until = _when(entry.lease_until)
            click.echo(f"Delivering:   by {entry.lease_owner} (lease until {until})")
        if message.pending:
            click.echo(f"Next attempt: {_when(message.next_attempt)}")
        click.echo(f"Attempts:     {message.attempts}")
        origin = env.client_address or "?"
        if env.client_helo:
            origin += f" (helo {env.client_helo})"
        if env.auth_user:
            origin += f", authenticated as {env.auth_user}"
        click.echo(f"Client:       {origin}")
        extras = [str(env.body_type)]
        if env.smtputf8:
            extras.append("SMTPUTF8")
        if env.ret:
            extras.append(f"RET={env.ret}")
        if env.envid:
            extras.append(f"ENVID={env.envid}")
        click.echo(f"Body:         {' '.join(extras)}")
        click.echo("Recipients:")
        for rcpt, name in zip(message.recipients, states(entry), strict=True):
            line = f"  {rcpt.recipient.address}  {name}  attempts={rcpt.attempts}"
            if rcpt.recipient.notify:
                line += f"  NOTIFY={','.join(rcpt.recipient.notify)}"
            if rcpt.recipient.orcpt:
                line += f"  ORCPT={rcpt.recipient.orcpt}"
            if rcpt.last_reply is not None:
                line += f"  ({rcpt.last_reply})"
            click.echo(line)
        click.echo("History:" if history else "History:      no attempt yet")
        for line in timeline_lines(history, addresses):
            click.echo(line)
        click.echo("")
        if body:
            click.echo(text, nl=False)
        else:
            header, _sep, _rest = text.partition("\n\n")
            click.echo(header)
        return True

    if not _with_spool(config, work):
        _fail(f"{qid}: no such message in the queue", EXIT_NOT_FOUND)


async def _message_text(spool: EmbeddedSpool, qid: str) -> str:
    """The stored message for a terminal: LF line ends, undecodable bytes escaped."""
    data = await spool.read_body(qid)
    return data.replace(b"\r\n", b"\n").decode("utf-8", "backslashreplace")


# -- changes ---------------------------------------------------------------------------


def _report(done: list[str], wanted: list[str], verb: str) -> None:
    """One line per id done; one line per id not found, then exit 1 if any."""
    for qid in done:
        click.echo(f"{qid}: {verb}")
    missing = [qid for qid in wanted if qid not in done]
    for qid in missing:
        click.echo(f"mailwright: queue: {qid}: no such message in the queue", err=True)
    if missing:
        sys.exit(EXIT_NOT_FOUND)


def _woken(config: Config) -> str:
    with contextlib.suppress(OSError):
        if notify(spool_of(config).root):
            return "the queue runner was woken"
    return "no queue runner is listening: delivered when the server runs"


@queue.command("hold")
@ids_argument
@config_option
def hold(queue_ids: tuple[str, ...], config_path: Path | None) -> None:
    """Keep messages from delivery until released (postsuper -h).

    An attempt already running finishes; a held message is never tried again until
    `queue release`, also across restarts.
    """
    config = _config(config_path)
    wanted = _check_ids(queue_ids)
    done: list[str] = []
    if spool_exists(config):

        async def work(spool: EmbeddedSpool) -> None:
            now = time.time()
            done.extend([qid for qid in wanted if await spool.hold(qid, now)])

        _with_spool(config, work)
    _report(done, wanted, "held")


@queue.command("release")
@ids_argument
@config_option
def release(queue_ids: tuple[str, ...], config_path: Path | None) -> None:
    """Release held messages (postsuper -H); they are due at their next attempt time."""
    config = _config(config_path)
    wanted = _check_ids(queue_ids)
    done: list[str] = []
    if spool_exists(config):

        async def work(spool: EmbeddedSpool) -> None:
            done.extend([qid for qid in wanted if await spool.unhold(qid)])

        _with_spool(config, work)
        if done:
            click.echo(f"mailwright: queue: {_woken(config)}", err=True)
    _report(done, wanted, "released")


@queue.command("delete")
@ids_argument
@config_option
def delete(queue_ids: tuple[str, ...], config_path: Path | None) -> None:
    """Delete messages from the queue, no bounce sent (postsuper -d).

    A message being delivered right now is not deleted (exit 1): hold it, or try
    again when the attempt has ended.
    """
    config = _config(config_path)
    wanted = _check_ids(queue_ids)
    done: list[str] = []
    busy: list[str] = []
    if spool_exists(config):

        async def work(spool: EmbeddedSpool) -> None:
            for qid in wanted:
                try:
                    if await spool.delete(qid, time.time()):
                        done.append(qid)
                except MessageBusy:
                    busy.append(qid)

        _with_spool(config, work)
    for qid in busy:
        click.echo(
            f"mailwright: queue: {qid}: being delivered right now, not deleted; "
            "try again when the attempt has ended",
            err=True,
        )
    if busy:
        for qid in done:
            click.echo(f"{qid}: deleted")
        sys.exit(EXIT_NOT_FOUND)
    _report(done, wanted, "deleted")


@queue.command("retry")
@click.argument("queue_ids", metavar="[ID...]", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every message with a pending recipient.")
@config_option
def retry(queue_ids: tuple[str, ...], every: bool, config_path: Path | None) -> None:
    """Make messages due now (postqueue -i ID); --all: every pending one (postqueue -f).

    Held messages are made due too, but stay held until released.
    """
    if bool(queue_ids) == every:
        _fail("give queue ids or --all (not both)")
    config = _config(config_path)
    wanted = None if every else _check_ids(queue_ids)
    _retry(config, wanted)


@queue.command("flush")
@config_option
def flush(config_path: Path | None) -> None:
    """Attempt every pending message now (postqueue -f): retry --all, and wake the
    running server's queue runner."""
    _retry(_config(config_path), None)


def _retry(config: Config, wanted: list[str] | None) -> None:
    done: list[str] = []
    finished: list[str] = []  # still queued, but no recipient left to try
    if spool_exists(config):

        async def work(spool: EmbeddedSpool) -> None:
            done.extend(await spool.retry(time.time(), wanted))
            for qid in wanted or ():
                if qid not in done and await spool.entry(qid) is not None:
                    finished.append(qid)

        _with_spool(config, work)
    if done:
        click.echo(f"mailwright: queue: {_woken(config)}", err=True)
    if wanted is None:
        noun = "message" if len(done) == 1 else "messages"
        click.echo(f"{len(done)} {noun} due now")
        return
    for qid in finished:
        click.echo(f"mailwright: queue: {qid}: no recipient left to deliver to", err=True)
    if finished:
        for qid in done:
            click.echo(f"{qid}: due now")
        sys.exit(EXIT_NOT_FOUND)
    _report(done, wanted, "due now")
