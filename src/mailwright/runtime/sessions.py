"""A session process: SMTP sessions on connections the main process accepted.

Started by ``mailwright.net.handover.SessionProcesses`` as ``python -m
mailwright.runtime.sessions <server pid> <control fd>``; standard input carries the pickled
config (as for the delivery worker) and is then closed.  In order, the process:

1. asks the kernel to kill it when the server dies (``PR_SET_PDEATHSIG``);
2. builds what sessions share with ``compose.build_session_services``, the same code as
   in-process sessions, on the spool opened *without* recovery (the server recovered
   it and other processes write to it now), and says ``ready``;
3. serves every connection that arrives on the control socket (``Listener.adopt``),
   and reports back queue ids, ended connections and AUTH outcomes (``net.handover``
   describes the lines).  Its buffered mail log is written before each report, so
   the ``accepted`` line of a queue id is in the file before the id can reach the
   queue runner (``obs.maillog``: "Order");
4. on ``x`` or end of file stops like the server does: 421 to idle sessions, messages
   in DATA finish within ``smtp.shutdown_grace``; then closes the spool and the mail
   log and exits 0.

Each process enforces 1/N of every rate limit (``per_process_config``): together the
N processes never allow more than configured; a client whose sessions all land in one
process may get less.  The connection caps and AUTH bans are exact (the main process
keeps them).

SIGINT and SIGTERM are ignored: the server decides when sessions stop.  SIGUSR1 and
SIGHUP reopen the mail log, as the control line ``o`` does (``runtime.worker``'s
``REOPEN_SIGNALS``: ``systemctl kill -s USR1`` signals every process of the unit).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from mailwright.config import Config
from mailwright.net.handover import ACCEPT_BATCH
from mailwright.net.listener import ConnectionLimits, Listener
from mailwright.net.tls import TlsError, TlsManager
from mailwright.policy.authguard import AuthGuard
from mailwright.runtime.worker import REOPEN_SIGNALS, WorkerError, die_with_parent, read_config
from mailwright.smtp import Reply
from mailwright.spool.model import SpooledMessage

log = logging.getLogger(__name__)

# Largest control datagram from the main process (a batch of connections, or a ban).
CONTROL_DATAGRAM_MAX = 64 * 1024
# Descriptors in one datagram: the main process sends at most ACCEPT_BATCH at a time.
MAX_FDS = ACCEPT_BATCH
# Reports to the main process go out at most this often (seconds).  Each send wakes the
# main process, which cost a tenth of a session process's CPU when sent at once; a few
# ms later only delays the release of a connection cap and the worker's wake-up.
REPORT_INTERVAL = 0.002
# One report datagram at most (the main process reads up to 64 KiB).
REPORT_DATAGRAM_MAX = 32 * 1024


class SessionProcessError(Exception):
    """The session process cannot run; the message is printed as one line."""


def per_process_config(config: Config) -> Config:
    """Each of N session processes enforces 1/N of every rate and burst."""
    n = config.smtp.processes
    if n <= 1:
        return config
    abuse = config.abuse
    shares = {
        name: getattr(abuse, name) / n
        for name in (
            "ip_messages_per_minute",
            "ip_recipients_per_minute",
            "user_messages_per_minute",
            "user_recipients_per_minute",
            "burst_messages",
            "burst_recipients",
        )
    }
    return config.model_copy(update={"abuse": abuse.model_copy(update=shares)})


class Reports:
    """Lines to the main process, sent together every ``REPORT_INTERVAL``, each batch
    after ``flush_log`` wrote the mail log (the ``accepted`` lines of its queue ids)."""

    def __init__(
        self,
        control: socket.socket,
        loop: asyncio.AbstractEventLoop,
        flush_log: Callable[[], None] = lambda: None,
    ) -> None:
        self._control = control
        self._loop = loop
        self.flush_log = flush_log
        self._lines: list[bytes] = []

    def add(self, line: bytes) -> None:
        if not self._lines:
            self._loop.call_later(REPORT_INTERVAL, self._send)
        self._lines.append(line)

    def send_now(self) -> None:
        if self._lines:
            self._send()

    def _send(self) -> None:
        lines, self._lines = self._lines, []
        self.flush_log()
        while lines:
            size, count = 0, 0
            for line in lines:  # datagrams stay below what the main process reads
                size += len(line) + 1
                if size > REPORT_DATAGRAM_MAX and count:
                    break
                count += 1
            try:
                self._control.send(b"\n".join(lines[:count]))
            except BlockingIOError:
                # The main process is not reading: busy or stopping.  Lines are hints
                # (queue ids wake the worker, whose scans find the mail anyway) or
                # counts it resets when this process ends.  Retry soon.
                if not self._lines:
                    self._loop.call_later(REPORT_INTERVAL, self._send)
                self._lines[:0] = lines
                return
            except OSError:  # the main process is gone; PR_SET_PDEATHSIG ends us
                return
            del lines[:count]

    def queued(self, message: SpooledMessage, body: bytes | None = None) -> None:
        self.add(b"q " + message.queue_id.encode("ascii"))


class ReportedLimits(ConnectionLimits):
    """The main process admitted every connection; an ended one is reported to it.
    It also decides stress mode (``S`` lines): here it is a plain flag."""

    stressed: bool = False  # set from the main process

    def __init__(self, reports: Reports) -> None:
        super().__init__(max_total=0, max_per_ip=0)
        self._reports = reports

    def acquire(self, ip: str) -> Reply | None:  # pragma: no cover - sessions are preadmitted
        return None

    def release(self, ip: str) -> None:
        self._reports.add(b"r " + ip.encode("ascii"))


class ReportedAuthGuard(AuthGuard):
    """Delays as usual; failures and successes go to the main process, which bans."""

    def __init__(self, reports: Reports, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reports = reports

    def failure(self, ip: str) -> float:
        self._reports.add(b"f " + ip.encode("ascii"))
        return super().failure(ip)

    def success(self, ip: str) -> None:
        self._reports.add(b"s " + ip.encode("ascii"))
        super().success(ip)


async def run_sessions(config: Config, control: socket.socket) -> None:
    # Imported here: the composition root pulls in the whole server.
    from mailwright.accounts.users import UserStore
    from mailwright.obs.debuglog import setup_debug_log
    from mailwright.obs.maillog import MailLog
    from mailwright.runtime.compose import (
        auth_guard_settings,
        build_directory,
        build_session_services,
        flush_periodically,
        load_tls,
    )
    from mailwright.spool.embedded import EmbeddedSpool
    from mailwright.spool.store import SpoolError

    setup_debug_log(config.log)
    loop = asyncio.get_running_loop()
    control.setblocking(False)
    reports = Reports(control, loop)
    spool = EmbeddedSpool(config.data_dir, recover=False)
    try:
        await spool.open()
    except SpoolError as exc:
        raise SessionProcessError(str(exc)) from exc
    maillog = MailLog.from_config(config.log, config.data_dir)
    reports.flush_log = maillog.flush
    for sig in REOPEN_SIGNALS:
        loop.add_signal_handler(sig, maillog.reopen)
    flusher = None
    if maillog.buffered:
        flusher = loop.create_task(flush_periodically(maillog, config.log.flush_interval))
    try:
        tls = load_tls(config)
        guard = ReportedAuthGuard(reports, **auth_guard_settings(config))
        services = build_session_services(
            per_process_config(config),
            spool=spool,
            maillog=maillog,
            directory=build_directory(config),
            users=UserStore.in_data_dir(config.data_dir),
            tls=tls,
            auth_guard=guard,
            on_queued=reports.queued,
        )
        limits = ReportedLimits(reports)
        listeners = [Listener(lc, services, limits) for lc in config.listeners]
        for listener in listeners:
            await listener.start(handed=True)
        stop = asyncio.Event()
        loop.add_reader(
            control.fileno(), _on_control, control, listeners, guard, tls, maillog.reopen, stop
        )
        gc.collect()
        gc.freeze()  # as the server does: long-lived objects out of the collector's way
        reports.add(b"ready")
        await stop.wait()
        loop.remove_reader(control.fileno())
        for listener in listeners:
            listener.stop_accepting()
        grace = config.smtp.shutdown_grace
        await asyncio.gather(*(listener.drain(grace) for listener in listeners))
        reports.send_now()  # the last queue ids and releases, before the loop ends
    finally:
        for sig in REOPEN_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
        if flusher is not None:
            flusher.cancel()
        await spool.close()
        maillog.close()


def _on_control(
    control: socket.socket,
    listeners: list[Listener],
    guard: AuthGuard,
    tls: TlsManager | None,
    reopen_log: Callable[[], None],
    stop: asyncio.Event,
) -> None:
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(control, CONTROL_DATAGRAM_MAX, MAX_FDS)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data:  # the main process closed its end
            stop.set()
            return
        if data[:2] in (b"c ", b"e "):
            _adopt_all(data, fds, listeners)
            continue
        for fd in fds:  # not expected with other lines: never leak a descriptor
            os.close(fd)
        kind, _, arg = data.partition(b" ")
        if kind == b"b":
            ip, _, seconds = arg.decode("ascii").partition(" ")
            guard.ban(ip, float(seconds))
        elif kind == b"S" and listeners:
            # Stress mode, decided by the main process (net.handover); the limits
            # object is shared by every listener.
            limits = listeners[0].limits
            assert isinstance(limits, ReportedLimits)
            limits.stressed = arg == b"1"
        elif kind == b"h":
            _reload_tls(tls)
        elif kind == b"o":
            reopen_log()
        elif kind == b"x":
            stop.set()
            return
        else:
            log.warning("unknown control line %r", data[:80])


def _adopt_all(data: bytes, fds: list[int], listeners: list[Listener]) -> None:
    """``c|e <listener index> <client ip>`` lines, one per descriptor, in order."""
    lines = data.split(b"\n")
    for line, fd in zip(lines, fds, strict=False):
        kind, index, ip = line.decode("ascii").split(" ")
        conn = socket.socket(fileno=fd)
        conn.setblocking(False)
        listeners[int(index)].adopt(conn, ip, make_room=kind == "e")
    for fd in fds[len(lines) :]:  # more descriptors than lines: never leak one
        os.close(fd)


def _reload_tls(tls: TlsManager | None) -> None:
    if tls is not None:
        try:
            tls.reload()
        except TlsError as exc:  # the main process reports the same error
            log.error("TLS reload failed: %s", exc)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for sig in (signal.SIGINT, signal.SIGTERM, *REOPEN_SIGNALS):
        signal.signal(sig, signal.SIG_IGN)
    try:
        if len(args) != 2 or not all(arg.isdigit() for arg in args):
            raise SessionProcessError(
                "usage: python -m mailwright.runtime.sessions <server pid> <control fd>"
            )
        die_with_parent(int(args[0]))
        control = socket.socket(fileno=int(args[1]))
        config = read_config()
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a default dependency on Linux
            asyncio.run(run_sessions(config, control))
        else:
            uvloop.run(run_sessions(config, control))
    except (SessionProcessError, WorkerError, OSError, pickle.UnpicklingError, EOFError) as exc:
        print(f"mailwright: session process: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
