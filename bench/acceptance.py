"""The acceptance benchmark: mailwright against a durable aiosmtpd baseline.

    .venv/bin/python bench/acceptance.py [--quick] [--repeats N] [--reuse] [--check-targets]

For every cell (1 KB and 100 KB messages x 1, 10 and 50 parallel sessions) both
servers are started fresh (own temporary data folder, port 0), warmed up, then Postfix
``smtp-source`` sends the cell's messages and its wall time gives messages/second.
After each cell the stored mail is counted — mailwright: ``accepted`` and
``delivered`` lines in the mail log and files in the Maildir once the queue runner has
drained; aiosmtpd: files in its folder — and a cell that lost or refused mail fails
the run (exit status 2).  Peak RSS (VmHWM) and CPU seconds of each server come from
/proc.  Then 1,000 idle connections (greeted, then held) measure RSS per connection.

Results: a Markdown report on stdout and JSON in ``bench/results/<UTC time>.json``.
See bench/README.md for how to read them.  Everything runs on 127.0.0.1 only, every
loop and wait is bounded, and every server process is stopped on the way out.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import idle_connections, smtp_source
from _report import KB, build_slowsync, evaluate, filesystem_facts, machine_facts, report
from _run import exit_status, kept_note, measure, publish
from _servers import (
    ServerError,
    ServerProcess,
    count_files,
    maildir_new_count,
    maillog_events,
    recommended_processes,
    set_prefix,
    start_aiosmtpd,
    start_mailwright,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
SERVERS = ("mailwright", "aiosmtpd")

Result = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    concurrency: tuple[int, ...]
    messages: dict[int, int]  # concurrency -> timed messages per cell
    warmup: int
    idle_connections: int
    settle: float

    @classmethod
    def full(cls) -> Plan:
        return cls((1 * KB, 100 * KB), (1, 10, 50), {1: 500, 10: 1000, 50: 2000}, 50, 1000, 1.0)

    def narrowed(
        self, sizes_kb: tuple[int, ...] | None, conc: tuple[int, ...] | None, messages: int | None
    ) -> Plan:
        """The plan with the command line's choices of sizes, concurrency and counts."""
        concurrency = conc or self.concurrency
        counts = {
            c: messages or self.messages.get(c, max(self.messages.values())) for c in concurrency
        }
        sizes = tuple(kb * KB for kb in sizes_kb) if sizes_kb else self.sizes
        return replace(self, sizes=sizes, concurrency=concurrency, messages=counts)

    @classmethod
    def quick(cls) -> Plan:
        return cls((1 * KB, 100 * KB), (1, 10, 50), {1: 40, 10: 100, 50: 200}, 10, 200, 0.5)


# -- one cell ----------------------------------------------------------------------------


def _wait_until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def _stored(server: ServerProcess) -> dict[str, int]:
    """What the server has stored so far (see the module docstring)."""
    if server.name == "mailwright":
        events = maillog_events(server.data_dir)
        return {
            "accepted": events.get("accepted", 0),
            "delivered": events.get("delivered", 0),
            "maildir": maildir_new_count(server.data_dir),
            "rejected": events.get("rejected", 0),
            "deferred": events.get("deferred", 0),
            "bounced": events.get("bounced", 0),
        }
    return {"accepted": count_files(server.data_dir), "maildir": count_files(server.data_dir)}


def _complete(stored: dict[str, int], expected: int) -> bool:
    keys = ("accepted", "delivered", "maildir") if "delivered" in stored else ("accepted",)
    return all(stored[k] >= expected for k in keys)


def _uses_uvloop(pid: int) -> bool:
    """Whether the process has uvloop's extension loaded (from its memory map)."""
    try:
        return "uvloop/loop." in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def start_server(name: str, workdir: Path, args: Any) -> ServerProcess:
    if name == "mailwright":
        command = shlex.split(args.mailwright_command) if args.mailwright_command else None
        return start_mailwright(workdir, command, processes=args.processes)
    return start_aiosmtpd(workdir, uvloop=args.baseline_uvloop)


def start_profiler(server: ServerProcess, args: Any, label: str) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` on mailwright for one cell, when ``--py-spy DIR`` asks for it."""
    if not args.py_spy or server.name != "mailwright":
        return None
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise ServerError("--py-spy: py-spy is not installed (pip install py-spy)")
    args.py_spy.mkdir(parents=True, exist_ok=True)
    out = args.py_spy / f"{label}.svg"
    argv = [exe, "record", "-p", str(server.pid), "-o", str(out), "-r", "100", "--threads"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let it attach before the load starts
    return proc


def stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def run_cell(
    name: str, workdir: Path, *, conc: int, size: int, count: int, plan: Plan, args: Any
) -> Result:
    """Start ``name`` fresh, warm it up, time ``count`` messages, verify, stop it."""
    server = start_server(name, workdir, args)
    profiler = None
    result: Result = {"server": name, "pid": server.pid, "port": server.port}
    source_timeout = 60.0 + count * (0.5 if size > 10 * KB else 0.2)
    drain_timeout = 30.0 + count * 0.1
    try:
        result["uvloop"] = _uses_uvloop(server.pid)
        warm = smtp_source(
            server.port,
            sessions=min(conc, plan.warmup),
            messages=plan.warmup,
            size=size,
            reuse=args.reuse,
            timeout=source_timeout,
        )
        if warm.returncode != 0:
            raise ServerError(f"warm-up failed ({warm.returncode}): {warm.stderr[-500:]}")
        _wait_until(lambda: _complete(_stored(server), plan.warmup), drain_timeout)
        profiler = start_profiler(server, args, f"{size // KB}KB-c{conc}-{workdir.name}")
        cpu0, own0 = server.cpu_seconds(), server.own_cpu_seconds()
        run = smtp_source(
            server.port,
            sessions=conc,
            messages=count,
            size=size,
            reuse=args.reuse,
            timeout=source_timeout,
        )
        own1 = server.own_cpu_seconds()
        expected = plan.warmup + count
        drain_start = time.perf_counter()
        drained = _wait_until(lambda: _complete(_stored(server), expected), drain_timeout)
        drain_seconds = time.perf_counter() - drain_start
        cpu2 = server.cpu_seconds()
        stop_profiler(profiler)
        profiler = None
        stored = _stored(server)
        lost = {k: stored[k] for k in ("accepted", "delivered", "maildir") if k in stored}
        refused = sum(stored.get(k, 0) for k in ("rejected", "deferred", "bounced"))
        problems = []
        if run.returncode != 0:
            problems.append(f"smtp-source exit {run.returncode}: {run.stderr.strip()[-300:]}")
        if not drained or any(v != expected for v in lost.values()):
            problems.append(f"expected {expected} of each, stored {lost}")
        if refused:
            problems.append(f"{refused} rejected/deferred/bounced events in the mail log")
        if not server.alive():
            problems.append(f"server died: {server.output()[-500:]}")
        result.update(
            messages=count,
            seconds=round(run.seconds, 3),
            msgs_per_s=round(count / run.seconds, 1) if run.returncode == 0 else 0.0,
            # The server process during the run: receiving and storing (mailwright's
            # delivery worker is a child process, counted only in the next figure).
            cpu_ms_per_msg=round((own1 - own0) * 1000 / count, 3),
            cpu_ms_per_msg_with_delivery=round((cpu2 - cpu0) * 1000 / count, 3),
            drain_seconds=round(drain_seconds, 3) if name == "mailwright" else 0.0,
            vm_hwm_kib=server.status("VmHWM"),
            vm_rss_kib=server.status("VmRSS"),
            threads=server.status("Threads"),
            loadavg=os.getloadavg()[0],
            stored=stored,
            expected=expected,
            verified=not problems,
            problems=problems,
            smtp_source=shlex.join(run.argv),
        )
    finally:
        stop_profiler(profiler)
        result["exit_status"] = server.stop()
        # The data folder stays until the whole run ends (main removes the temporary
        # folder): deleting thousands of files makes file creation slower for tens of
        # seconds afterwards on some file systems (ext4 without a journal re-checks
        # recently freed inodes), which would bill one server for the other's cleanup.
    return result


def run_idle(name: str, workdir: Path, plan: Plan, args: Any) -> Result:
    server = start_server(name, workdir, args)
    try:
        measured = idle_connections(server, plan.idle_connections, plan.settle)
        result: Result = {"server": name, **measured}
    finally:
        server.stop()  # its data folder goes with the run's temporary folder (run_cell)
    return result


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="mailwright vs aiosmtpd acceptance benchmark")
    parser.add_argument("--quick", action="store_true", help="small counts (about a minute)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; best is kept")
    parser.add_argument("--reuse", action="store_true", help="smtp-source -d: reuse sessions")
    parser.add_argument("--baseline-uvloop", action="store_true", help="aiosmtpd on uvloop")
    parser.add_argument("--only-idle", action="store_true", help="skip the throughput cells")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle-connection test")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folders")
    parser.add_argument(
        "--sizes", type=_ints, help="message sizes in KB, comma-separated (default 1,100)"
    )
    parser.add_argument(
        "--concurrency", type=_ints, help="parallel sessions, comma-separated (default 1,10,50)"
    )
    parser.add_argument("--messages", type=int, help="timed messages per cell (default: plan)")
    parser.add_argument(
        "--mailwright-command",
        help='how to start mailwright instead of this venv\'s script, e.g. "python -m mailwright"',
    )
    parser.add_argument(
        "--server-prefix",
        help='command both servers run under, which must exec them: "eatmydata" (no fsync: '
        'the CPU ceiling), "taskset -c 1"...',
    )
    parser.add_argument(
        "--flush-delay-ms",
        type=float,
        default=0.0,
        help="make every fsync/fdatasync of both servers take this much longer "
        "(bench/slowsync.c, needs a C compiler): a slow disk on a fast VM",
    )
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="record a py-spy flame graph per mailwright cell"
    )
    parser.add_argument(
        "--tmpdir", type=Path, help="where the servers' data folders go (default: system temp)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=recommended_processes(),
        help="mailwright's smtp.processes (default: the CPU count minus one, as recommended "
        "for a busy MX; 0 runs the sessions in the server process)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON")
    parser.add_argument(
        "--check-targets", action="store_true", help="exit 1 when a performance target is missed"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.repeats <= 10:
        parser.error("--repeats must be between 1 and 10")
    if not 0 <= args.processes <= 256:
        parser.error("--processes must be between 0 and 256")
    if args.messages is not None and not 1 <= args.messages <= 100_000:
        parser.error("--messages must be between 1 and 100000")
    return args


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or any(v < 1 or v > 1000 for v in values):
        raise argparse.ArgumentTypeError("expected comma-separated numbers from 1 to 1000")
    return values


def run_cells(plan: Plan, args: Any, tmp: Path, data: Result) -> bool:
    """Every (size, concurrency) cell for both servers; False if a run lost mail."""
    ok = True
    for index, (size, conc) in enumerate(
        (size, conc) for size in plan.sizes for conc in plan.concurrency
    ):
        count = plan.messages[conc]
        cell: Result = {"size": size, "concurrency": conc, "messages": count}
        cell.update({name: [] for name in SERVERS})
        data["cells"].append(cell)
        for repeat in range(args.repeats):
            # Alternate who goes first, so slow drift in machine load (other work on
            # the box) does not always favour one server.
            order = SERVERS if (index + repeat) % 2 == 0 else SERVERS[::-1]
            for name in order:
                workdir = tmp / f"{name}-{size}-{conc}-{repeat}"
                print(f"… {name} {size // KB} KB c={conc} n={count}", file=sys.stderr)
                run = run_cell(
                    name, workdir, conc=conc, size=size, count=count, plan=plan, args=args
                )
                data["uvloop"][name] = run.get("uvloop")
                cell[name].append(run)
                ok &= bool(run.get("verified"))
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.quick() if args.quick else Plan.full()
    plan = plan.narrowed(args.sizes, args.concurrency, args.messages)
    started = datetime.now(UTC)
    data: Result = {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "reuse": args.reuse,
        "server_prefix": args.server_prefix,
        "flush_delay_ms": args.flush_delay_ms,
        "mailwright_command": args.mailwright_command,
        "processes": args.processes,
        "repeats": args.repeats,
        "plan": {
            "sizes": plan.sizes,
            "concurrency": plan.concurrency,
            "messages": plan.messages,
            "warmup": plan.warmup,
            "idle_connections": plan.idle_connections,
        },
        "machine": machine_facts(),
        "cells": [],
        "idle": [],
        "uvloop": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="mailwright-bench-", dir=args.tmpdir))
    data["machine"]["data_filesystem"] = filesystem_facts(tmp)

    def cells() -> bool:
        failed = False
        prefix = shlex.split(args.server_prefix or "")
        if args.flush_delay_ms > 0:
            shim = build_slowsync(tmp)
            prefix = ["env", f"LD_PRELOAD={shim}", f"SLOWSYNC_MS={args.flush_delay_ms:g}", *prefix]
        set_prefix(prefix)
        if not args.only_idle:
            failed |= not run_cells(plan, args, tmp, data)
        for name in () if args.no_idle else SERVERS:
            print(f"… {name} {plan.idle_connections} idle connections", file=sys.stderr)
            data["idle"].append(run_idle(name, tmp / f"{name}-idle", plan, args))
        return failed

    failed = measure(data, started, tmp, cells, keep=args.keep)
    data["targets"] = evaluate(data)
    stem = f"{started:%Y%m%dT%H%M%SZ}{'-quick' if args.quick else ''}"
    publish(data, args.out, stem, report, kept=kept_note(tmp, args.keep))
    return exit_status(failed, data["targets"], args.check_targets)


if __name__ == "__main__":
    sys.exit(main())
