"""End-of-data latency: the final dot with the body, after it, or the whole transaction
pipelined.

    .venv/bin/python bench/data_latency.py [--messages N] [--sizes 1,64] [--processes 0,2]

One ``mailwright serve`` per ``--processes`` value (the bench config of
``_servers.py``: the embedded spool, Maildir delivery), one connection, and for each
message size N sequential messages in each of three write patterns:

- **one write**: MAIL, RCPT and DATA one at a time, then the body and the final
  ``.CRLF`` in one ``send`` (what smtplib, Postfix's smtp and swaks do);
- **split**: the same, but the body in one ``send`` and the final ``.CRLF`` in a
  second one (what ``mailwright send`` does);
- **pipelined**: MAIL, RCPT and DATA in one ``send`` (RFC 2920), then the body and
  the dot in one ``send`` once the 354 is read.

The figure is the time from the ``send`` that carries the final dot to the whole
``250`` reply: median, p90, max and how many took over 50 ms, per pattern.  Each size
starts with ``--warmup`` uncounted messages (a fresh server's first ones are slower),
then the patterns take turns message by message, so a change in machine load hits all
three alike.  ``--busy N`` runs N spinning processes beside it (a loaded machine;
``delivery.worker_idle`` then starves the delivery worker); ``--config`` appends TOML
to the server's config (e.g. ``$'[delivery]\nworker_idle = false'``).  The client sets
TCP_NODELAY (``--client-nagle`` leaves Nagle's algorithm on, as smtplib does), so the
figures are the server's.  Every reply is checked (exit status 2 on an unexpected
one), the mail log's ``accepted`` lines must equal the messages sent, every socket
wait is bounded, only 127.0.0.1 is used and the server is stopped on the way out.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _servers import (
    BENCH_DOMAIN,
    BENCH_MAILBOX,
    HOST,
    ServerProcess,
    maillog_events,
    start_mailwright,
    stop_all,
)

DEFAULT_MESSAGES = 200
DEFAULT_SIZES_KB = (1, 64)
REPLY_TIMEOUT = 10.0  # seconds for any one reply: a stuck server fails the run
LOG_TIMEOUT = 10.0  # seconds for the mail log to show every accepted message
MAX_REPLY = 65536  # octets; a longer reply is an error
PATTERNS = ("one write", "split", "pipelined")
KB = 1024
# Messages per size sent first and not counted.  A fresh server's first messages are
# slower (the queue database and its WAL file grow, the Maildir folders are created,
# the delivery worker catches up): whichever way of writing is measured first looks
# worse, which is how a comparison run one way after the other can mislead.
WARMUP = 20
SLOW_MS = 50  # the report counts messages slower than this
BUSY_SECONDS = 600  # a busy loop ends by itself after this, even if we are killed


def fail(problem: str) -> NoReturn:
    print(f"data_latency: {problem}", file=sys.stderr)
    raise SystemExit(2)


class Client:
    """A blocking SMTP client on one socket that reads replies line-exactly."""

    def __init__(self, port: int, *, nodelay: bool) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=REPLY_TIMEOUT)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.expect("220")
        self.sock.sendall(b"EHLO client.local\r\n")
        self.expect("250")

    def reply(self) -> bytes:
        """One whole reply (every line of a multi-line one)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                if len(self.buf) > MAX_REPLY:
                    fail(f"reply longer than {MAX_REPLY} octets")
                try:
                    chunk = self.sock.recv(MAX_REPLY)
                except OSError as exc:  # TimeoutError included: REPLY_TIMEOUT passed
                    fail(f"no reply within {REPLY_TIMEOUT} s ({exc}); had {self.buf[:200]!r}")
                if not chunk:
                    fail(f"connection closed; had {b''.join(lines) + self.buf!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return b"\r\n".join(lines)

    def expect(self, code: str) -> None:
        got = self.reply()
        if not got.startswith(code.encode()):
            fail(f"expected {code}, got {got[:200]!r}")

    def transaction(self, pattern: str, body: bytes) -> float:
        """One message; seconds from the send carrying the final dot to its 250."""
        envelope = [
            b"MAIL FROM:<bench@client.local>\r\n",
            f"RCPT TO:<{BENCH_MAILBOX}@{BENCH_DOMAIN}>\r\n".encode(),
            b"DATA\r\n",
        ]
        if pattern == "pipelined":
            self.sock.sendall(b"".join(envelope))
            for code in ("250", "250", "354"):
                self.expect(code)
        else:
            for command, code in zip(envelope, ("250", "250", "354"), strict=True):
                self.sock.sendall(command)
                self.expect(code)
        if pattern == "split":
            self.sock.sendall(body)
            start = time.perf_counter()
            self.sock.sendall(b".\r\n")
        else:
            start = time.perf_counter()
            self.sock.sendall(body + b".\r\n")
        self.expect("250")
        return time.perf_counter() - start

    def close(self) -> None:
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.expect("221")
        finally:
            self.sock.close()


def busy_loop() -> subprocess.Popen[bytes]:
    """A process that spins on one core (bounded in time): load beside the server."""
    code = (
        f"import time\nend = time.monotonic() + {BUSY_SECONDS}\nwhile time.monotonic() < end: pass"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)


def make_body(size: int) -> bytes:
    """A message of about ``size`` octets: headers and 76-octet lines, CRLF-ended."""
    head = (
        b"From: bench@client.local\r\nTo: sink@bench.local\r\n"
        b"Subject: data latency\r\nMessage-ID: <latency@client.local>\r\n\r\n"
    )
    line = b"x" * 74 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def percentile(values: list[float], p: int) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(1, -(-p * len(ordered) // 100)) - 1]


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def measure(
    server: ServerProcess, sizes: list[int], messages: int, warmup: int, *, nodelay: bool
) -> dict[tuple[int, str], list[float]]:
    client = Client(server.port, nodelay=nodelay)
    results: dict[tuple[int, str], list[float]] = {}
    try:
        for size in sizes:
            body = make_body(size)
            for _ in range(warmup):  # not counted: see WARMUP
                client.transaction(PATTERNS[0], body)
            for n in range(messages):
                # The patterns take turns, each round starting with the next one, so no
                # pattern always follows the same other one.
                for i in range(len(PATTERNS)):
                    pattern = PATTERNS[(n + i) % len(PATTERNS)]
                    results.setdefault((size, pattern), []).append(
                        client.transaction(pattern, body)
                    )
    finally:
        client.close()
    sent = len(sizes) * (len(PATTERNS) * messages + warmup)
    if not wait_for(
        lambda: maillog_events(server.data_dir).get("accepted", 0) >= sent, LOG_TIMEOUT
    ):
        fail(f"the mail log has {maillog_events(server.data_dir)} after {sent} messages")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=DEFAULT_MESSAGES, help="per size and pattern"
    )
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES_KB)), help="KB, comma-separated"
    )
    parser.add_argument("--processes", default="0,2", help="smtp.processes values, comma-separated")
    parser.add_argument("--client-nagle", action="store_true", help="no TCP_NODELAY on the client")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="uncounted messages per size")
    parser.add_argument("--config", default="", help="TOML appended to the server's config")
    parser.add_argument(
        "--busy", type=int, default=0, help="busy-loop processes beside the run (a loaded machine)"
    )
    parser.add_argument(
        "--mailwright-command", help="how to run mailwright (e.g. another checkout's python -m)"
    )
    args = parser.parse_args()
    if args.messages < 1 or args.warmup < 0:
        parser.error("--messages must be at least 1 and --warmup at least 0")
    try:
        sizes = [int(s) * KB for s in args.sizes.split(",")]
        processes = [int(p) for p in args.processes.split(",")]
    except ValueError:
        parser.error("--sizes and --processes take comma-separated integers")
    command = args.mailwright_command.split() if args.mailwright_command else None
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"{args.messages} messages per size and pattern; client "
        f"{'with Nagle' if args.client_nagle else 'TCP_NODELAY'}\n"
    )
    print(f"| processes | size | pattern | median ms | p90 ms | max ms | > {SLOW_MS} ms |")
    print("|---:|---:|:---|---:|---:|---:|---:|")
    try:
        for count in processes:
            with tempfile.TemporaryDirectory(prefix="mw-latency-") as tmp:
                server = start_mailwright(
                    Path(tmp), command, extra_config=args.config, processes=count
                )
                hogs = [busy_loop() for _ in range(args.busy)]
                try:
                    results = measure(
                        server, sizes, args.messages, args.warmup, nodelay=not args.client_nagle
                    )
                finally:
                    for hog in hogs:
                        hog.kill()
                        hog.wait()
                    server.stop()
            for (size, pattern), values in results.items():
                ms = [v * 1000 for v in values]
                print(
                    f"| {count} | {size // KB} KB | {pattern} | {statistics.median(ms):.2f} "
                    f"| {percentile(ms, 90):.2f} | {max(ms):.2f} "
                    f"| {sum(m > SLOW_MS for m in ms)} |",
                    flush=True,
                )
    finally:
        stop_all()
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
