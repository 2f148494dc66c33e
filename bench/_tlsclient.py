"""The TLS load generator of ``tls_load.py``: SMTP client sessions on asyncio + ssl.

Postfix's ``smtp-source`` has no TLS, so this is a small client of its own.  A *job* is
run by one worker process (``run_job``, called through a ``multiprocessing`` pool so
that several processes can share the load on a small machine): it keeps ``sessions``
client sessions going at once until ``count`` connections were made or ``seconds``
have passed, whichever comes first.  Every session is one connection of one *kind*:

``plain_msg``     greeting, EHLO, MAIL, RCPT, DATA (one message), QUIT — no TLS
``starttls_msg``  greeting, EHLO, STARTTLS, TLS handshake, EHLO, MAIL, RCPT, DATA, QUIT
``implicit_msg``  TLS handshake, greeting, EHLO, MAIL, RCPT, DATA, QUIT (RFC 8314 port)
``implicit_hs``   TLS handshake, greeting, QUIT — a handshake-rate probe
``starttls_hs``   greeting, EHLO, STARTTLS, TLS handshake, QUIT
``plain_conn``    greeting, QUIT — the same probe without TLS, for comparison

Commands go one at a time (no PIPELINING), as ``smtp-source`` sends them.  The client
verifies nothing about the certificate (the server's is self-signed) but does complete
full handshakes: no session resumption, as an MX meeting a new peer would see.

With ``gate`` every session stops at its *ready point* (after the greeting for
implicit TLS, after the second EHLO for STARTTLS) until all sessions of the job got
there or failed: then they really were open at the same time; the server's RSS is
sampled at that moment.  Every read has a timeout and every job a deadline.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _servers import BENCH_DOMAIN, BENCH_MAILBOX, HOST

SENDER = "bench@client.local"
HELO = b"EHLO client.local\r\n"
RCPT = f"{BENCH_MAILBOX}@{BENCH_DOMAIN}"
STEP_TIMEOUT = 30.0  # seconds for one reply (a TLS handshake included)
CLOSE_TIMEOUT = 5.0  # seconds for the TLS close after QUIT
MAX_REPLY_LINES = 100
KINDS = ("plain_msg", "starttls_msg", "implicit_msg", "implicit_hs", "starttls_hs", "plain_conn")
TLS_KINDS = frozenset(k for k in KINDS if not k.startswith("plain"))
MESSAGE_KINDS = frozenset(k for k in KINDS if k.endswith("_msg"))


class SmtpError(Exception):
    """The server answered something other than what the session expected."""


@dataclass(frozen=True)
class Job:
    kind: str
    port: int
    sessions: int  # sessions open at once in this worker
    count: int  # connections this worker makes at most
    seconds: float = 0.0  # stop starting sessions after this long (0: only ``count``)
    size: int = 1024  # message payload octets
    start_at: float = 0.0  # time.monotonic() (system-wide) at which to begin
    gate: bool = False  # hold every session at its ready point until all got there
    server_pid: int = 0  # sampled (VmRSS) when the gate opens
    deadline: float = 600.0  # seconds: the whole job is cancelled after this


@dataclass
class _Gate:
    """Releases every waiting session once ``total`` have arrived (or failed)."""

    total: int
    server_pid: int
    started: float
    arrived: int = 0
    failed_before: int = 0
    opened_after: float | None = None
    server_rss_kib: int | None = None
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def arrive(self, *, failed: bool = False) -> None:
        self.arrived += 1
        self.failed_before += failed
        if self.arrived >= self.total and not self.event.is_set():
            self.opened_after = time.monotonic() - self.started
            self.server_rss_kib = _vm_rss(self.server_pid)
            self.event.set()


def _vm_rss(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def client_context() -> ssl.SSLContext:
    """TLS 1.2+, OpenSSL's default ciphers and groups, no certificate verification.

    No trust store is loaded on purpose: OpenSSL builds and checks the chain even with
    ``CERT_NONE`` (and ignores the result), and with the system store that lookup (a
    hashed directory read per handshake) was a quarter of the generator's CPU.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def message_bytes(size: int) -> bytes:
    """Headers and a ``size``-octet body of 80-octet lines, dot-terminated."""
    head = (
        f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: mailwright TLS load test\r\n\r\n"
    ).encode()
    lines, rest = divmod(size, 80)
    body = (b"x" * 78 + b"\r\n") * lines
    if rest > 2:
        body += b"y" * (rest - 2) + b"\r\n"
    return head + body + b".\r\n"


async def _reply(reader: asyncio.StreamReader, what: str) -> tuple[int, bytes]:
    async with asyncio.timeout(STEP_TIMEOUT):
        lines = []
        while len(lines) < MAX_REPLY_LINES:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                raise SmtpError(f"{what}: connection closed")
            lines.append(line)
            if line[3:4] != b"-":
                try:
                    return int(line[:3]), b"".join(lines)
                except ValueError:
                    raise SmtpError(f"{what}: bad reply {line[:40]!r}") from None
    raise SmtpError(f"{what}: reply longer than {MAX_REPLY_LINES} lines")


async def _expect(reader: asyncio.StreamReader, code: int, what: str) -> bytes:
    got, text = await _reply(reader, what)
    if got != code:
        raise SmtpError(f"{what}: {text.splitlines()[-1][:60].decode(errors='replace')}")
    return text


class _Stats:
    def __init__(self) -> None:
        self.ok = 0
        self.acked = 0  # messages the server answered 250 after DATA
        self.errors: Counter[str] = Counter()
        self.latency: list[float] = []  # whole session, seconds
        self.handshake: list[float] = []  # TLS handshake (implicit: connect to greeting)
        self.tls: Counter[str] = Counter()


async def _session(
    job: Job, ctx: ssl.SSLContext, message: bytes, stats: _Stats, gate: _Gate | None
) -> None:
    kind = job.kind
    start = time.monotonic()
    writer: asyncio.StreamWriter | None = None
    at_gate = False
    try:
        if kind.startswith("implicit"):
            async with asyncio.timeout(STEP_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    HOST, job.port, ssl=ctx, server_hostname=BENCH_DOMAIN
                )
            await _expect(reader, 220, "greeting")
            stats.handshake.append(time.monotonic() - start)
        else:
            async with asyncio.timeout(STEP_TIMEOUT):
                reader, writer = await asyncio.open_connection(HOST, job.port)
            await _expect(reader, 220, "greeting")
        if kind.startswith("starttls"):
            writer.write(HELO)
            if b"STARTTLS" not in await _expect(reader, 250, "EHLO"):
                raise SmtpError("EHLO: no STARTTLS offered")
            writer.write(b"STARTTLS\r\n")
            await _expect(reader, 220, "STARTTLS")
            began = time.monotonic()
            async with asyncio.timeout(STEP_TIMEOUT):
                await writer.start_tls(ctx, server_hostname=BENCH_DOMAIN)
            stats.handshake.append(time.monotonic() - began)
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            stats.tls[f"{ssl_object.version()} {ssl_object.cipher()[0]}"] += 1
        if kind in MESSAGE_KINDS:
            writer.write(HELO)
            await _expect(reader, 250, "EHLO")
        if gate is not None:
            at_gate = True
            gate.arrive()
            async with asyncio.timeout(job.deadline):
                await gate.event.wait()
        if kind in MESSAGE_KINDS:
            writer.write(f"MAIL FROM:<{SENDER}>\r\n".encode())
            await _expect(reader, 250, "MAIL")
            writer.write(f"RCPT TO:<{RCPT}>\r\n".encode())
            await _expect(reader, 250, "RCPT")
            writer.write(b"DATA\r\n")
            await _expect(reader, 354, "DATA")
            writer.write(message)
            await _expect(reader, 250, "end of data")
            stats.acked += 1
        writer.write(b"QUIT\r\n")
        await _expect(reader, 221, "QUIT")
        stats.ok += 1
        stats.latency.append(time.monotonic() - start)
    except Exception as exc:  # every failure is counted, none stops the other sessions
        stats.errors[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
        if gate is not None and not at_gate:
            gate.arrive(failed=True)
    finally:
        if writer is not None:
            writer.close()
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await writer.wait_closed()
            except (OSError, ssl.SSLError, TimeoutError):
                pass  # the session's outcome is already counted


async def _run(job: Job) -> dict[str, Any]:
    ctx = client_context()
    message = message_bytes(job.size)
    stats = _Stats()
    delay = job.start_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    stop_at = started + job.seconds if job.seconds > 0 else float("inf")
    gate = _Gate(job.count, job.server_pid, started) if job.gate else None
    issued = 0

    async def slot() -> None:
        nonlocal issued
        while issued < job.count and time.monotonic() < stop_at:
            issued += 1
            await _session(job, ctx, message, stats, gate)

    slots = min(job.sessions, job.count)
    cancelled = False
    try:
        async with asyncio.timeout(job.deadline):
            await asyncio.gather(*(slot() for _ in range(slots)))
    except TimeoutError:
        cancelled = True
    ended = time.monotonic()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    lost = issued - stats.ok - sum(stats.errors.values())
    if cancelled or lost:
        stats.errors[f"job deadline of {job.deadline:g} s reached"] += max(lost, 1)
    return {
        "kind": job.kind,
        "sessions": slots,
        "connections": issued,
        "ok": stats.ok,
        "acked": stats.acked,
        "errors": dict(stats.errors),
        "started": started,
        "ended": ended,
        "client_cpu_s": cpu,
        "latency": stats.latency,
        "handshake": stats.handshake,
        "tls": dict(stats.tls),
        "gate_opened_after_s": gate.opened_after if gate else None,
        "gate_failed_before": gate.failed_before if gate else None,
        "server_rss_at_gate_kib": gate.server_rss_kib if gate else None,
    }


def run_job(job: Job) -> dict[str, Any]:
    """Run one job on a fresh event loop (uvloop when installed); the pool calls this."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed with mailwright on Linux
        return asyncio.run(_run(job))
    return uvloop.run(_run(job))


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from the workers' results of one load step."""
    errors: Counter[str] = Counter()
    tls: Counter[str] = Counter()
    for part in parts:
        errors.update(part["errors"])
        tls.update(part["tls"])
    latency = sorted(x for p in parts for x in p["latency"])
    handshake = sorted(x for p in parts for x in p["handshake"])
    gates = [p["gate_opened_after_s"] for p in parts if p["gate_opened_after_s"] is not None]
    return {
        "kind": parts[0]["kind"],
        "workers": len(parts),
        "sessions": sum(p["sessions"] for p in parts),
        "connections": sum(p["connections"] for p in parts),
        "ok": sum(p["ok"] for p in parts),
        "acked": sum(p["acked"] for p in parts),
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "wall_s": max(p["ended"] for p in parts) - min(p["started"] for p in parts),
        "client_cpu_s": sum(p["client_cpu_s"] for p in parts),
        "latency_ms": _percentiles(latency),
        "handshake_ms": _percentiles(handshake),
        "tls": dict(tls),
        "gate_opened_after_s": max(gates) if gates else None,
        "gate_failed_before": sum(p["gate_failed_before"] or 0 for p in parts),
        "server_rss_at_gate_kib": next(
            (p["server_rss_at_gate_kib"] for p in parts if p["server_rss_at_gate_kib"]), None
        ),
    }


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(values[-1] * 1000, 2)}
