"""Real receiving servers for the relay's tests, all on loopback, and a queue harness
that drives the real relay agent with a controllable clock.

* ``SmtpSink``: Postfix's ``smtp-sink`` on ``127.0.0.N:port`` (Linux routes all of
  127/8 to lo, so several MX hosts share one port — ``[outbound] port`` is global),
  with its fault options (``-r RCPT``: 4xx at RCPT, ``-f .``: 5xx after the data,
  ``-q .``: disconnect after the final dot, ``-W cmd:delay``: slow replies), every
  transaction captured to a file (``-d``) so a test reads what arrived;
* ``free_shared_port``: a port free on every address a test needs;
* ``RelayHarness``: a spool (embedded backend), the ``QueueRunner`` with a settable
  ``Clock``, and the relay agent the composition root builds (``build_remote_agent``)
  with a resolver that asks only the test's ``LoopbackDns``.

Every wait is bounded; every process is stopped at the end of its ``with``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.message
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.dnsserver import LoopbackDns
from helpers.procs import wait_until
from helpers.resolvers import resolver_for
from helpers.spoolkit import Clock
from helpers.tools import require_tool
from mailwright.accounts.directory import LocalDirectory
from mailwright.config import DeliveryConfig, parse_config
from mailwright.delivery.local import LocalDeliveryAgent, mail_root
from mailwright.delivery.relay.agent import RelayAgent
from mailwright.delivery.relay.build import build_remote_agent
from mailwright.delivery.router import Router
from mailwright.queue.runner import QueueRunner
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import BodyType, Envelope, Recipient, SpooledMessage

SINK_START_TIMEOUT = 10.0  # s until smtp-sink accepts connections
SINK_BACKLOG = "16"
SINK_USER = "nobody"  # smtp-sink refuses to run as root without -u
PORT_ATTEMPTS = 50
# The runner's schedule in these tests: 60 s, doubling, for a day.
RETRY = DeliveryConfig(retry_initial=60, retry_max=3600, max_queue_lifetime=86400, worker=False)

BODY = (
    b"From: Sender <sender@origin.test>\r\n"
    b"To: Someone <someone@far.test>\r\n"
    b"Subject: relayed\r\n"
    b"Message-ID: <relay-test@origin.test>\r\n"
    b"\r\n"
    b"Hello over the relay.\r\n"
    b".leading dot stays one line\r\n"
)


def free_shared_port(addresses: list[str]) -> int:
    """A TCP port that is free on every one of ``addresses`` right now."""
    for _ in range(PORT_ATTEMPTS):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        ok = True
        for address in addresses[1:]:
            with socket.socket() as other:
                try:
                    other.bind((address, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError(f"no port free on all of {addresses}")


def accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


class SmtpSink:
    """``smtp-sink [options] address:port``; ``messages()`` reads the captured mail."""

    def __init__(self, address: str, port: int, *options: str, name: str = "smtp-sink") -> None:
        self.address = address
        self.port = port
        self.options = options
        self.name = name
        # Under tempfile, not tmp_path: smtp-sink drops to ``nobody``, who must write here.
        self.folder = Path(tempfile.mkdtemp(prefix="mailwright-sink-"))
        self.folder.chmod(0o777)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SmtpSink:
        binary = require_tool("smtp-sink", "postfix")
        user = ["-u", SINK_USER] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            [
                binary,
                *user,
                "-h",
                self.name,
                "-d",
                f"{self.folder}/%M.",
                *self.options,
                f"{self.address}:{self.port}",
                SINK_BACKLOG,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_until(lambda: accepts(self.address, self.port), SINK_START_TIMEOUT):
            self.stop()
            raise AssertionError(f"smtp-sink on {self.address}:{self.port} did not start")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def dumps(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.folder.rglob("*")) if p.is_file()]

    def messages(self) -> list[email.message.Message]:
        """Each captured transaction parsed: smtp-sink's X-Rcpt-Args etc. fields, then
        the message as received."""
        return [email.message_from_bytes(d) for d in self.dumps()]

    def rcpts(self) -> list[list[str]]:
        return [m.get_all("X-Rcpt-Args") or [] for m in self.messages()]


@contextlib.contextmanager
def sinks(*specs: tuple[str, tuple[str, ...]], port: int) -> Iterator[list[SmtpSink]]:
    started: list[SmtpSink] = []
    try:
        for address, options in specs:
            started.append(SmtpSink(address, port, *options).start())
        yield started
    finally:
        for sink in started:
            sink.stop()


def relay_config(tmp_path: Path, dns: LoopbackDns, port: int, **outbound: Any) -> dict[str, Any]:
    """The configuration document of a relaying server (the parts the relay reads):
    its own domain ``origin.test`` (mailbox ``sender``, where the DSNs land)."""
    return {
        "data_dir": str(tmp_path / "data"),
        "smtp": {"hostname": "relay.origin.test"},
        "domain": [{"name": "origin.test", "mailboxes": ["sender"]}],
        "dns": {"nameservers": [dns.nameserver]},
        "outbound": {"port": port, "allow_private_addresses": True, **outbound},
    }


class RelayHarness:
    """The delivery side of a server as the composition root builds it — spool, Router
    (local Maildir + the relay agent from ``build_remote_agent``), queue runner — with
    a settable clock (the store's and the runner's): retries are asserted exactly.
    DSNs go to ``sender@origin.test``, a local mailbox: ``bounces()`` parses them."""

    def __init__(self, dns: LoopbackDns, doc: dict[str, Any], **agent: Any):
        self.clock = Clock()
        self.config = parse_config(doc)
        self.data_dir = self.config.data_dir
        self.store = EmbeddedSpool(self.data_dir, clock=self.clock)
        self.agent: RelayAgent = build_remote_agent(self.config, resolver_for(dns), **agent)
        directory = LocalDirectory(self.config.domains, "+")
        local = LocalDeliveryAgent(directory, mail_root(self.data_dir), "relay.origin.test")
        self.router = Router(directory, local, self.agent, self.agent.routes)
        self.events: list[tuple[str, str, str]] = []  # (kind, address, reply)
        self.results: list[Any] = []
        self.runner = QueueRunner(
            self.store,
            self.router,
            RETRY,
            on_event=self._event,
            clock=self.clock,
            reporting_mta="relay.origin.test",
            jitter=lambda: 0.0,
        )

    def _event(self, kind: str, message: SpooledMessage, address: str, result: Any) -> None:
        if message.envelope.mail_from == "":
            return  # a DSN's own delivery (to the local sender)
        self.events.append((kind, address, str(result.reply)))
        self.results.append(result)

    async def put(
        self,
        *rcpts: str,
        mail_from: str = "sender@origin.test",
        body: bytes = BODY,
        notify: tuple[str, ...] = (),
        body_type: BodyType = BodyType.SEVEN_BIT,
        smtputf8: bool = False,
    ) -> SpooledMessage:
        """Queue ``body`` as the inbound session stores a message: ``body_type`` is
        its MAIL BODY= (RFC 6152), ``smtputf8`` its MAIL SMTPUTF8 (RFC 6531)."""
        await self.store.open()  # idempotent: the first put opens the spool
        writer = self.store.new_message()
        writer.write(body)
        env = Envelope(
            mail_from=mail_from,
            recipients=tuple(Recipient(r, notify=notify) for r in rcpts),
            body_type=body_type,
            smtputf8=smtputf8,
        )
        return await self.store.put(writer, env)

    async def run_once(self) -> int:
        return await self.runner.run_once()

    async def queued(self) -> list[SpooledMessage]:
        return [m async for m in self.store.iterate()]

    def mailbox(self, domain: str, box: str) -> list[email.message.Message]:
        new = self.data_dir / "mail" / domain / box / "new"
        files = sorted(new.iterdir()) if new.is_dir() else []
        return [email.message_from_bytes(f.read_bytes()) for f in files]

    async def bounces(self) -> list[email.message.Message]:
        """The DSNs delivered to the sender, parsed with the stdlib ``email`` package
        (a bounce queued by the last run is delivered by one more)."""
        await self.run_once()
        return self.mailbox("origin.test", "sender")

    async def close(self) -> None:
        await self.agent.close()
        await self.store.close()


def dsn_status(report: email.message.Message) -> list[tuple[str, str, str]]:
    """(Final-Recipient, Action, Status) of each recipient in an RFC 3464 report."""
    out = []
    for part in report.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            assert isinstance(blocks, list)
            for block in blocks[1:]:  # the first block is per-message
                out.append(
                    (
                        str(block["Final-Recipient"]),
                        str(block["Action"]),
                        str(block["Status"]),
                    )
                )
    return out


def report_fields(report: email.message.Message) -> list[email.message.Message]:
    """The per-recipient field blocks of an RFC 3464 report, or of its RFC 6533 form
    (message/global-delivery-status, for UTF-8 addresses), which the stdlib parses as
    one message: its header the per-message block, its body the recipients' blocks.
    Folded fields (Diagnostic-Code) are unfolded."""
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            blocks = part.get_payload()
            assert isinstance(blocks, list)
            return [_unfolded(b.as_bytes()) for b in blocks[1:]]
        if kind == "message/global-delivery-status":
            (inner,) = part.get_payload()
            text = inner.as_bytes().replace(b"\r\n", b"\n")
            return [_unfolded(block) for block in text.split(b"\n\n")[1:] if block.strip()]
    raise AssertionError("no delivery-status part in the report")


def _unfolded(block: bytes) -> email.message.Message:
    """One field block (UTF-8 allowed, RFC 6533 §3) with its folded lines joined."""
    text = block.decode("utf-8").replace("\r\n", "\n")
    return email.message_from_string(re.sub(r"\n[ \t]+", " ", text))


def run(coro: Any, timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def elapsed(since: float) -> float:
    return time.monotonic() - since


class PerRecipient:
    """aiosmtpd handler: RCPT replies by local part (ok / later / bad); the DATA reply
    is ``data_reply``."""

    def __init__(self, data_reply: str = "250 2.0.0 Queued") -> None:
        self.delivered: list[list[str]] = []
        self.data_reply = data_reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.partition("@")[0]
        if local == "later":
            return "450 4.2.1 Mailbox busy, try later"
        if local == "bad":
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        self.delivered.append(list(envelope.rcpt_tos))
        return self.data_reply
