"""``mailwright sendmail``: the command cron, PHP, git and monitoring scripts call.

    mailwright sendmail [-t] [-i] [-f FROM] [-F NAME] [options] [RECIPIENT...]

reads a message from standard input and stores it in the queue through
``SpoolStore.put`` — the same path as a message received over SMTP — completed as
``cli.compose`` describes.  ``ln -s "$(command -v mailwright)" /usr/sbin/sendmail``
works: called as ``sendmail`` (or ``mailq``) the entry point behaves as
``mailwright sendmail`` (``mailwright queue list``).

Options, as Postfix's sendmail takes them (attached ``-fFROM`` or separate ``-f
FROM``, anywhere before ``--``):

* ``-t`` adds the recipients of To/Cc/Bcc (or the Resent- ones) to those given as
  arguments (Postfix's rule; Sendmail 8 would subtract them);
* ``-i``, ``-oi``: a line holding a single "." is text, not the end of the message;
* ``-f FROM``, ``-r FROM``: the envelope sender (``-f '<>'`` or ``-f ''``: none, for
  bounces); default ``LOGIN@smtp.hostname``.  ``-F NAME``: the display name of an
  added From: field (default: the login's GECOS name);
* ``-B 8BITMIME|7BIT`` (cron passes ``-B8BITMIME``), ``-N never|success,delay,failure``
  (RFC 3461 NOTIFY for every recipient), ``-R full|hdrs`` (RET), ``-V ENVID``;
* ``-C FILE`` the configuration (else ``$MAILWRIGHT_CONFIG``, else
  ``/etc/mailwright/mailwright.toml`` if it exists, else the embedded default);
* ``-bm`` (the default mode), ``-bp`` (list the queue, as mailq), ``-q`` (flush);
* accepted and ignored, as Postfix ignores them: ``-odi -odb -odq`` (delivery mode:
  the queue runner always delivers in the background), ``-oem`` and every other
  ``-o``/``-e`` error or queue option, ``-v`` (prints the queue id), ``-h``,
  ``-L``, ``-O``, ``-p``, ``-X``, ``-G``, ``-U``, ``-m``, ``-n``, ``-x``, ``-4``,
  ``-6``.  Other modes (``-bs``, ``-bd``, ``-bi``, ``-bv``, ``-I``) are refused.

An address without "@" (cron mails ``root``) gets ``@smtp.hostname``.  The body is
``8BITMIME`` when any byte has the high bit set; SMTPUTF8 is asked for when an
address or the header section holds UTF-8 (as Postfix's
``smtputf8_autodetect_classes = sendmail``).

After ``put`` returned (durable), the ``accepted`` line goes to the mail log with the
client ``local`` — when the log is a file: with ``mail_log = "-"`` it would land on
the caller's standard error, which cron mails to the user — and the running queue
runner is told through ``spool/wake`` (``spool.wakeup``), so delivery starts at once;
with no server running the message waits for the next start.

Exit status, from ``sysexits.h`` as sendmail's (scripts test it): 0 queued;
EX_USAGE 64 (bad option, no recipient); EX_DATAERR 65 (NUL byte, too big);
EX_NOINPUT 66 (standard input unreadable); EX_NOUSER 67 (a malformed address);
EX_SOFTWARE 70 (a bug); EX_CANTCREAT 73 (the spool cannot be created or written);
EX_TEMPFAIL 75 (storing failed for now: disk full, busy database); EX_NOPERM 77
(no permission on the spool folder); EX_CONFIG 78 (configuration).  Every error is
one line on standard error, naming the problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import pwd
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from mailwright.cli.compose import Identity, InputError, complete, header_recipients, parse, to_wire
from mailwright.cli.spoolaccess import AccessError, become_mail_user, spool_of
from mailwright.config import Config, ConfigError, load_config
from mailwright.obs.maillog import STDERR_PATH, MailLog
from mailwright.smtp import AddressError, parse_path
from mailwright.spool.model import BodyType, Envelope, Recipient
from mailwright.spool.store import SpoolError
from mailwright.spool.wakeup import notify

# sysexits.h
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

CONFIG_ENV = "MAILWRIGHT_CONFIG"
SYSTEM_CONFIG = Path("/etc/mailwright/mailwright.toml")
# Input read per system call.
READ_CHUNK = 65536
# Postfix's sendmail option letters: these take a value (attached or the next word).
_WITH_VALUE = frozenset("BCFLNORVXbefhopr")
# ... these do not, and are ignored (see the module docstring).
_IGNORED_FLAGS = frozenset("46GUcmnx")
_NOTIFY = frozenset({"SUCCESS", "DELAY", "FAILURE"})
USAGE = "usage: sendmail [-t] [-i] [-f FROM] [-F NAME] [-C CONFIG] [option...] [RECIPIENT...]"
HELP = (
    USAGE
    + """

Read one message from standard input and queue it, as sendmail does; cron, PHP's
mail(), git send-email and monitoring scripts call it.  Also works as `sendmail`
(and `mailq`) through a symlink to the mailwright command.

Options:
  -t          recipients from the To, Cc and Bcc fields (Bcc is removed)
  -i, -oi     a line with a single "." does not end the message
  -f FROM     the envelope sender (also -fFROM); default: the login user
  -F NAME     the full name for an added From field
  -C FILE     the configuration (default: $MAILWRIGHT_CONFIG, then
              /etc/mailwright/mailwright.toml)
  -B 8BITMIME|7BIT, -N NOTIFY, -R full|hdrs, -V ENVID   as sendmail's
  -bm (the default), -bp (list the queue, as mailq); -odi -oem -v ... are ignored

Date, Message-ID and From are added when missing.

Exit status (sysexits.h): 0 queued; 64 usage; 65 bad input (NUL byte, too big);
67 bad address; 73 or 77 the spool cannot be written; 75 try again later;
78 configuration error.

Examples:
  printf 'To: alice@example.org\nSubject: hi\n\nHello\n' | sendmail -t -i
  mailwright sendmail -f me@example.org -F 'Build Bot' -i bob@example.org < report.txt
  ln -s "$(command -v mailwright)" /usr/sbin/sendmail"""
)


class Exit(Exception):
    """End with ``status`` and the one-line ``message`` (none for success)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Options:
    recipients: list[str] = field(default_factory=list)
    from_headers: bool = False  # -t
    dot_ends: bool = True  # without -i / -oi
    sender: str | None = None  # -f / -r; "" = the null sender
    full_name: str | None = None  # -F
    config: Path | None = None  # -C
    body_type: BodyType | None = None  # -B
    notify: tuple[str, ...] = ()  # -N
    ret: str | None = None  # -R
    envid: str | None = None  # -V
    mode: str = "m"  # -b: m (mail), p (list the queue); "q" for -q
    verbose: bool = False


def parse_args(argv: list[str]) -> Options:
    """Sendmail's options (Postfix's letters); raises ``Exit(EX_USAGE)``."""
    opts = Options()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            opts.recipients.extend(args[i:])
            break
        if arg in ("--help", "-?"):
            raise Exit(EX_OK, HELP)
        if not arg.startswith("-") or arg == "-":
            opts.recipients.append(arg)
            continue
        letter, value = arg[1], arg[2:]
        if letter == "q":  # -q, -q30m, -qR...: process the queue now (Postfix: flush)
            opts.mode = "q"
            continue
        if letter in _WITH_VALUE:
            if not value:
                if i >= len(args):
                    raise Exit(EX_USAGE, f"option -{letter} needs a value")
                value = args[i]
                i += 1
            _take(opts, letter, value)
            continue
        for flag in arg[1:]:  # flags may be bundled: -ti
            if flag == "t":
                opts.from_headers = True
            elif flag == "i":
                opts.dot_ends = False
            elif flag == "v":
                opts.verbose = True
            elif flag in ("I",):
                raise Exit(EX_USAGE, "-I (newaliases) is not supported: aliases are in the config")
            elif flag not in _IGNORED_FLAGS:
                raise Exit(EX_USAGE, f"unknown option -{flag}")
    return opts


def _take(opts: Options, letter: str, value: str) -> None:
    if letter in "fr":
        opts.sender = "" if value in ("<>", "") else value.removeprefix("<").removesuffix(">")
    elif letter == "F":
        opts.full_name = value
    elif letter == "C":
        opts.config = Path(value)
    elif letter == "o":
        if value == "i":
            opts.dot_ends = False
        # every other -o (-oem, -odb, -om, -oA...) is accepted and ignored
    elif letter == "b":
        if value not in ("m", "p"):
            raise Exit(EX_USAGE, f"mode -b{value} is not supported (only -bm and -bp)")
        opts.mode = value
    elif letter == "B":
        kind = value.upper()
        if kind not in ("8BITMIME", "7BIT"):
            raise Exit(EX_USAGE, f"-B {value}: expected 8BITMIME or 7BIT")
        opts.body_type = BodyType.EIGHT_BIT_MIME if kind == "8BITMIME" else BodyType.SEVEN_BIT
    elif letter == "N":
        words = tuple(w.strip().upper() for w in value.split(","))
        if words != ("NEVER",) and not (words and set(words) <= _NOTIFY):
            raise Exit(EX_USAGE, f"-N {value}: expected never, or success,delay,failure")
        opts.notify = words
    elif letter == "R":
        if value.upper() not in ("FULL", "HDRS"):
            raise Exit(EX_USAGE, f"-R {value}: expected full or hdrs")
        opts.ret = value.upper()
    elif letter == "V":
        if not value.isascii() or not value.isprintable() or len(value) > 100:
            raise Exit(EX_USAGE, "-V: an envelope id is up to 100 printable ASCII characters")
        opts.envid = value
    # -e, -h, -L, -O, -p, -X: accepted and ignored


def load(opts: Options) -> Config:
    path = opts.config
    if path is None and os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
    if path is None and SYSTEM_CONFIG.exists():
        path = SYSTEM_CONFIG
    if path is None:
        return Config.embedded()
    try:
        return load_config(path)
    except ConfigError as exc:
        raise Exit(EX_CONFIG, str(exc).splitlines()[0]) from exc


def _identity(opts: Options, hostname: str) -> tuple[Identity, str]:
    """(who submits, envelope sender) — taken before switching to the server's user."""
    uid = os.getuid()
    try:
        entry = pwd.getpwuid(uid)
        login, gecos = entry.pw_name, entry.pw_gecos.split(",")[0]
    except KeyError:  # a uid without a passwd entry (a container)
        login, gecos = f"uid{uid}", ""
    own = f"{login}@{hostname}"
    sender = own if opts.sender is None else opts.sender
    name = gecos if opts.full_name is None else opts.full_name
    return Identity(uid, sender or own, name), sender


def _address(text: str, hostname: str, *, what: str, status: int) -> str:
    """A checked address; "@hostname" added to a bare login (cron mails ``root``)."""
    qualified = text if "@" in text else f"{text}@{hostname}"
    try:
        parsed = parse_path(f"<{qualified}>", allow_null=False)
    except AddressError as exc:
        raise Exit(status, f"{what} {text!r}: {exc}") from exc
    assert parsed is not None
    return str(parsed)


def read_input(limit: int) -> bytes:
    """Standard input, refusing more than ``limit`` bytes without reading it all."""
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := sys.stdin.buffer.read(READ_CHUNK):
            size += len(chunk)
            if size > limit:
                raise Exit(
                    EX_DATAERR, f"message too big (limit {limit} bytes: smtp.max_message_size)"
                )
            chunks.append(chunk)
    except OSError as exc:
        raise Exit(
            EX_NOINPUT, f"cannot read the message from standard input: {exc.strerror}"
        ) from exc
    return b"".join(chunks)


def _spool_failure(exc: SpoolError, folder: Path) -> Exit:
    """Map a spool error to sendmail's exit status; the text names the folder or file."""
    cause = exc.__cause__
    if isinstance(cause, PermissionError):
        return Exit(EX_NOPERM, f"no permission: {exc}")
    if isinstance(cause, OSError) and cause.errno in (errno.ENOENT, errno.ENOTDIR, errno.EROFS):
        return Exit(EX_CANTCREAT, str(exc))
    if str(exc).startswith("cannot open spool"):
        return Exit(EX_CANTCREAT, str(exc))
    return Exit(EX_TEMPFAIL, f"cannot store the message in {folder} (try again later): {exc}")


def submit(opts: Options, config: Config, data: bytes, who: Identity, sender: str) -> str:
    """Store the message; returns its queue id.  Raises ``Exit``."""
    hostname = config.smtp.hostname
    mail_from = _address(sender, hostname, what="sender", status=EX_USAGE) if sender else ""
    try:
        wire = to_wire(data, dot_ends=opts.dot_ends)
    except InputError as exc:
        raise Exit(EX_DATAERR, str(exc)) from exc
    parsed = parse(wire)
    wanted = list(opts.recipients)
    if opts.from_headers:
        wanted += header_recipients(parsed)
    rcpts: dict[str, str] = {}
    for text in wanted:
        address = _address(text, hostname, what="recipient", status=EX_NOUSER)
        rcpts.setdefault(address.lower(), address)
    if not rcpts:
        raise Exit(EX_USAGE, "no recipients: give them as arguments, or -t to read To/Cc/Bcc")
    spool = spool_of(config)
    folder = spool.root

    async def store() -> str:
        await spool.open()
        try:
            writer = spool.new_message()
            message = complete(parsed, hostname=hostname, queue_id=writer.queue_id, who=who)
            if len(message) > config.smtp.max_message_size:
                writer.abort()
                raise Exit(
                    EX_DATAERR,
                    f"message too big ({len(message)} bytes; smtp.max_message_size is "
                    f"{config.smtp.max_message_size})",
                )
            section = message.partition(b"\r\n\r\n")[0]
            addresses = [mail_from, *rcpts.values()]
            eight_bit = not message.isascii() or opts.body_type is BodyType.EIGHT_BIT_MIME
            envelope = Envelope(
                mail_from=mail_from,
                recipients=tuple(Recipient(a, opts.notify) for a in rcpts.values()),
                body_type=BodyType.EIGHT_BIT_MIME if eight_bit else BodyType.SEVEN_BIT,
                smtputf8=not all(a.isascii() for a in addresses) or not section.isascii(),
                ret=opts.ret,
                envid=opts.envid,
                client_address="local",
            )
            writer.write(message)
            stored = await spool.put(writer, envelope)
        finally:
            await spool.close()
        _log_accepted(config, stored.queue_id, mail_from, stored.size, list(rcpts.values()))
        with contextlib.suppress(OSError):
            notify(folder, [stored.queue_id])
        return stored.queue_id

    try:
        return asyncio.run(store())
    except SpoolError as exc:
        raise _spool_failure(exc, folder) from exc


def _log_accepted(config: Config, qid: str, sender: str, size: int, rcpts: list[str]) -> None:
    """The ``accepted`` line, when the mail log is a file (see the module docstring)."""
    if config.log.mail_log == STDERR_PATH:
        return
    try:
        maillog = MailLog.from_config(config.log, config.data_dir)
    except OSError:
        return  # the message is queued; a log we cannot open must not make it fail
    try:
        maillog.accepted(qid, sender, size, rcpts, "local", f"sendmail.{os.getpid()}")
    finally:
        maillog.close()


def run(argv: list[str]) -> int:
    """The whole command; returns the exit status."""
    try:
        opts = parse_args(argv)
        config = load(opts)
        if opts.mode in ("p", "q"):
            return _queue_command(opts)
        if not opts.recipients and not opts.from_headers:  # before waiting on stdin
            raise Exit(EX_USAGE, "no recipients: give them as arguments, or -t to read To/Cc/Bcc")
        who, sender = _identity(opts, config.smtp.hostname)
        try:
            become_mail_user(config)
        except AccessError as exc:
            raise Exit(EX_CONFIG, str(exc)) from exc
        data = read_input(config.smtp.max_message_size * 2)  # CRLF may grow it
        qid = submit(opts, config, data, who, sender)
        if opts.verbose:
            print(f"mailwright: queued as {qid}", file=sys.stderr)
        return EX_OK
    except Exit as done:
        if done.message:
            stream = sys.stdout if done.status == EX_OK else sys.stderr
            prefix = "" if done.status == EX_OK else "sendmail: "
            print(f"{prefix}{done.message}", file=stream)
        return done.status
    except Exception as exc:  # a bug: one line, never a traceback for a cron job
        print(f"sendmail: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EX_SOFTWARE


def _queue_command(opts: Options) -> int:
    """-bp (mailq) and -q (flush) run the queue commands with the same config."""
    from mailwright.cli.queue import queue

    args = ["list"] if opts.mode == "p" else ["flush"]
    path = opts.config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if path is None and SYSTEM_CONFIG.exists():
        path = SYSTEM_CONFIG
    if path is not None:
        args += ["-c", str(path)]
    try:
        queue.main(args, prog_name="mailq", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EX_SOFTWARE
    return EX_OK


def main(argv: list[str]) -> NoReturn:
    sys.exit(run(argv))
