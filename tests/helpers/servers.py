"""Real mailwright servers for tests: in-process (``App`` in a thread) and subprocess.

Both listen on 127.0.0.1 with port 0 (the kernel picks a free port), keep all state in
a private data folder, and use the same test configuration:

* ``example.test``: mailboxes ``alice``, ``bob`` and ``用户`` (an SMTPUTF8 mailbox),
  alias ``team -> [alice, bob]``;
* ``catchall.test``: mailbox ``sink``, which is also the catch-all.

Mail lands in ``data_dir/mail/<domain>/<mailbox>/new/``; the spool is
``data_dir/spool/`` (``tmp/``, ``msg/``, ``queue.db``).  Every wait here is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from helpers.dnsserver import LoopbackDns
from helpers.procs import wait_until
from mailwright.config import Config, parse_config
from mailwright.runtime.server import App

T = TypeVar("T")

HOST = "127.0.0.1"
EXAMPLE = "example.test"
CATCHALL = "catchall.test"
UTF8_BOX = "用户"
HOSTNAME = "mx.example.test"
DELIVERY_TIMEOUT = 5.0  # how long a test waits for the queue runner to deliver
START_TIMEOUT = 15.0  # a subprocess server must announce its port within this
QUEUED_RE = re.compile(rb"queued as ([0-9A-Z]{16})")
# Mail-log lines (text format): a message accepted with its recipient count, and a
# final outcome for one of its recipients.
ACCEPTED_RE = re.compile(r" ([0-9A-Z]{16}): accepted .*? nrcpt=(\d+) ")
FINAL_RE = re.compile(r" ([0-9A-Z]{16}): (?:delivered|bounced|expired) ")
LISTENING_RE = re.compile(r"mailwright: listening on 127\.0\.0\.1:(\d+) \(inbound\)")
# Every listener's announce line: address, port, role.
ANY_LISTENING_RE = re.compile(r"mailwright: listening on (\S+):(\d+) \((\w+)\)")
# Announced after every listener is bound (App.start).
READY_MARK = "mailwright: data in "


# The DNS every test server asks unless a test names its own ([dns] in ``extra``): a
# loopback server whose zone ``test.`` holds nothing, so mail to any other domain
# fails with NXDOMAIN (550 5.1.2) — and no test ever reaches the system resolver.
EMPTY_TEST_ZONE = "$ORIGIN test.\n@ 300 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n"
_default_dns: list[LoopbackDns] = []


def default_nameserver() -> str:
    """``IP:port`` of the shared empty-zone DNS server, started on first use (its
    threads are daemons: it ends with the test process)."""
    if not _default_dns:
        _default_dns.append(LoopbackDns(EMPTY_TEST_ZONE).start())
    return _default_dns[0].nameserver


def config_dict(
    data_dir: Path,
    *,
    smtp: dict[str, Any] | None = None,
    port: int = 0,
    mail_log: str = "mail.log",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The test configuration as the TOML document would hold it."""
    return {
        "data_dir": str(data_dir),
        "listener": [{"address": HOST, "port": port}],
        # A short grace keeps teardown quick when a test leaves a session in DATA.
        "smtp": {"hostname": HOSTNAME, "shutdown_grace": 3.0, **(smtp or {})},
        "domain": [
            {
                "name": EXAMPLE,
                "mailboxes": ["alice", "bob", UTF8_BOX],
                "aliases": {"team": ["alice", "bob"]},
            },
            {"name": CATCHALL, "mailboxes": ["sink"], "catch_all": "sink"},
        ],
        # Write-through: tests read the log right after the event.
        "log": {"mail_log": mail_log, "flush_interval": 0},
        # No tarpit: many tests provoke errors on purpose and must stay fast; the
        # tarpit has its own tests.
        "abuse": {"tarpit_delay": 0},
        "dns": {"nameservers": [default_nameserver()]},
        **(extra or {}),
    }


def build_config(data_dir: Path, *, worker: bool = False, **kwargs: Any) -> Config:
    """The test configuration for an in-process server.  The queue runner runs in the
    test's process (``delivery.worker`` false) unless ``worker`` is set or ``extra``
    says otherwise: a worker process per server would double the suite's time.  Every
    subprocess server runs the default, a delivery worker."""
    doc = config_dict(data_dir, **kwargs)
    doc["delivery"] = {"worker": worker, **doc.get("delivery", {})}
    return parse_config(doc)


# -- TOML (tomllib only reads; our documents are simple enough to write by hand) ------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON escapes are valid TOML
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(doc: dict[str, Any]) -> str:
    """Scalars first, then ``[table]``s, then ``[[array of tables]]``."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not _is_table(v)]
    for name, value in doc.items():
        if isinstance(value, dict):
            lines += ["", f"[{_key(name)}]"]
            lines += [f"{_key(k)} = {_value(v)}" for k, v in value.items()]
        elif _is_table(value):
            for item in value:
                lines += ["", f"[[{_key(name)}]]"]
                lines += [f"{_key(k)} = {_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


# -- what a data folder holds --------------------------------------------------------


def in_maildir(wire: bytes) -> bytes:
    """``wire`` (message bytes as sent, CRLF line endings) as a Maildir file holds them:
    every CRLF is an LF, every other octet as it was.  Written here on its own, not
    taken from the server; tests/delivery/test_maildir.py pins the conversion byte by
    byte."""
    return wire.replace(b"\r\n", b"\n")


class DataDir:
    """Inspection helpers over a server's data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    def maildir(self, domain: str, box: str) -> Path:
        return self.data_dir / "mail" / domain / box

    def message_files(self, domain: str, box: str) -> list[Path]:
        new = self.maildir(domain, box) / "new"
        return sorted(new.iterdir()) if new.is_dir() else []

    def maildir_messages(
        self, domain: str, box: str, count: int = 1, timeout: float = DELIVERY_TIMEOUT
    ) -> list[bytes]:
        """The messages in ``<domain>/<box>/new``, waiting (at most ``timeout`` s) until
        there are at least ``count``.  Returns what is there when the time is up."""
        deadline = time.monotonic() + timeout
        while True:
            files = self.message_files(domain, box)
            if len(files) >= count or time.monotonic() >= deadline:
                return [f.read_bytes() for f in files]
            time.sleep(0.02)

    def message_with_id(
        self, domain: str, box: str, queue_id: str, timeout: float = DELIVERY_TIMEOUT
    ) -> bytes:
        """The message of ``box`` whose Received header names ``queue_id`` (waiting at
        most ``timeout`` s); for servers shared by several tests."""
        marker = f" id {queue_id}".encode()
        deadline = time.monotonic() + timeout
        while True:
            found = [m for f in self.message_files(domain, box) if marker in (m := f.read_bytes())]
            if found or time.monotonic() >= deadline:
                assert len(found) == 1, f"{len(found)} messages with id {queue_id} in {box}"
                return found[0]
            time.sleep(0.02)

    def accepted_count(self) -> int:
        """Messages the mail log records as accepted (250 after DATA/BDAT)."""
        return self.mail_log().count(": accepted from=")

    def mail_log(self) -> str:
        path = self.data_dir / "mail.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def all_mail_files(self) -> list[Path]:
        """Every file in every Maildir's new/, cur/ and tmp/."""
        root = self.data_dir / "mail"
        if not root.is_dir():
            return []
        return sorted(p for p in root.glob("*/*/*/*") if p.is_file())

    def spool_files(self) -> dict[str, list[str]]:
        spool = self.data_dir / "spool"
        out = {}
        for sub in ("tmp", "msg"):
            folder = spool / sub
            out[sub] = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        return out

    def sessions_ended(self) -> bool:
        """Every session the mail log saw start has logged its end.  A session logs
        ``disconnect`` last, after it dropped any unfinished message, and logs
        ``accepted`` for a message before its 250: once it ended, what it stored is
        in the log."""
        log = self.mail_log()
        return log.count(": connect client=") == log.count(": disconnect ")

    def settled(self) -> bool:
        """Every message the mail log records as accepted has a final outcome
        (delivered, bounced, expired) for each of its recipients: the queue runner
        has nothing left of them to deliver."""
        log = self.mail_log()
        finals = Counter(m.group(1) for m in FINAL_RE.finditer(log))
        return all(finals[qid] >= int(n) for qid, n in ACCEPTED_RE.findall(log))

    def wait_settled(self, timeout: float = DELIVERY_TIMEOUT) -> None:
        """Wait (bounded) until every session ended and every accepted message reached
        its final outcome: nothing more can land in a Maildir, so a test may assert
        what did *not* arrive without sleeping."""
        assert wait_until(lambda: self.sessions_ended() and self.settled(), timeout), (
            f"sessions or deliveries still open after {timeout}s:\n{self.mail_log()}"
        )

    def queue_rows(self) -> int:
        """Messages still in the queue (the embedded spool's table): 0 means the queue
        runner has nothing left to deliver, now or after a restart."""
        path = self.data_dir / "spool" / "queue.db"
        if not path.exists():
            return 0
        db = sqlite3.connect(path)
        try:
            return db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        finally:
            db.close()

    def wait_queue_empty(self, timeout: float = DELIVERY_TIMEOUT) -> None:
        assert wait_until(lambda: self.queue_rows() == 0, timeout), (
            f"{self.queue_rows()} messages still queued after {timeout}s"
        )

    def assert_nothing_stored(self) -> None:
        """Once every session ended (mail log): nothing accepted, no message in any
        Maildir and none in the spool."""
        self.wait_settled()
        assert self.accepted_count() == 0, self.mail_log()
        assert self.all_mail_files() == []
        assert self.spool_files() == {"tmp": [], "msg": []}


# -- in-process server ---------------------------------------------------------------


class InProcessServer(DataDir):
    """``App`` on port 0, on a private event loop in a daemon thread."""

    def __init__(self, config: Config) -> None:
        super().__init__(config.data_dir)
        self.config = config
        self.host = HOST
        self.port = 0
        self.ports: dict[str, int] = {}
        self.announced: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="mailwright-test-server", daemon=True
        )
        self.app = App(config, announce=self.announced.append)
        self.running = False
        # App.start() configures the global "mailwright" logger (debuglog); put it back
        # as it was at stop, so no later test inherits our handler or propagate=False.
        logger = logging.getLogger("mailwright")
        self._logger_state = (list(logger.handlers), logger.propagate, logger.level)

    def start(self) -> InProcessServer:
        self.thread.start()
        try:
            self.call(self.app.start(), timeout=15)
        except BaseException:
            self._stop_loop()
            raise
        self.running = True
        # role -> bound port (the first listener of each role); ``port`` is the
        # inbound one when there is one, as before.
        for listener in self.app.listeners:
            self.ports.setdefault(str(listener.config.role), listener.port)
        self.port = self.ports.get("inbound", self.app.listeners[0].port)
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        """Run ``coro`` on the server's loop and wait (bounded) for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 20) -> None:
        """Graceful ``App.stop()`` (idempotent), then end the loop and the thread."""
        if self.running:
            self.running = False
            try:
                self.call(self.app.stop(), timeout)
            finally:
                self._stop_loop()

    def stop_in_background(self) -> threading.Thread:
        """Start ``stop()`` in another thread (it blocks for the grace period)."""
        thread = threading.Thread(target=self.stop, name="mailwright-test-stop", daemon=True)
        thread.start()
        return thread

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()
        logger = logging.getLogger("mailwright")
        handlers, logger.propagate, level = self._logger_state
        logger.handlers[:] = handlers
        logger.setLevel(level)


# -- subprocess server ---------------------------------------------------------------

SERVE_STOP_TIMEOUT = 15.0  # seconds for a SIGTERMed `mailwright serve` to exit


@contextlib.contextmanager
def serve_command(*args: str, cwd: Path, stdout: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m mailwright serve ARGS`` in ``cwd`` (no config file unless ARGS
    names one: the embedded default), its standard output in the file ``stdout``;
    SIGTERM on the way out (SIGKILL if it does not stop)."""
    with open(stdout, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailwright", "serve", *args],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(SERVE_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class SubprocessServer(DataDir):
    """``python -m mailwright serve -c cfg.toml``; stdout/stderr go to files so no pipe
    can fill up.  ``start()`` again after ``kill()`` reuses the data folder."""

    def __init__(
        self,
        workdir: Path,
        *,
        smtp: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        super().__init__(self.workdir / "data")
        self.host = HOST
        self.port = 0
        self.ports: dict[str, int] = {}  # role -> port, from the announce lines
        self.config_path = self.workdir / "cfg.toml"
        self.config_path.write_text(
            to_toml(config_dict(self.data_dir, smtp=smtp, extra=extra)), "utf-8"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.stdout_path = self.workdir / "stdout.0.log"
        self.stderr_path = self.workdir / "stderr.0.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mailwright", "serve", "-c", str(self.config_path)]

    def start(self, timeout: float = START_TIMEOUT, poll: float = 0.02) -> SubprocessServer:
        """Spawn and wait until the server announced it is ready, looking every
        ``poll`` seconds."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.stdout_path = self.workdir / f"stdout.{self.starts}.log"
        self.stderr_path = self.workdir / f"stderr.{self.starts}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.stdout_path.read_text("utf-8", "replace")
            match = LISTENING_RE.search(out)
            if match and READY_MARK in out:
                self.port = int(match.group(1))
                self.ports = {}
                for found in ANY_LISTENING_RE.finditer(out):
                    self.ports.setdefault(found.group(3), int(found.group(2)))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(poll)
        self.kill()
        raise AssertionError(
            f"mailwright serve did not announce its port within {timeout}s\n"
            f"stdout: {self.stdout()}\nstderr: {self.stderr()}"
        )

    def stdout(self) -> str:
        return self.stdout_path.read_text("utf-8", "replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crash, as far as the server can tell)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def terminate(self, timeout: float = 15) -> int | None:
        """SIGTERM (graceful shutdown); SIGKILL if it does not exit in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode
