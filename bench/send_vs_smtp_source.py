"""``mailwright send --count N --concurrency C`` against Postfix's ``smtp-source`` —
the same server (one ``mailwright serve``), the same run, alternating.

Issue 11's target: our load generator reaches at least 2/3 of smtp-source's rate.
Each client runs as a subprocess; its CPU time (user + system) comes from ``wait4``,
so the figure is the client's own cost, not the server's.  smtp-source runs twice:
as the issue names it (``-s C -m N``: one connection per message) and with ``-d``
(several messages per connection, as ``mailwright send`` does); the comparison that
counts is the like-for-like one, ``-d``.

    .venv/bin/python bench/send_vs_smtp_source.py                 # 20000 x 50
    .venv/bin/python bench/send_vs_smtp_source.py --count 2000    # quicker

Prints a Markdown table and one JSON line; exit status 1 when the target is missed
(with --check-target), 2 when a client failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from _load import HELO_NAME, SENDER, smtp_source_path
from _servers import (
    BENCH_DOMAIN,
    BENCH_MAILBOX,
    HOST,
    mailwright_command,
    recommended_processes,
    start_mailwright,
    stop_all,
)

TARGET_RATIO = 2 / 3  # issue 11: at least 2/3 of smtp-source's rate
RUN_TIMEOUT = 900.0  # seconds for one client run


@dataclass
class ClientRun:
    client: str
    messages: int
    seconds: float
    cpu_seconds: float
    returncode: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        return (
            f"| {self.client} | {self.messages} | {self.seconds:.2f} | {self.rate:.0f} | "
            f"{self.cpu_seconds:.2f} | {self.cpu_seconds / max(self.messages, 1) * 1e6:.0f} |"
        )


def timed(argv: list[str], client: str, messages: int) -> ClientRun:
    """Run ``argv``; wall time and the child's CPU time (wait4 rusage)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = start + RUN_TIMEOUT
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    sent = messages
    if client.startswith("mailwright"):
        try:
            sent = json.loads(out.strip().splitlines()[-1])["sent"]
        except (ValueError, IndexError, KeyError):
            sent = 0
    if code != 0:
        print(f"{client} exited {code}: {err[-500:]}", file=sys.stderr)
    return ClientRun(client, sent, seconds, usage.ru_utime + usage.ru_stime, code)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--processes", type=int, default=recommended_processes())
    parser.add_argument("--check-target", action="store_true")
    args = parser.parse_args()
    n, c = args.count, args.concurrency
    to = f"{BENCH_MAILBOX}@{BENCH_DOMAIN}"
    runs: list[ClientRun] = []
    with tempfile.TemporaryDirectory(prefix="mw-send-bench-") as tmp:
        server = start_mailwright(Path(tmp) / "mw", processes=args.processes)
        try:
            target = f"{HOST}:{server.port}"
            source = [smtp_source_path(), "-s", str(c), "-m", str(n), "-M", HELO_NAME]
            source += ["-f", SENDER, "-t", to]
            send = [*mailwright_command(), "send", "--server", target, "--helo", HELO_NAME]
            send += ["--from", SENDER, "--to", to, "--count", str(n)]
            send += ["--concurrency", str(c), "--pipeline", "--json"]
            runs.append(timed([*source, target], "smtp-source -s -m", n))
            runs.append(timed(send, "mailwright send", n))
            runs.append(timed([*source, "-d", target], "smtp-source -d", n))
            runs.append(timed(send, "mailwright send (again)", n))
        finally:
            stop_all()
    print(
        f"{n} messages over {c} connections, one `mailwright serve` "
        f"(smtp.processes = {args.processes})\n"
    )
    print("| client | messages | seconds | messages/s | client CPU s | CPU µs/message |")
    print("|:---|---:|---:|---:|---:|---:|")
    for run in runs:
        print(run.row())
    ours = max(r.rate for r in runs if r.client.startswith("mailwright"))
    theirs = max(r.rate for r in runs if r.client.startswith("smtp-source"))
    ratio = ours / theirs if theirs else 0.0
    print(f"\nmailwright send / best smtp-source: {ratio:.2f} (target >= {TARGET_RATIO:.2f})")
    print(json.dumps({"runs": [asdict(r) | {"rate": r.rate} for r in runs], "ratio": ratio}))
    if any(r.returncode != 0 for r in runs):
        return 2
    return 1 if args.check_target and ratio < TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
