"""A session process: SMTP sessions on connections the main process accepted.

Started by ``runtime.sessionpool.SessionProcesses`` (through ``runtime.children``) as
``python -m mailwright.runtime.sessions <server pid> <control fd>``; standard input
carries the pickled config (as for the delivery worker) and is then closed.  In order,
the process (``compose.run_child``, then ``run_sessions``):

1. asks the kernel to kill it when the server dies (``PR_SET_PDEATHSIG``);
2. builds what sessions share with ``compose.build_session_services``, the same code as
   in-process sessions, on the spool opened *without* recovery (the server recovered
   it and other processes write to it now), and says ``Ready``;
3. serves every connection that arrives on the control socket (``Listener.adopt``),
   and reports back queue ids, ended connections and AUTH outcomes (the messages
   of ``runtime.control``).  Its buffered mail log is written before each report, so
   the ``accepted`` line of a queue id is in the file before the id can reach the
   queue runner (``obs.maillog``: "Order");
4. on ``Stop`` or end of file stops like the server does: 421 to idle sessions, messages
   in DATA finish within ``smtp.shutdown_grace``; then closes the spool and the mail
   log and exits 0.

Each process enforces 1/N of every rate limit (``per_process_config``): together the
N processes never allow more than configured; a client whose sessions all land in one
process may get less.  The connection caps and AUTH bans are exact (the main process
keeps them).

SIGINT and SIGTERM are ignored: the server decides when sessions stop.  SIGUSR1 and
SIGHUP reopen the mail log, as the ``ReopenLog`` message does (``compose.REOPEN_SIGNALS``:
``systemctl kill -s USR1`` signals every process of the unit).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from mailwright.accounts.users import UserStore
from mailwright.config import Config
from mailwright.net.listener import ConnectionLimits, Listener
from mailwright.net.tls import TlsError, TlsManager
from mailwright.policy.authguard import AuthGuard
from mailwright.runtime import control
from mailwright.runtime.compose import (
    ChildError,
    Foundation,
    auth_guard_settings,
    build_directory,
    build_session_services,
    load_tls,
    run_child,
)
from mailwright.smtp import Reply
from mailwright.spool.model import SpooledMessage
from mailwright.spool.store import SpoolError

log = logging.getLogger(__name__)

# Reports to the main process go out at most this often (seconds).  Each send wakes the
# main process, which cost a tenth of a session process's CPU when sent at once; a few
# ms later only delays the release of a connection cap and the worker's wake-up.
REPORT_INTERVAL = 0.002
# One report datagram at most: half of what the main process reads
# (``control.CONTROL_DATAGRAM_MAX``).
REPORT_DATAGRAM_MAX = control.CONTROL_DATAGRAM_MAX // 2
USAGE = "python -m mailwright.runtime.sessions <server pid> <control fd>"


class SessionProcessError(ChildError):
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
    """Messages to the main process, sent together every ``REPORT_INTERVAL``, each batch
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

    def add(self, message: control.Message) -> None:
        if not self._lines:
            self._loop.call_later(REPORT_INTERVAL, self._send)
        self._lines.append(message.encode())

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
                control.send_datagram(self._control, control.LINE_END.join(lines[:count]))
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
        self.add(control.Queued(message.queue_id))


class ReportedLimits(ConnectionLimits):
    """The main process admitted every connection; an ended one is reported to it.
    It also decides stress mode (``Stress`` messages): here it is a plain flag."""

    stressed: bool = False  # set from the main process

    def __init__(self, reports: Reports) -> None:
        super().__init__(max_total=0, max_per_ip=0)
        self._reports = reports

    def acquire(self, ip: str) -> Reply | None:  # pragma: no cover - sessions are preadmitted
        return None

    def release(self, ip: str) -> None:
        self._reports.add(control.Released(ip))


class ReportedAuthGuard(AuthGuard):
    """Delays as usual; failures and successes go to the main process, which bans."""

    def __init__(self, reports: Reports, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reports = reports

    def failure(self, ip: str) -> float:
        self._reports.add(control.AuthFailed(ip))
        return super().failure(ip)

    def success(self, ip: str) -> None:
        self._reports.add(control.AuthSucceeded(ip))
        super().success(ip)


async def run_sessions(config: Config, channel: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    channel.setblocking(False)
    reports = Reports(channel, loop)
    base = Foundation(config, recover=False, runner_lock=False)
    try:
        maillog = await base.open()
    except SpoolError as exc:
        await base.close()
        raise SessionProcessError(str(exc)) from exc
    reports.flush_log = maillog.flush
    try:
        base.reopen_on_signals()
        base.start_flusher()
        tls = load_tls(config)
        guard = ReportedAuthGuard(reports, **auth_guard_settings(config))
        services = build_session_services(
            per_process_config(config),
            spool=base.spool,
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
        commands = _Commands(listeners, limits, guard, tls, maillog.reopen, stop)
        loop.add_reader(channel.fileno(), commands.on_readable, channel)
        gc.collect()
        gc.freeze()  # as the server does: long-lived objects out of the collector's way
        reports.add(control.Ready())
        await stop.wait()
        loop.remove_reader(channel.fileno())
        for listener in listeners:
            listener.stop_accepting()
        grace = config.smtp.shutdown_grace
        await asyncio.gather(*(listener.drain(grace) for listener in listeners))
        reports.send_now()  # the last queue ids and releases, before the loop ends
    finally:
        await base.close()


class _Commands:
    """The main process's messages (``control.TO_SESSION``), carried out."""

    def __init__(
        self,
        listeners: list[Listener],
        limits: ReportedLimits,
        guard: AuthGuard,
        tls: TlsManager | None,
        reopen_log: Callable[[], None],
        stop: asyncio.Event,
    ) -> None:
        self.listeners = listeners
        self.limits = limits
        self.guard = guard
        self.tls = tls
        self.reopen_log = reopen_log
        self.stop = stop

    def on_readable(self, channel: socket.socket) -> None:
        while True:
            try:
                data, fds = control.receive_datagram(channel)
            except BlockingIOError:
                return
            except control.TruncatedDatagram as exc:
                log.warning("control channel: %s", exc)
                _close_all(exc.fds)
                continue
            except OSError:
                data, fds = b"", []
            if not data:  # the main process closed its end
                _close_all(fds)
                self.stop.set()
                return
            messages, problems = control.unpack(data, control.TO_SESSION)
            for problem in problems:
                log.warning("control channel: %s", problem)
            fds = self._adopt(messages, fds)
            _close_all(fds)  # more descriptors than Adopt lines: never leak one
            for message in messages:
                self._carry_out(message)
                if self.stop.is_set():
                    return

    def _adopt(self, messages: list[control.Message], fds: list[int]) -> list[int]:
        """One descriptor per ``Adopt``, in order; returns the descriptors left over."""
        left = list(fds)
        for message in messages:
            if isinstance(message, control.Adopt) and left:
                conn = socket.socket(fileno=left.pop(0))
                conn.setblocking(False)
                if message.listener >= len(self.listeners):
                    log.warning("control channel: no listener %d", message.listener)
                    conn.close()
                    continue
                self.listeners[message.listener].adopt(
                    conn, message.ip, make_room=message.make_room
                )
        return left

    def _carry_out(self, message: control.Message) -> None:
        match message:
            case control.Ban(ip, seconds):
                self.guard.ban(ip, seconds)
            case control.Stress(on):
                # Stress mode, decided by the main process (runtime.sessionpool); the
                # limits object is shared by every listener.
                self.limits.stressed = on
            case control.ReloadTls():
                _reload_tls(self.tls)
            case control.ReopenLog():
                self.reopen_log()
            case control.Stop():
                self.stop.set()


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _reload_tls(tls: TlsManager | None) -> None:
    if tls is not None:
        try:
            tls.reload()
        except TlsError as exc:  # the main process reports the same error
            log.error("TLS reload failed: %s", exc)


def _start(config: Config, numbers: list[int]) -> Coroutine[Any, Any, None]:
    return run_sessions(config, socket.socket(fileno=numbers[1]))


def main(argv: list[str] | None = None) -> None:
    run_child("session process", sys.argv[1:] if argv is None else argv, USAGE, 2, _start)


if __name__ == "__main__":
    main()
