"""The control channel between the main process and its children: one codec, both halves.

Every process kind speaks the same messages, defined once here with their encoding
(``encode``) and their decoding (``decode``/``unpack``), so the two ends of a channel
cannot disagree about a line.  Only the transports differ:

* the delivery worker's standard input, a **pipe** (a byte stream): the framed config
  first (``config_frame``), then one message per line, ``\\n``-terminated
  (``encode_stream``; the worker reads them with a ``StreamDecoder``); end of file says
  what ``Stop`` says;
* a session process's **``SOCK_SEQPACKET`` socket pair**, both ways: the config comes
  on its standard input as for the worker, then each datagram holds one or more
  messages separated by ``\\n`` (``encode_batch``/``unpack``), and an ``Adopt``
  datagram carries one descriptor per ``Adopt`` line, in order (SCM_RIGHTS,
  ``send_datagram``/``receive_datagram``).

A message is one line, ``<tag>[ <argument>...]``, ASCII:

    main -> session    ``c <listener index> <client ip>``: serve a connection
                       (``Adopt``); ``e ...``: the same, admitted over the cap: close
                       an idle session to make room, or refuse it (``make_room``)
                       ``S 1`` / ``S 0``: stress mode starts / ends (``net.stress``)
                       ``b <client ip> <seconds>``: AUTH from that IP is banned
                       ``h``: reload the TLS certificates (SIGHUP)
                       ``o``: reopen the mail log (SIGUSR1, SIGHUP; logrotate)
                       ``x``: stop (staged, within ``smtp.shutdown_grace``)
    session -> main    ``ready``; ``q <queue id>``: stored; ``r <client ip>``: a
                       connection ended; ``f <ip>`` / ``s <ip>``: AUTH failed / succeeded
    main -> worker     ``q <queue id>``: stored (``QueueRunner.announce``); ``w``: scan
                       the queue (mail may be there nobody told it of); ``o``: reopen
                       the mail log; ``x``: stop after in-flight deliveries

A line that is not a message of its direction — unknown tag, missing or extra
argument, a number that is none, too long — is a ``ControlError`` with a one-line
reason; ``unpack`` and ``StreamDecoder`` keep the good lines of a batch and return a
problem for each bad one, which the receiver logs: a bad line never ends a process.
Pickle (the config frame) is safe here: the bytes come from the parent over a private
pipe.
"""

from __future__ import annotations

import math
import os
import pickle
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from mailwright.config import Config
from mailwright.net.handover import ACCEPT_BATCH

# The config frame: an 8-byte big-endian length, then that many bytes of pickle.
CONFIG_HEADER = struct.Struct(">Q")
STDIN_FD = 0
# Largest datagram on a session process's control socket, either way (a batch of
# connections, a batch of reports); lines are short, a batch fits many times.
CONTROL_DATAGRAM_MAX = 64 * 1024
# Descriptors in one datagram: the main process hands over at most ACCEPT_BATCH at a
# time (SCM_RIGHTS carries at most 253).
MAX_FDS = ACCEPT_BATCH
# Longest message line.  The longest real one is a ban with an IPv6 address; a pipe
# line longer than this is no message and is dropped (queue ids are hints: the
# runner's scans find every message anyway).
MAX_LINE = 256
# Separates messages in a datagram and ends each on the pipe.
LINE_END = b"\n"


class ControlError(Exception):
    """Bytes that are not a control message (the reason is one line)."""


# -- the messages --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Adopt:
    """main -> session: serve the connection whose descriptor comes with this line."""

    listener: int  # index into config.listeners
    ip: str
    make_room: bool = False  # admitted over the cap: close an idle session for it

    TAGS: ClassVar[tuple[bytes, ...]] = (b"c", b"e")

    def encode(self) -> bytes:
        tag = "e" if self.make_room else "c"
        return f"{tag} {self.listener} {self.ip}".encode("ascii")


@dataclass(frozen=True, slots=True)
class Stress:
    """main -> session: stress mode starts (True) or ends (False)."""

    on: bool

    TAGS: ClassVar[tuple[bytes, ...]] = (b"S",)

    def encode(self) -> bytes:
        return b"S 1" if self.on else b"S 0"


@dataclass(frozen=True, slots=True)
class Ban:
    """main -> session: AUTH from ``ip`` is refused for ``seconds``."""

    ip: str
    seconds: float

    TAGS: ClassVar[tuple[bytes, ...]] = (b"b",)

    def encode(self) -> bytes:
        return f"b {self.ip} {self.seconds:g}".encode("ascii")


@dataclass(frozen=True, slots=True)
class ReloadTls:
    """main -> session: reload the TLS certificates (SIGHUP)."""

    TAGS: ClassVar[tuple[bytes, ...]] = (b"h",)

    def encode(self) -> bytes:
        return b"h"


@dataclass(frozen=True, slots=True)
class ReopenLog:
    """main -> session, main -> worker: reopen the mail log (SIGUSR1, SIGHUP).  A line,
    not a signal: a child still starting would die of a signal it does not handle yet."""

    TAGS: ClassVar[tuple[bytes, ...]] = (b"o",)

    def encode(self) -> bytes:
        return b"o"


@dataclass(frozen=True, slots=True)
class Stop:
    """main -> session, main -> worker: stop in order (end of file says the same)."""

    TAGS: ClassVar[tuple[bytes, ...]] = (b"x",)

    def encode(self) -> bytes:
        return b"x"


@dataclass(frozen=True, slots=True)
class Wake:
    """main -> worker: scan the queue (a session process died: mail may be there that
    nobody told the worker of)."""

    TAGS: ClassVar[tuple[bytes, ...]] = (b"w",)

    def encode(self) -> bytes:
        return b"w"


@dataclass(frozen=True, slots=True)
class Ready:
    """session -> main: built and serving; hand connections over now."""

    TAGS: ClassVar[tuple[bytes, ...]] = (b"ready",)

    def encode(self) -> bytes:
        return b"ready"


@dataclass(frozen=True, slots=True)
class Queued:
    """session -> main, main -> worker: a message was stored (its id)."""

    queue_id: str

    TAGS: ClassVar[tuple[bytes, ...]] = (b"q",)

    def encode(self) -> bytes:
        return b"q " + self.queue_id.encode("ascii")


@dataclass(frozen=True, slots=True)
class Released:
    """session -> main: a connection from ``ip`` ended (its cap slot is free)."""

    ip: str

    TAGS: ClassVar[tuple[bytes, ...]] = (b"r",)

    def encode(self) -> bytes:
        return b"r " + self.ip.encode("ascii")


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """session -> main: an AUTH attempt from ``ip`` failed (the main process bans)."""

    ip: str

    TAGS: ClassVar[tuple[bytes, ...]] = (b"f",)

    def encode(self) -> bytes:
        return b"f " + self.ip.encode("ascii")


@dataclass(frozen=True, slots=True)
class AuthSucceeded:
    """session -> main: an AUTH attempt from ``ip`` succeeded."""

    ip: str

    TAGS: ClassVar[tuple[bytes, ...]] = (b"s",)

    def encode(self) -> bytes:
        return b"s " + self.ip.encode("ascii")


Message = (
    Adopt
    | Stress
    | Ban
    | ReloadTls
    | ReopenLog
    | Stop
    | Wake
    | Ready
    | Queued
    | Released
    | AuthFailed
    | AuthSucceeded
)

# What each receiver accepts: anything else is a ControlError there.
TO_SESSION: frozenset[type[Message]] = frozenset({Adopt, Stress, Ban, ReloadTls, ReopenLog, Stop})
TO_MAIN: frozenset[type[Message]] = frozenset({Ready, Queued, Released, AuthFailed, AuthSucceeded})
TO_WORKER: frozenset[type[Message]] = frozenset({Queued, Wake, ReopenLog, Stop})


# -- decoding ------------------------------------------------------------------------


def _word(arg: str, what: str) -> str:
    if not arg or " " in arg:
        raise ControlError(f"expected one {what}, got {arg!r}")
    return arg


def _no_argument(cls: Callable[[], Message]) -> Callable[[str], Message]:
    def parse(arg: str) -> Message:
        if arg:
            raise ControlError(f"unexpected argument {arg!r}")
        return cls()

    return parse


def _adopt(make_room: bool) -> Callable[[str], Message]:
    def parse(arg: str) -> Message:
        index, _, ip = arg.partition(" ")
        if not index.isdigit():
            raise ControlError(f"expected a listener index, got {index!r}")
        return Adopt(int(index), _word(ip, "client IP"), make_room)

    return parse


def _stress(arg: str) -> Message:
    if arg not in ("0", "1"):
        raise ControlError(f"expected 0 or 1, got {arg!r}")
    return Stress(arg == "1")


def _ban(arg: str) -> Message:
    ip, _, seconds = arg.partition(" ")
    try:
        value = float(seconds)
    except ValueError:
        raise ControlError(f"expected seconds, got {seconds!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ControlError(f"expected seconds, got {seconds!r}")
    return Ban(_word(ip, "client IP"), value)


def _queued(arg: str) -> Message:
    if not (arg.isascii() and arg.isalnum()):
        raise ControlError(f"expected a queue id, got {arg!r}")
    return Queued(arg)


def _ip(cls: Callable[[str], Message]) -> Callable[[str], Message]:
    def parse(arg: str) -> Message:
        return cls(_word(arg, "client IP"))

    return parse


_PARSERS: dict[bytes, tuple[type[Message], Callable[[str], Message]]] = {
    b"c": (Adopt, _adopt(False)),
    b"e": (Adopt, _adopt(True)),
    b"S": (Stress, _stress),
    b"b": (Ban, _ban),
    b"h": (ReloadTls, _no_argument(ReloadTls)),
    b"o": (ReopenLog, _no_argument(ReopenLog)),
    b"x": (Stop, _no_argument(Stop)),
    b"w": (Wake, _no_argument(Wake)),
    b"ready": (Ready, _no_argument(Ready)),
    b"q": (Queued, _queued),
    b"r": (Released, _ip(Released)),
    b"f": (AuthFailed, _ip(AuthFailed)),
    b"s": (AuthSucceeded, _ip(AuthSucceeded)),
}


def decode(line: bytes, accept: Iterable[type[Message]] | None = None) -> Message:
    """One message from one line (no line end); ``accept``: the types this receiver
    takes (default: any).  ``ControlError`` says why the line is none."""
    if len(line) > MAX_LINE:
        raise ControlError(f"line of {len(line)} bytes, over {MAX_LINE}")
    tag, _, rest = line.partition(b" ")
    entry = _PARSERS.get(tag)
    if entry is None or (accept is not None and entry[0] not in accept):
        raise ControlError(f"unknown message {line[:40]!r}")
    try:
        arg = rest.decode("ascii")
    except UnicodeDecodeError:
        raise ControlError(f"not ASCII: {line[:40]!r}") from None
    try:
        return entry[1](arg)
    except ControlError as exc:
        raise ControlError(f"{tag.decode('ascii')}: {exc}") from None


def unpack(
    data: bytes, accept: Iterable[type[Message]] | None = None
) -> tuple[list[Message], list[str]]:
    """The messages of a datagram (lines separated by ``LINE_END``), and one problem
    for each line that is none: the good lines are kept."""
    if len(data) > CONTROL_DATAGRAM_MAX:
        return [], [f"datagram of {len(data)} bytes, over {CONTROL_DATAGRAM_MAX}"]
    messages: list[Message] = []
    problems: list[str] = []
    for line in data.split(LINE_END):
        try:
            messages.append(decode(line, accept))
        except ControlError as exc:
            problems.append(str(exc))
    return messages, problems


class StreamDecoder:
    """Messages from a byte stream of ``LINE_END``-terminated lines (the worker's pipe),
    whatever sizes the reads come in."""

    def __init__(self, accept: Iterable[type[Message]] | None = None) -> None:
        self._accept = frozenset(accept) if accept is not None else None
        self._partial = b""  # a line cut by the pipe's read size

    def feed(self, data: bytes) -> tuple[list[Message], list[str]]:
        *lines, partial = (self._partial + data).split(LINE_END)
        problems: list[str] = []
        if len(partial) > MAX_LINE:
            problems.append(f"line of over {MAX_LINE} bytes dropped")
            partial = b""
        self._partial = partial
        messages: list[Message] = []
        for line in lines:
            try:
                messages.append(decode(line, self._accept))
            except ControlError as exc:
                problems.append(str(exc))
        return messages, problems


# -- encoding ------------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """One line, without its line end."""
    return message.encode()


def encode_batch(messages: Sequence[Message]) -> bytes:
    """A datagram; ``ControlError`` if it would be over ``CONTROL_DATAGRAM_MAX``."""
    data = LINE_END.join(message.encode() for message in messages)
    if len(data) > CONTROL_DATAGRAM_MAX:
        raise ControlError(f"datagram of {len(data)} bytes, over {CONTROL_DATAGRAM_MAX}")
    return data


def encode_stream(messages: Iterable[Message]) -> bytes:
    """Lines for the pipe, each ended."""
    return b"".join(message.encode() + LINE_END for message in messages)


# -- the socket transport ------------------------------------------------------------


class TruncatedDatagram(ControlError):
    """A datagram (or its descriptors) longer than the receiver takes; ``fds`` are the
    descriptors that did arrive, for the receiver to close."""

    def __init__(self, fds: list[int]) -> None:
        super().__init__(f"datagram over {CONTROL_DATAGRAM_MAX} bytes or {MAX_FDS} descriptors")
        self.fds = fds


def send_datagram(sock: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
    """One datagram (``encode_batch``), with descriptors if any (OSError as send)."""
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def receive_datagram(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One datagram and the descriptors it carried; ``b""`` when the peer is gone.
    BlockingIOError when nothing waits.  A datagram cut short by the buffer size is
    reported as empty data with its descriptors, so the caller closes them."""
    data, fds, flags, _addr = socket.recv_fds(sock, CONTROL_DATAGRAM_MAX, MAX_FDS)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        raise TruncatedDatagram(fds)
    return data, fds


# -- the config frame ----------------------------------------------------------------


def config_frame(config: Config) -> bytes:
    """What the parent writes first on a child's standard input: the child runs exactly
    the parent's validated configuration, with no second parse that could disagree."""
    data = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
    return CONFIG_HEADER.pack(len(data)) + data


def read_exactly(fd: int, size: int) -> bytes:
    """``size`` bytes from ``fd`` with os.read: a buffered reader could take bytes of
    the lines that follow, which the event loop reads from the same fd."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            raise ControlError("the server closed the pipe before sending the configuration")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_config(fd: int = STDIN_FD) -> Config:
    """The child's half of ``config_frame``."""
    (length,) = CONFIG_HEADER.unpack(read_exactly(fd, CONFIG_HEADER.size))
    config = pickle.loads(read_exactly(fd, length))
    if not isinstance(config, Config):
        raise ControlError(f"expected a Config on the pipe, got {type(config).__name__}")
    return config
