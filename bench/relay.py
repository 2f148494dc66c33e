"""The relay benchmark: mailwright against a private Postfix, both relaying to smtp-sink.

    .venv/bin/python bench/relay.py [--quick] [--concurrency 10,50] [--seconds 30]

For every concurrency and each server: a fresh ``smtp-sink`` (counting what it
receives), the server started fresh and configured to relay all mail from 127.0.0.0/8
to ``[127.0.0.1]:SINKPORT``, a warm-up, then ``smtp-source`` (1 KB, ``-s C``, one
connection per message) in batches until the load time (30 s) has passed.  Then the
run waits (bounded) until the sink has every message the server accepted.  A server
that keeps up delivers as fast as it accepts; one that builds a backlog pays for it
here, because the rate is

    delivered/s = messages delivered to the sink / (last delivery - first send).

CPU is that of the whole server process tree (mailwright: server, session processes,
delivery worker; Postfix: master, smtpd, cleanup, qmgr, smtp, trivial-rewrite...,
including processes that exited meanwhile), RSS is the tree's summed VmRSS sampled
every half second.  Markdown on stdout, JSON in ``bench/results/relay-<time>.json``.
See bench/README.md.  Only 127.0.0.1 is used; every wait is bounded; every process
started is stopped on the way out.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import HELO_NAME, SENDER, smtp_source_path
from _relayd import (
    Postfix,
    Sink,
    start_mailwright_relay,
    start_postfix,
    start_sink,
    tree_cpu_by_role,
    tree_cpu_seconds,
    tree_memory_kib,
)
from _report import KB, filesystem_facts, machine_facts
from _run import exit_status, kept_note, measure, publish
from _servers import HOST, ServerError, ServerProcess, maillog_events, recommended_processes

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
SERVERS = ("mailwright", "postfix")
TARGET_RATIO = 1.5  # mailwright / Postfix delivered/s (issue 10)
RECIPIENT = "sink@remote.bench.test"  # not local to either server: relayed
MESSAGE_SIZE = 1 * KB
BATCH_PER_SESSION = 20  # messages per smtp-source run = this x concurrency
RSS_SAMPLE_SECONDS = 0.5
POLL_SECONDS = 0.02  # how often the sink's counter is read while waiting
WARMUP = 50

Result = dict[str, Any]


def _wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(POLL_SECONDS)
    return check()


def smtp_source(
    port: int, sessions: int, messages: int, timeout: float
) -> tuple[int, str, list[str]]:
    argv = [
        smtp_source_path(),
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-l",
        str(MESSAGE_SIZE),
        "-M",
        HELO_NAME,
        "-f",
        SENDER,
        "-t",
        RECIPIENT,
        "-S",
        "mailwright relay benchmark",
        f"{HOST}:{port}",
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
        )
    except subprocess.TimeoutExpired as exc:
        return -9, f"timed out: {(exc.stderr or b'').decode(errors='replace')}", argv
    return done.returncode, done.stderr.decode(errors="replace"), argv


class RssSampler(threading.Thread):
    """The peaks of a process tree's summed VmRSS and Pss, sampled until stopped."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_rss_kib = 0
        self.peak_pss_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            rss, pss = tree_memory_kib(self.root)
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.peak_pss_kib = max(self.peak_pss_kib, pss)
            self._stop_event.wait(RSS_SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


class Running:
    """One started server, whichever it is: its port, process tree and problems."""

    def __init__(self, name: str, workdir: Path, sink: Sink, args: Any) -> None:
        self.name = name
        self.mw: ServerProcess | None = None
        self.pf: Postfix | None = None
        if name == "mailwright":
            command = shlex.split(args.mailwright_command) if args.mailwright_command else None
            self.mw = start_mailwright_relay(
                workdir,
                sink.port,
                processes=args.processes,
                tls=args.tls,
                command=command,
                worker_nice=args.worker_nice,
            )
            self.port = self.mw.port
        else:
            self.pf = start_postfix(workdir, sink.port, tls=args.tls)
            self.port = self.pf.port

    def root(self) -> int:
        return self.mw.pid if self.mw else self.pf.master_pid()  # type: ignore[union-attr]

    def problems(self) -> list[str]:
        if self.mw:
            events = maillog_events(self.mw.data_dir)
            bad = {k: events[k] for k in ("rejected", "deferred", "bounced") if events.get(k)}
            alive = self.mw.alive()
            return ([f"mail log: {bad}"] if bad else []) + (
                [] if alive else [f"server died: {self.mw.output()[-500:]}"]
            )
        assert self.pf is not None
        log = self.pf.log()
        bad = [
            line
            for line in log.splitlines()
            if "status=deferred" in line or "status=bounced" in line or " reject: " in line
        ]
        if not bad:
            return []
        return [f"Postfix log: {len(bad)} deferred/bounced/reject lines, e.g. {bad[0]}"]

    def stop(self) -> None:
        if self.mw:
            self.mw.stop()
        elif self.pf:
            self.pf.stop()


def run_cell(name: str, workdir: Path, conc: int, args: Any) -> Result:
    sink = start_sink(workdir)
    server: Running | None = None
    result: Result = {"server": name, "concurrency": conc}
    batch = conc * BATCH_PER_SESSION
    source_timeout = 120.0 + batch * 0.2
    try:
        server = Running(name, workdir, sink, args)
        code, err, _ = smtp_source(server.port, min(conc, WARMUP), WARMUP, source_timeout)
        if code != 0:
            raise ServerError(f"{name} warm-up failed ({code}): {err[-500:]}")
        if not _wait_until(lambda: sink.delivered() >= WARMUP, args.drain_timeout):
            raise ServerError(f"{name}: the warm-up did not reach the sink")
        base = sink.delivered()
        root = server.root()
        sampler = RssSampler(root)
        sampler.start()
        cpu0, roles0 = tree_cpu_seconds(root), tree_cpu_by_role(root)
        accepted, batches, problems, argv = 0, 0, [], []
        start = time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            code, err, argv = smtp_source(server.port, conc, batch, source_timeout)
            batches += 1
            if code != 0:
                problems.append(f"smtp-source exit {code}: {err.strip()[-300:]}")
                break
            accepted += batch
        load_seconds = time.perf_counter() - start
        backlog = accepted - (sink.delivered() - base)
        done = _wait_until(lambda: sink.delivered() - base >= accepted, args.drain_timeout)
        end = time.perf_counter()
        cpu1, roles1 = tree_cpu_seconds(root), tree_cpu_by_role(root)
        sampler.stop()
        delivered = sink.delivered() - base
        if not done:
            problems.append(f"only {delivered} of {accepted} reached the sink in time")
        elif delivered != accepted:
            problems.append(f"the sink got {delivered} messages for {accepted} accepted")
        problems += server.problems()
        total = end - start
        result.update(
            accepted=accepted,
            delivered=delivered,
            batches=batches,
            batch=batch,
            load_seconds=round(load_seconds, 3),
            total_seconds=round(total, 3),
            drain_seconds=round(end - start - load_seconds, 3),
            accepted_per_s=round(accepted / load_seconds, 1) if accepted else 0.0,
            delivered_per_s=round(delivered / total, 1) if done else 0.0,
            backlog_at_load_end=backlog,
            cpu_ms_per_msg=round((cpu1 - cpu0) * 1000 / max(delivered, 1), 3),
            cpu_share=round((cpu1 - cpu0) / total, 3),
            cpu_ms_per_msg_by_process={
                role: round(
                    (roles1.get(role, 0.0) - roles0.get(role, 0.0)) * 1000 / max(delivered, 1), 3
                )
                for role in sorted(set(roles0) | set(roles1))
            },
            peak_rss_kib=sampler.peak_rss_kib,
            peak_pss_kib=sampler.peak_pss_kib,
            loadavg=os.getloadavg()[0],
            smtp_source=shlex.join(argv),
            verified=not problems,
            problems=problems,
        )
    finally:
        if server is not None:
            server.stop()
        sink.stop()
    return result


def _best(runs: list[Result]) -> Result:
    return max(runs, key=lambda r: r.get("delivered_per_s", 0.0), default={})


def report(data: Result) -> str:
    facts = data["machine"]
    lines = [
        "## mailwright relay benchmark (vs Postfix, both relaying to smtp-sink)",
        "",
        f"{data['started']} · mode `{data['mode']}` · load {data['seconds_per_cell']} s per cell"
        f" · 1 KB, one connection per message · outbound TLS `{data['tls']}` · repeats "
        f"{data['repeats']} · mailwright smtp.processes {data['processes']}, delivery worker "
        + (
            "idle priority"
            if data.get("worker_nice") is None
            else f"normal priority, nice {data['worker_nice']}"
        ),
        f"nproc {facts['nproc']} · Python {facts['python']} · mailwright {facts['mailwright']}"
        f" · Postfix {facts['postfix']} · git {facts['git_commit']}"
        f"{' (dirty)' if facts['git_dirty'] else ''} · load {facts['loadavg_start'][0]:.2f} → "
        f"{facts['loadavg_end'][0]:.2f} · data on "
        + facts.get("data_filesystem", {}).get("type", "?"),
        "",
        "| conc | server | accepted | accepted/s | delivered/s (end to end) | backlog at load end "
        "| drain s | CPU ms/msg (all processes) | peak PSS MiB | peak RSS MiB | verified |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for cell in data["cells"]:
        for name in SERVERS:
            run = _best(cell[name])
            lines.append(
                f"| {cell['concurrency']} | {name} | {run.get('accepted', 0)} | "
                f"{run.get('accepted_per_s', 0):.0f} | {run.get('delivered_per_s', 0):.0f} | "
                f"{run.get('backlog_at_load_end', 0)} | {run.get('drain_seconds', 0):.1f} | "
                f"{run.get('cpu_ms_per_msg', 0):.2f} | {run.get('peak_pss_kib', 0) / 1024:.1f} | "
                f"{run.get('peak_rss_kib', 0) / 1024:.1f} | "
                f"{'yes' if all(r.get('verified') for r in cell[name]) else 'NO'} |"
            )
    lines += [
        "",
        "CPU ms/msg by process (live ones by name; exited ones, e.g. Postfix's"
        " short-lived daemons, under (exited)):",
    ]
    for cell in data["cells"]:
        for name in SERVERS:
            roles = _best(cell[name]).get("cpu_ms_per_msg_by_process", {})
            shown = ", ".join(f"{role} {ms:.2f}" for role, ms in roles.items() if abs(ms) >= 0.005)
            if shown:
                lines.append(f"- c={cell['concurrency']} {name}: {shown}")
    lines += ["", "| target | measured | goal | met |", "|:---|---:|---:|:---|"]
    for target in data["targets"]:
        lines.append(
            f"| {target['name']} | {target['measured']} | {target['goal']} | "
            f"{'yes' if target['met'] else '**no**'} |"
        )
    problems = [
        f"- {r['server']} c={cell['concurrency']}: {p}"
        for cell in data["cells"]
        for name in SERVERS
        for r in cell[name]
        for p in r.get("problems", [])
    ]
    if problems:
        lines += ["", "**Problems:**", *problems]
    if data.get("error"):
        lines += ["", f"**Run aborted:** {data['error'].strip()[-1500:]}"]
    lines += ["", f"JSON: {data.get('json_path', '-')}"]
    return "\n".join(lines)


def evaluate(data: Result) -> list[Result]:
    targets = []
    for cell in data["cells"]:
        mw, pf = _best(cell["mailwright"]), _best(cell["postfix"])
        pf_rate = pf.get("delivered_per_s", 0.0)
        ratio = mw.get("delivered_per_s", 0.0) / pf_rate if pf_rate else 0.0
        targets.append(
            {
                "name": f"mailwright/Postfix delivered/s, c={cell['concurrency']}",
                "measured": f"{ratio:.2f}×",
                "goal": f"≥ {TARGET_RATIO:g}×",
                "met": ratio >= TARGET_RATIO,
                "value": round(ratio, 3),
            }
        )
    runs = [r for cell in data["cells"] for name in SERVERS for r in cell[name]]
    targets.append(
        {
            "name": "every accepted message reached the sink, no deferral/bounce",
            "measured": f"{sum(bool(r.get('verified')) for r in runs)}/{len(runs)} runs",
            "goal": "all",
            "met": bool(runs) and not data.get("error") and all(r.get("verified") for r in runs),
        }
    )
    return targets


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or any(v < 1 or v > 500 for v in values):
        raise argparse.ArgumentTypeError("expected comma-separated numbers from 1 to 500")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="mailwright vs Postfix relay benchmark")
    parser.add_argument("--quick", action="store_true", help="5 s of load per cell (smoke test)")
    parser.add_argument("--seconds", type=float, help="load time per cell (default 30)")
    parser.add_argument("--concurrency", type=_ints, default=(10, 50), help="default 10,50")
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; best is kept")
    parser.add_argument("--only", choices=SERVERS, help="run one server only")
    parser.add_argument(
        "--tls",
        choices=("none", "may"),
        default="none",
        help="outbound TLS level of both servers (smtp-sink has no TLS)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=recommended_processes(),
        help="mailwright's smtp.processes (default: the CPU count minus one, as the README "
        "recommends for a busy MX)",
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        choices=range(20),
        metavar="0-19",
        help="run mailwright's delivery worker as a normal process at this nice value "
        "(delivery.worker_idle = false) instead of at idle priority (the default)",
    )
    parser.add_argument("--mailwright-command", help="start mailwright with this command")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the sink to have every message",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON")
    parser.add_argument("--check-targets", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 30.0
    if not 1 <= args.seconds <= 3600:
        parser.error("--seconds must be between 1 and 3600")
    if not 1 <= args.repeats <= 10:
        parser.error("--repeats must be between 1 and 10")
    if not 0 <= args.processes <= 256:
        parser.error("--processes must be between 0 and 256")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    servers = (args.only,) if args.only else SERVERS
    data: Result = {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "seconds_per_cell": args.seconds,
        "tls": args.tls,
        "processes": args.processes,
        "repeats": args.repeats,
        "mailwright_command": args.mailwright_command,
        "worker_nice": args.worker_nice,
        "machine": machine_facts(),
        "cells": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="mailwright-relaybench-"))
    tmp.chmod(0o755)  # Postfix's daemons (user postfix) and smtp-sink (nobody) enter it
    data["machine"]["data_filesystem"] = filesystem_facts(tmp)

    def cells() -> bool:
        failed = False
        for index, conc in enumerate(args.concurrency):
            cell: Result = {"concurrency": conc, **{name: [] for name in SERVERS}}
            data["cells"].append(cell)
            for repeat in range(args.repeats):
                # Alternate who goes first: drift in the machine's load favours neither.
                order = servers if (index + repeat) % 2 == 0 else servers[::-1]
                for name in order:
                    print(f"… {name} c={conc} {args.seconds:g} s", file=sys.stderr)
                    run = run_cell(name, tmp / f"{name}-{conc}-{repeat}", conc, args)
                    cell[name].append(run)
                    failed |= not run.get("verified")
        return failed

    failed = measure(data, started, tmp, cells, keep=args.keep)
    data["targets"] = evaluate(data)
    stem = f"relay-{started:%Y%m%dT%H%M%SZ}{'-quick' if args.quick else ''}"
    publish(data, args.out, stem, report, kept=kept_note(tmp, args.keep))
    return exit_status(failed, data["targets"], args.check_targets)


if __name__ == "__main__":
    sys.exit(main())
