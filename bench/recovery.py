"""Start-up with a big deferred queue: how long until mailwright listens and delivers,
and how much memory it takes.

    .venv/bin/python bench/recovery.py [--messages 100000] [--quick]

1. **Fill** an embedded spool through the store API (``EmbeddedSpool.put`` in
   concurrent batches, so the group committer writes hundreds per transaction):
   1 KB bodies, 1-3 recipients at a few remote domains, arrival times spread over
   the last two days; then, like a runner that tried and failed, ``record_attempt``
   gives most of them 1-5 attempts of history (a 451 from a remote host) and a next
   attempt in the next hours.  A small share (``--due``, default 1%) is due now.
2. ``mailwright queue list --json | wc -l`` on the full queue: its wall time and the
   line count, which must equal the messages filled.
3. **Start** ``mailwright serve`` on that data folder, relaying to a fresh
   ``smtp-sink`` (``[outbound] relayhost``).  Measured from the spawn: the time to the
   ``listening on`` line, and to the sink's first message (the queue runner's first
   claim, plus one delivery), and to the sink having every due message.  Peak RSS
   (VmHWM) of the server and of its delivery worker once the due mail is out.

Run it with two queue sizes (``--messages 10000,100000``) to see whether memory grows
with the queue.  Markdown on stdout, JSON in ``bench/results/recovery-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _relayd import Sink, free_port, start_sink, tree
from _report import machine_facts
from _servers import (
    ServerError,
    mailwright_command,
    proc_status,
    start_mailwright,
    stop_all,
)

from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import (
    Attempt,
    Envelope,
    Recipient,
    RecipientStatus,
    RemoteReply,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PUT_BATCH = 1000  # puts in flight at once: the group committer takes them together
BODY_SIZE = 1024
DOMAINS = ("example.com", "example.net", "mail.example.org", "lists.example.edu")
DAY = 86400.0
DEFERRED_REPLY = RemoteReply(451, "4.7.1", "Greylisted, try again later")
WAIT_TIMEOUT = 300.0  # s for the sink to get every due message

Result = dict[str, Any]

RECOVERY_CONFIG = """\
[outbound]
relayhost = "[127.0.0.1]:{sink_port}"
allow_private_addresses = true
tls = "none"
[dns]
nameservers = ["127.0.0.1:{dns_port}"]   # nobody listens: the relayhost needs no DNS
timeout = 1.0
attempts = 1
"""


def _body(rng: random.Random, index: int) -> bytes:
    head = (
        f"From: sender{index % 500}@bench.local\r\nTo: someone@example.com\r\n"
        f"Subject: queued message {index}\r\nMessage-ID: <{index}.recovery@bench.local>\r\n\r\n"
    ).encode()
    line = b"x" * 70 + b"\r\n"
    return head + line * ((BODY_SIZE - len(head)) // len(line))


def _envelope(rng: random.Random, index: int) -> Envelope:
    count = rng.choice((1, 1, 1, 2, 3))
    return Envelope(
        mail_from=f"sender{index % 500}@bench.local",
        recipients=tuple(
            Recipient(f"user{rng.randrange(10_000)}@{rng.choice(DOMAINS)}") for _ in range(count)
        ),
        client_address="127.0.0.1",
        client_helo="client.bench.local",
    )


async def fill(data_dir: Path, messages: int, due_share: float, seed: int) -> Result:
    """Put ``messages`` deferred messages into a new embedded spool (see the docstring)."""
    rng = random.Random(seed)
    real_now = time.time()
    fake = [real_now]
    store = EmbeddedSpool(data_dir, clock=lambda: fake[0])
    await store.open()
    started = time.perf_counter()
    due = with_history = 0
    try:
        for first in range(0, messages, PUT_BATCH):
            indices = range(first, min(first + PUT_BATCH, messages))
            # Arrival times spread over the last two days, oldest first.
            fake[0] = real_now - 2 * DAY * (1 - first / messages)
            stored = await asyncio.gather(
                *(store.put(_body(rng, i), _envelope(rng, i)) for i in indices)
            )
            updates = []
            for message in stored:
                if rng.random() < due_share:
                    due += 1
                    message.next_attempt = real_now - rng.uniform(0, 600)
                    updates.append(store.update(message))
                    continue
                # Tried 1-5 times, the last reply a 451; next attempt in the next 4 h.
                tries = rng.randint(1, 5)
                rows = []
                for position, state in enumerate(message.recipients):
                    state.attempts = tries
                    state.last_reply = DEFERRED_REPLY
                    rows += [
                        Attempt(
                            position,
                            fake[0] + 600 * k,
                            RecipientStatus.PENDING,
                            DEFERRED_REPLY,
                            f"mx{k % 2}.{state.recipient.address.split('@')[1]}",
                        )
                        for k in range(tries)
                    ]
                message.attempts = tries
                message.next_attempt = real_now + rng.uniform(600, 4 * 3600)
                with_history += 1
                updates.append(store.record_attempt(message, rows))
            await asyncio.gather(*updates)
    finally:
        await store.close()
    return {
        "messages": messages,
        "due": due,
        "with_history": with_history,
        "fill_seconds": round(time.perf_counter() - started, 2),
        "spool_mib": round(_du(data_dir / "spool") / 2**20, 1),
    }


def _du(path: Path) -> int:
    return sum(
        (Path(root) / name).stat().st_size for root, _dirs, files in os.walk(path) for name in files
    )


def _hwm_by_role(root: int) -> dict[str, int]:
    """VmHWM (KiB) of the server and of its delivery worker."""
    out = {"server_kib": 0, "worker_kib": 0}
    for pid in tree(root):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            hwm = proc_status(pid, "VmHWM")
        except (OSError, ServerError):
            continue
        key = "server_kib" if pid == root else ("worker_kib" if b"worker" in cmdline else None)
        if key:
            out[key] = hwm
    return out


def measure_start(workdir: Path, data: Result, due: int) -> Result:
    sink: Sink = start_sink(workdir / "sink")
    extra = RECOVERY_CONFIG.format(sink_port=sink.port, dns_port=free_port())
    server = None
    try:
        spawned = time.perf_counter()
        server = start_mailwright(workdir, extra_config=extra)
        listening = time.perf_counter() - spawned
        first = all_due = None
        deadline = time.monotonic() + WAIT_TIMEOUT
        while time.monotonic() < deadline and server.alive():
            count = sink.delivered()
            if count and first is None:
                first = time.perf_counter() - spawned
            if count >= due:
                all_due = time.perf_counter() - spawned
                break
            time.sleep(0.02)
        memory = _hwm_by_role(server.pid)
        return {
            "listening_seconds": round(listening, 3),
            "first_delivery_seconds": None if first is None else round(first, 3),
            "all_due_delivered_seconds": None if all_due is None else round(all_due, 3),
            "delivered": sink.delivered(),
            **memory,
        }
    finally:
        if server is not None:
            data["exit_status"] = server.stop()
        sink.stop()


def measure_list(workdir: Path) -> Result:
    config = workdir / "mailwright.toml"
    config.write_text(f'data_dir = "{workdir / "data"}"\n')  # serve rewrites it in full
    argv = [*mailwright_command(), "queue", "list", "--json", "-c", str(config)]
    started = time.perf_counter()
    shell = f"{subprocess.list2cmdline(argv)} | wc -l"
    done = subprocess.run(shell, shell=True, capture_output=True, text=True, timeout=600)
    return {
        "list_seconds": round(time.perf_counter() - started, 2),
        "list_lines": int(done.stdout.strip() or 0),
        "list_stderr": done.stderr.strip()[-300:],
    }


def run(messages: int, args: Any, tmp: Path) -> Result:
    workdir = tmp / f"q{messages}"
    data_dir = workdir / "data"
    print(f"… fill {messages}", file=sys.stderr)
    result = asyncio.run(fill(data_dir, messages, args.due, args.seed))
    # The listing first, while every message is still queued (the start delivers some).
    print(f"… queue list with {messages} queued", file=sys.stderr)
    result.update(measure_list(workdir))
    print(f"… start with {messages} queued", file=sys.stderr)
    result.update(measure_start(workdir, result, result["due"]))
    problems = []
    if result["list_lines"] != messages:
        problems.append(f"queue list printed {result['list_lines']} lines for {messages}")
    if result["all_due_delivered_seconds"] is None:
        problems.append(f"only {result['delivered']} of {result['due']} due messages delivered")
    result["problems"] = problems
    return result


def report(data: Result) -> str:
    lines = [
        "## mailwright start-up with a deferred queue",
        "",
        f"{data['started']} · git {data['machine']['git_commit']} · nproc "
        f"{data['machine']['nproc']} · load {data['machine']['loadavg_start'][0]:.2f}",
        "",
        "| queued | due | fill s | spool MiB | to listening s | to first delivery s | "
        "all due delivered s | server peak RSS MiB | worker peak RSS MiB | "
        "queue list --json s (lines) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["runs"]:
        first = r.get("first_delivery_seconds")
        every = r.get("all_due_delivered_seconds")
        lines.append(
            f"| {r['messages']} | {r['due']} | {r['fill_seconds']} | {r['spool_mib']} | "
            f"{r['listening_seconds']:.2f} | {'-' if first is None else f'{first:.2f}'} | "
            f"{'-' if every is None else f'{every:.2f}'} | {r['server_kib'] / 1024:.1f} | "
            f"{r['worker_kib'] / 1024:.1f} | {r['list_seconds']:.2f} ({r['list_lines']}) |"
        )
    problems = [f"- {r['messages']}: {p}" for r in data["runs"] for p in r["problems"]]
    if problems:
        lines += ["", "**Problems:**", *problems]
    if data.get("error"):
        lines += ["", f"**Run aborted:** {data['error']}"]
    lines += ["", f"JSON: {data.get('json_path', '-')}"]
    return "\n".join(lines)


def _sizes(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or any(v < 1 or v > 1_000_000 for v in values):
        raise argparse.ArgumentTypeError("expected comma-separated counts from 1 to 1000000")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="start-up time and memory with a big queue")
    parser.add_argument("--messages", type=_sizes, help="queue sizes (default 10000,100000)")
    parser.add_argument("--quick", action="store_true", help="one queue of 5000 (smoke test)")
    parser.add_argument("--due", type=float, default=0.01, help="share due at start (0.01)")
    parser.add_argument("--seed", type=int, default=10, help="random seed of the envelopes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON")
    args = parser.parse_args(argv)
    if not 0 < args.due <= 1:
        parser.error("--due must be in (0, 1]")
    sizes = args.messages or ((5000,) if args.quick else (10_000, 100_000))
    started = datetime.now(UTC)
    data: Result = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "runs": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="mailwright-recovery-"))
    tmp.chmod(0o755)  # smtp-sink runs as nobody
    failed = False
    try:
        for messages in sizes:
            data["runs"].append(run(messages, args, tmp))
            failed |= bool(data["runs"][-1]["problems"])
    except (ServerError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        failed = True
        data["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop_all()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"recovery-{started:%Y%m%dT%H%M%SZ}.json"
    data["json_path"] = str(json_path)
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    print(report(data))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
