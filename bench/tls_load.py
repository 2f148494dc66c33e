"""TLS load test: 1,000 concurrent TLS sessions, handshakes/second, STARTTLS acceptance rate.

    .venv/bin/python bench/tls_load.py [--quick] [--workers N] [--py-spy DIR]

Each part runs on a fresh ``mailwright serve`` (own data folder, self-signed certificate
generated on start, an inbound listener with STARTTLS and an implicit-TLS
``submissions`` listener with ``require_auth = false`` so unauthenticated clients can
send through it), warmed up first; the load generator is ``_tlsclient.py`` (asyncio +
ssl on uvloop; Postfix's ``smtp-source`` has no TLS) in a pool of worker processes:

1. **acceptance rate**: 1 KB messages, one per connection, 50 sessions at once, with
   STARTTLS and in plaintext (same client, same server, alternating order), plus
   ``smtp-source`` in plaintext on the same server — the foundation benchmark's method,
   whose latest full result in ``bench/results`` is shown next to it;
2. **handshakes/second** on the implicit-TLS port (connect, handshake, 220, QUIT) one at
   a time and 50 at once, plus STARTTLS handshakes and plaintext connections at 50 for
   comparison; the server's CPU time per connection comes from /proc/PID/stat;
3. **1,000 concurrent TLS sessions**: 1,000 connections opened at once to the inbound
   port, each doing EHLO, STARTTLS, handshake, EHLO — all held open until every one got
   there — then MAIL, RCPT, DATA (1 KB), QUIT; then the same with implicit TLS.  Must
   end with no error and every message accepted and delivered.

Every message step is verified against the mail log (``accepted``, ``delivered``) and
the Maildir after the queue drained.  Before each measurement the run waits (bounded)
until no ``bench/acceptance.py`` runs and the load average is low, and records whether
it had to measure under load.  Results: Markdown on stdout and in
``bench/results/tls-<UTC time>.md``, JSON next to it.  Only 127.0.0.1 is used; every
wait is bounded; the server and the workers are stopped on the way out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import raise_nofile, smtp_source
from _report import KB, filesystem_facts, machine_facts
from _run import kept_note, measure, publish
from _servers import (
    ServerError,
    ServerProcess,
    maildir_new_count,
    maillog_events,
    start_mailwright,
)
from _tlsclient import Job, merge, run_job
from acceptance import RESULTS_DIR, _uses_uvloop, _wait_until, start_profiler, stop_profiler

ROLES = ("inbound", "submissions")
EXTRA_CONFIG = """
[[listener]]
address = "127.0.0.1"
port = 0
role = "submissions"
require_auth = false   # benchmark only: unauthenticated mail over implicit TLS

[tls]
self_signed = true     # EC P-256 certificate generated in data_dir/tls on start
"""
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+) \((\w+)\)")
_STARTUP_LINES = ("mailwright: listening on", "mailwright: certificate", "mailwright: data in")
MAX_CONNECTIONS_PER_JOB = 200_000  # bound for the timed handshake steps
START_DELAY = 0.3  # seconds between handing out jobs and their common start

Result = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    size: int  # message payload octets
    warmup: int  # messages of each kind before anything is timed
    rate_concurrency: int
    rate_messages: int  # per acceptance-rate step
    repeats: int  # STARTTLS/plaintext pairs, in ABBA order
    hs_concurrency: int
    hs_seconds_sequential: float
    hs_seconds_concurrent: float
    burst_sessions: int  # the "1,000 concurrent TLS sessions"

    @classmethod
    def full(cls) -> Plan:
        return cls(1 * KB, 50, 50, 2000, 2, 50, 5.0, 10.0, 1000)

    @classmethod
    def quick(cls) -> Plan:
        return cls(1 * KB, 10, 50, 200, 1, 50, 2.0, 3.0, 200)


# -- the machine: wait until nobody else is measuring ----------------------------------


def _acceptance_running() -> bool:
    try:
        done = subprocess.run(
            ["pgrep", "-f", "bench/acceptance.py"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def wait_for_quiet(max_load: float, max_wait: float, poll: float = 15.0) -> Result:
    """Wait (bounded) until no acceptance benchmark runs and the 1-min load is low."""
    start = time.monotonic()
    while True:
        busy = _acceptance_running()
        load = os.getloadavg()[0]
        waited = time.monotonic() - start
        if not busy and load < max_load:
            return {"quiet": True, "waited_s": round(waited, 1), "loadavg": round(load, 2)}
        if waited >= max_wait:
            print(
                f"… measuring under load: acceptance.py running={busy}, load {load:.2f}",
                file=sys.stderr,
            )
            return {
                "quiet": False,
                "waited_s": round(waited, 1),
                "loadavg": round(load, 2),
                "acceptance_running": busy,
            }
        why = "acceptance.py is running" if busy else f"load {load:.2f} ≥ {max_load:g}"
        print(f"… waiting for a quiet machine ({why})", file=sys.stderr)
        time.sleep(min(poll, max(0.0, max_wait - waited)) or poll)


# -- the server -----------------------------------------------------------------------


def listening_ports(server: ServerProcess, timeout: float = 10.0) -> dict[str, int]:
    """Every role's port, from the server's ``listening on ... (ROLE)`` lines."""
    ports: dict[str, int] = {}

    def found() -> bool:
        ports.update({m[2]: int(m[1]) for m in _LISTENING.finditer(server.output())})
        return all(role in ports for role in ROLES)

    if not _wait_until(found, timeout):
        raise ServerError(f"listeners missing, got {ports}: {server.output()[-1000:]}")
    return ports


def loop_cpu_seconds(server: ServerProcess) -> float:
    """CPU time of the server's main thread, which runs the event loop (TID = PID)."""
    fields = Path(f"/proc/{server.pid}/task/{server.pid}/stat").read_text().rsplit(")", 1)[1]
    values = fields.split()
    return (int(values[11]) + int(values[12])) / _CLK_TCK


def reset_peak_rss(server: ServerProcess) -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0), so each step has its own peak."""
    try:
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def stored(server: ServerProcess) -> dict[str, int]:
    events = maillog_events(server.data_dir)
    return {
        "accepted": events.get("accepted", 0),
        "delivered": events.get("delivered", 0),
        "maildir": maildir_new_count(server.data_dir),
        "rejected": events.get("rejected", 0),
        "deferred": events.get("deferred", 0),
        "bounced": events.get("bounced", 0),
    }


def server_output_notes(server: ServerProcess) -> list[str]:
    """Every line of the server's stdout/stderr except the normal start-up lines."""
    counts: Counter[str] = Counter()
    for line in server.output().splitlines():
        if line.strip() and not line.startswith(_STARTUP_LINES):
            counts[line.strip()[:300]] += 1
    return [f"{line} (×{n})" if n > 1 else line for line, n in counts.items()]


def rejected_lines(server: ServerProcess, limit: int = 10) -> list[str]:
    try:
        text = (server.data_dir / "maillog.txt").read_text(errors="replace")
    except OSError:
        return []
    bad = ("rejected", "deferred", "bounced")
    found = []
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) > 2 and parts[2] in bad:
            found.append(line[:300])
    return found[:limit]


# -- one step -------------------------------------------------------------------------


class Runner:
    """The server, the worker pool and the run's settings; runs and records steps."""

    def __init__(self, args: argparse.Namespace, plan: Plan, pool: Any, tmp: Path) -> None:
        self.args = args
        self.plan = plan
        self.pool = pool
        self.tmp = tmp
        self.server: ServerProcess | None = None
        self.ports: dict[str, int] = {}
        self.expected = 0  # messages this server acknowledged so far
        self.steps: list[Result] = []

    def start(self, part: str) -> Result:
        """A fresh server (own data folder) for one part, warmed up."""
        command = (
            shlex.split(self.args.mailwright_command) if self.args.mailwright_command else None
        )
        self.server = start_mailwright(self.tmp / part, command, extra_config=EXTRA_CONFIG)
        self.ports = listening_ports(self.server)
        self.expected = 0
        info: Result = {"pid": self.server.pid, "ports": self.ports}
        info["uvloop"] = _uses_uvloop(self.server.pid)
        for kind in ("plain_msg", "starttls_msg"):
            self.step(
                f"{part}: warm-up {kind}",
                kind,
                "inbound",
                concurrency=10,
                count=self.plan.warmup,
                timed=False,
            )
        info["warmup"] = self.steps[:]
        self.steps.clear()
        return info

    def finish(self, info: Result) -> None:
        """Stop the part's server; what it printed, logged and stored goes into ``info``."""
        server = self.server
        if server is None:
            return
        self.server = None
        info["server_output"] = server_output_notes(server)
        info["rejected_lines"] = rejected_lines(server)
        info["stored_total"] = stored(server)
        info["messages_acknowledged"] = self.expected
        info["exit_status"] = server.stop()
        if not self.args.keep:
            shutil.rmtree(server.workdir, ignore_errors=True)

    @property
    def srv(self) -> ServerProcess:
        assert self.server is not None
        return self.server

    def quiet(self) -> Result:
        if self.args.no_wait:
            return {"quiet": None, "waited_s": 0.0, "loadavg": round(os.getloadavg()[0], 2)}
        return wait_for_quiet(self.args.max_load, self.args.max_wait)

    def _jobs(self, job: Job, workers: int) -> list[Job]:
        """``job`` split over ``workers`` processes (sessions and count shared out)."""
        workers = max(1, min(workers, job.sessions))
        start_at = time.monotonic() + START_DELAY
        jobs = []
        for i in range(workers):
            sessions = job.sessions // workers + (i < job.sessions % workers)
            count = job.count // workers + (i < job.count % workers)
            jobs.append(replace(job, sessions=sessions, count=count, start_at=start_at))
        return jobs

    def drain(self, expected: int) -> tuple[bool, float]:
        """Wait until the log and the Maildir hold ``expected`` messages."""
        start = time.perf_counter()

        def done() -> bool:
            s = stored(self.srv)
            return min(s["accepted"], s["delivered"], s["maildir"]) >= expected

        ok = _wait_until(done, 30.0 + expected * 0.02)
        return ok, time.perf_counter() - start

    def step(
        self,
        label: str,
        kind: str,
        role: str,
        *,
        concurrency: int,
        count: int,
        seconds: float = 0.0,
        workers: int | None = None,
        gate: bool = False,
        timed: bool = True,
        profile: bool = False,
    ) -> Result:
        server = self.srv
        print(f"… {label}", file=sys.stderr)
        quiet = self.quiet() if timed else None
        before = stored(server)
        reset_peak_rss(server)
        rss_before = server.status("VmRSS")
        deadline = seconds + 60.0 if seconds > 0 else 60.0 + count * 0.05
        job = Job(
            kind=kind,
            port=self.ports[role],
            sessions=concurrency,
            count=count,
            seconds=seconds,
            size=self.plan.size,
            gate=gate,
            server_pid=server.pid,
            deadline=deadline,
        )
        jobs = self._jobs(job, 1 if gate else (workers or self.args.workers))
        profiler = (
            start_profiler(server, self.args, f"{label}".replace(" ", "_"))
            if (profile and self.args.py_spy)
            else None
        )
        cpu0, loop0 = server.cpu_seconds(), loop_cpu_seconds(server)
        try:
            parts = self.pool.map_async(run_job, jobs).get(timeout=deadline + 30.0)
        finally:
            stop_profiler(profiler)
        cpu1, loop1 = server.cpu_seconds(), loop_cpu_seconds(server)
        result = merge(parts)
        result.update(label=label, role=role, concurrency=concurrency, quiet=quiet)
        ok_count = result["ok"]
        wall = result["wall_s"]
        result["per_s"] = round(ok_count / wall, 1) if wall > 0 else 0.0
        result["server_cpu_s"] = round(cpu1 - cpu0, 3)
        result["server_cpu_ms_per_conn"] = (
            round((cpu1 - cpu0) * 1000 / ok_count, 3) if ok_count else None
        )
        result["server_cpu_util"] = round((cpu1 - cpu0) / wall, 3) if wall > 0 else None
        result["loop_cpu_ms_per_conn"] = (
            round((loop1 - loop0) * 1000 / ok_count, 3) if ok_count else None
        )
        result["loop_cpu_util"] = round((loop1 - loop0) / wall, 3) if wall > 0 else None
        result["client_cpu_ms_per_conn"] = (
            round(result["client_cpu_s"] * 1000 / ok_count, 3) if ok_count else None
        )
        result["problems"] = []
        if result["acked"]:
            self._verify(result, before, cpu0)
        result["rss_before_kib"] = rss_before
        result["peak_rss_kib"] = server.status("VmHWM")
        result["threads"] = server.status("Threads")
        result["loadavg_after"] = round(os.getloadavg()[0], 2)
        if result["error_count"]:
            result["problems"].append(f"{result['error_count']} session errors: {result['errors']}")
        if not server.alive():
            result["problems"].append("server died")
        self.steps.append(result)
        return result

    def _verify(self, result: Result, before: dict[str, int], cpu0: float) -> None:
        """The acknowledged messages are in the log and the Maildir once drained."""
        self.expected += result["acked"]
        drained, drain_s = self.drain(self.expected)
        after = stored(self.srv)
        cpu2 = self.srv.cpu_seconds()
        delta = {k: after[k] - before[k] for k in after}
        result["stored_delta"] = delta
        result["drain_s"] = round(drain_s, 3)
        result["server_cpu_ms_per_msg_with_delivery"] = round(
            (cpu2 - cpu0) * 1000 / result["acked"], 3
        )
        for key in ("accepted", "delivered", "maildir"):
            if delta[key] != result["acked"]:
                result["problems"].append(
                    f"{result['acked']} messages acknowledged but {delta[key]} {key}"
                    + ("" if drained else " (queue did not drain in time)")
                )
        refused = sum(delta[k] for k in ("rejected", "deferred", "bounced"))
        if refused:
            result["problems"].append(f"{refused} rejected/deferred/bounced mail-log events")

    def smtp_source_step(self, label: str, concurrency: int, count: int) -> Result:
        server = self.srv
        print(f"… {label}", file=sys.stderr)
        quiet = self.quiet()
        before = stored(server)
        reset_peak_rss(server)
        cpu0, loop0 = server.cpu_seconds(), loop_cpu_seconds(server)
        run = smtp_source(
            self.ports["inbound"],
            sessions=concurrency,
            messages=count,
            size=self.plan.size,
            reuse=False,
            timeout=60.0 + count * 0.2,
        )
        cpu1, loop1 = server.cpu_seconds(), loop_cpu_seconds(server)
        ok = run.returncode == 0
        result: Result = {
            "label": label,
            "kind": "smtp-source",
            "role": "inbound",
            "concurrency": concurrency,
            "connections": count,
            "ok": count if ok else 0,
            "acked": count if ok else 0,
            "error_count": 0 if ok else 1,
            "errors": {} if ok else {f"smtp-source exit {run.returncode}": 1},
            "wall_s": run.seconds,
            "per_s": round(count / run.seconds, 1) if ok else 0.0,
            "server_cpu_s": round(cpu1 - cpu0, 3),
            "server_cpu_ms_per_conn": round((cpu1 - cpu0) * 1000 / count, 3),
            "server_cpu_util": round((cpu1 - cpu0) / run.seconds, 3),
            "loop_cpu_ms_per_conn": round((loop1 - loop0) * 1000 / count, 3),
            "loop_cpu_util": round((loop1 - loop0) / run.seconds, 3),
            "client_cpu_ms_per_conn": None,
            "quiet": quiet,
            "problems": [] if ok else [f"smtp-source: {run.stderr.strip()[-300:]}"],
            "argv": shlex.join(run.argv),
        }
        if ok:
            self._verify(result, before, cpu0)
        result["peak_rss_kib"] = server.status("VmHWM")
        result["loadavg_after"] = round(os.getloadavg()[0], 2)
        self.steps.append(result)
        return result


# -- the run --------------------------------------------------------------------------


def rate_steps(runner: Runner) -> None:
    """Acceptance rate: plaintext and STARTTLS (ABBA order), then smtp-source."""
    plan = runner.plan
    c, m = plan.rate_concurrency, plan.rate_messages
    order = []
    for r in range(plan.repeats):
        pair = ["plain_msg", "starttls_msg"]
        order += pair if r % 2 == 0 else pair[::-1]
    for i, kind in enumerate(order):
        runner.step(
            f"rate {kind} c={c} #{i + 1}",
            kind,
            "inbound",
            concurrency=c,
            count=m,
            profile=kind == "starttls_msg",
        )
    if not runner.args.no_smtp_source:
        runner.smtp_source_step(f"rate smtp-source plaintext c={c}", c, m)


def handshake_steps(runner: Runner) -> None:
    """Connections per second: implicit TLS at c=1 and c=N, STARTTLS and plaintext at N."""
    plan = runner.plan
    hc = plan.hs_concurrency
    runner.step(
        "handshakes implicit TLS c=1",
        "implicit_hs",
        "submissions",
        concurrency=1,
        count=MAX_CONNECTIONS_PER_JOB,
        seconds=plan.hs_seconds_sequential,
        workers=1,
    )
    for kind, role in (
        ("implicit_hs", "submissions"),
        ("starttls_hs", "inbound"),
        ("plain_conn", "inbound"),
    ):
        runner.step(
            f"handshakes {kind} c={hc}",
            kind,
            role,
            concurrency=hc,
            count=MAX_CONNECTIONS_PER_JOB,
            seconds=plan.hs_seconds_concurrent,
            profile=kind == "implicit_hs",
        )


def burst_step(kind: str, role: str) -> Callable[[Runner], None]:
    def run(runner: Runner) -> None:
        n = runner.plan.burst_sessions
        runner.step(f"{n} concurrent {kind}", kind, role, concurrency=n, count=n, gate=True)

    return run


def run_all(runner: Runner, data: Result) -> None:
    """Each part on its own fresh server, so one part's heap does not colour the next."""
    args = runner.args
    raise_nofile(runner.plan.burst_sessions * 2 + 512)
    parts: list[tuple[str, str, Callable[[Runner], None]]] = []
    if not args.skip_rates:
        parts.append(("rates", "rates", rate_steps))
    if not args.skip_handshakes:
        parts.append(("handshakes", "handshakes", handshake_steps))
    parts.append(("burst-starttls", "burst", burst_step("starttls_msg", "inbound")))
    parts.append(("burst-implicit", "burst", burst_step("implicit_msg", "submissions")))
    for name, key, run in parts:
        info: Result = {}
        data["servers"][name] = info
        try:
            info.update(runner.start(name))
            run(runner)
        finally:
            data.setdefault(key, []).extend(runner.steps)
            runner.steps.clear()
            runner.finish(info)


def foundation_figure(results_dir: Path) -> Result | None:
    """mailwright's 1 KB c=50 msg/s from the latest full, default acceptance run."""
    best: Result | None = None
    for path in sorted(results_dir.glob("*.json")):
        if path.name.startswith("tls-"):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if (
            data.get("mode") != "full"
            or data.get("reuse")
            or data.get("server_prefix")
            or data.get("flush_delay_ms")
            or data.get("mailwright_command")
        ):
            continue
        for cell in data.get("cells", []):
            if cell.get("size") == KB and cell.get("concurrency") == 50 and cell["mailwright"]:
                run = max(cell["mailwright"], key=lambda r: r.get("msgs_per_s", 0.0))
                best = {
                    "file": path.name,
                    "started": data.get("started"),
                    "git_commit": data.get("machine", {}).get("git_commit"),
                    "msgs_per_s": run.get("msgs_per_s"),
                    "peak_rss_kib": run.get("vm_hwm_kib"),
                    "cpu_ms_per_msg_with_delivery": run.get("cpu_ms_per_msg_with_delivery"),
                    "loadavg_start": data.get("machine", {}).get("loadavg_start", [None])[0],
                }
    return best


# -- report ---------------------------------------------------------------------------


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _q(step: Result) -> str:
    quiet = step.get("quiet") or {}
    if quiet.get("quiet") is False:
        return f" ⚠ under load {quiet['loadavg']}"
    return ""


def _best(steps: list[Result], kind: str) -> Result | None:
    runs = [s for s in steps if s["kind"] == kind]
    return max(runs, key=lambda s: s["per_s"]) if runs else None


def problem_lines(data: Result) -> list[str]:
    """Everything that makes the run fail: session errors, lost mail, server trouble."""
    problems = [
        f"- {step['label']}: {p}"
        for part in ("rates", "handshakes", "burst")
        for step in data.get(part, [])
        for p in step["problems"]
    ]
    for name, info in data.get("servers", {}).items():
        problems += [
            f"- {step['label']}: {p}" for step in info.get("warmup", []) for p in step["problems"]
        ]
        problems += [f"- {name} mail log: {line}" for line in info.get("rejected_lines", [])]
        if info.get("exit_status") not in (0, None):
            problems.append(f"- {name}: server exit status {info['exit_status']}")
    if data.get("error"):
        problems.append(f"- run aborted: {data['error'][-1500:]}")
    return problems


def _use(step: Result) -> str:
    """Server CPU use: the whole process, and its event-loop thread in brackets."""
    whole, loop = step.get("server_cpu_util"), step.get("loop_cpu_util")
    return f"{_num((whole or 0) * 100, '.0f')}% ({_num((loop or 0) * 100, '.0f')}%)"


def report(data: Result) -> str:
    facts = data["machine"]
    tls: Counter[str] = Counter()
    for part in ("rates", "handshakes", "burst"):
        for step in data.get(part, []):
            tls.update(step.get("tls", {}))
    uvloop = {info.get("uvloop") for info in data.get("servers", {}).values()}
    lines = [
        "## mailwright TLS load test",
        "",
        f"{data['started']} · mode `{data['mode']}` · nproc {facts['nproc']} · Python "
        f"{facts['python']} · {data['openssl']} · server on uvloop: "
        f"{'/'.join(str(u) for u in uvloop) or '?'} · generator: {data['workers']} worker "
        f"process(es), asyncio+ssl on uvloop · git {facts['git_commit']}"
        f"{' (dirty)' if facts['git_dirty'] else ''} · load "
        f"{facts['loadavg_start'][0]:.2f} → {facts['loadavg_end'][0]:.2f} · data on "
        f"{(facts.get('data_filesystem') or {}).get('type', '?')} · a fresh server per part",
        f"TLS negotiated: {', '.join(f'{k} ({v})' for k, v in tls.most_common()) or '-'} · "
        "certificate: self-signed EC P-256 · full handshakes (no resumption) · "
        f"{data['quiet_summary']}",
    ]
    if data.get("burst"):
        lines += [
            "",
            "### Concurrent TLS sessions (all held open at once, then one 1 KB message each)",
            "",
            "| test | sessions | ok | errors | wall s | all ready after s | accepted / "
            "delivered / Maildir | server RSS before → all open MiB | KiB/session | "
            "peak RSS MiB | server CPU s | handshake p50 / p99 ms |",
            "|:---|---:|---:|---:|---:|---:|:---|---:|---:|---:|---:|---:|",
        ]
        for s in data["burst"]:
            d = s.get("stored_delta", {})
            at_gate = s.get("server_rss_at_gate_kib")
            per = (at_gate - s["rss_before_kib"]) / s["sessions"] if at_gate else None
            hs = s.get("handshake_ms") or {}
            what = (
                "STARTTLS, inbound port"
                if s["kind"] == "starttls_msg"
                else "implicit TLS, submissions port (require_auth off)"
            )
            lines.append(
                f"| {what}{_q(s)} | {s['sessions']} | {s['ok']} | {s['error_count']} | "
                f"{s['wall_s']:.2f} | {_num(s.get('gate_opened_after_s'))} | "
                f"{d.get('accepted', '-')} / {d.get('delivered', '-')} / {d.get('maildir', '-')} | "
                f"{_mib(s['rss_before_kib'])} → {_mib(at_gate)} | {_num(per, '.1f')} | "
                f"{_mib(s['peak_rss_kib'])} | {s['server_cpu_s']:.2f} | "
                f"{_num(hs.get('p50'), '.0f')} / {_num(hs.get('p99'), '.0f')} |"
            )
    if data.get("handshakes"):
        lines += [
            "",
            "### Handshakes (one connection each: connect, TLS handshake, 220, QUIT)",
            "",
            "| test | conc | connections | s | conn/s | server CPU ms/conn | event-loop "
            "thread CPU ms/conn | server CPU use (loop thread) | client CPU ms/conn | "
            "handshake p50 / p99 ms | peak RSS MiB | errors |",
            "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        names = {
            "implicit_hs": "implicit TLS (submissions)",
            "starttls_hs": "STARTTLS (inbound: 220, EHLO, STARTTLS, handshake)",
            "plain_conn": "plaintext, no TLS (inbound: 220, QUIT)",
        }
        for s in data["handshakes"]:
            hs = s.get("handshake_ms") or {}
            lines.append(
                f"| {names[s['kind']]}{_q(s)} | {s['concurrency']} | {s['ok']} | "
                f"{s['wall_s']:.1f} | **{s['per_s']:.0f}** | "
                f"**{_num(s['server_cpu_ms_per_conn'], '.3f')}** | "
                f"{_num(s.get('loop_cpu_ms_per_conn'), '.3f')} | {_use(s)} | "
                f"{_num(s['client_cpu_ms_per_conn'], '.3f')} | "
                f"{_num(hs.get('p50'), '.1f')} / {_num(hs.get('p99'), '.1f')} | "
                f"{_mib(s['peak_rss_kib'])} | {s['error_count']} |"
            )
    if data.get("rates"):
        c = data["plan"]["rate_concurrency"]
        lines += [
            "",
            f"### Acceptance rate: 1 KB messages, one per connection, c={c}, same server",
            "",
            "| client | TLS | msgs | msg/s | server CPU ms/msg (incl. delivery) | "
            "server CPU use (loop thread) | client CPU ms/msg | peak RSS MiB | errors | "
            "verified |",
            "|:---|:---|---:|---:|---:|---:|---:|---:|---:|:---|",
        ]
        for s in data["rates"]:
            client = "smtp-source" if s["kind"] == "smtp-source" else "tls_load (Python)"
            tls_on = "STARTTLS" if s["kind"] == "starttls_msg" else "none"
            lines.append(
                f"| {client}{_q(s)} | {tls_on} | {s['acked']} | **{s['per_s']:.0f}** | "
                f"{_num(s.get('server_cpu_ms_per_msg_with_delivery'))} | {_use(s)} | "
                f"{_num(s.get('client_cpu_ms_per_conn'))} | "
                f"{_mib(s['peak_rss_kib'])} | {s['error_count']} | "
                f"{'yes' if not s['problems'] else 'NO'} |"
            )
        found = data.get("foundation")
        if found:
            lines.append(
                f"| smtp-source, foundation benchmark ({found['file']}, git "
                f"{found['git_commit']}, load {_num(found['loadavg_start'])}) | none | - | "
                f"**{found['msgs_per_s']:.0f}** | "
                f"{_num(found['cpu_ms_per_msg_with_delivery'])} | - | - | "
                f"{_mib(found['peak_rss_kib'])} | - | - |"
            )
        tls_best = _best(data["rates"], "starttls_msg")
        plain_best = _best(data["rates"], "plain_msg")
        if tls_best and plain_best and plain_best["per_s"]:
            ratio = tls_best["per_s"] / plain_best["per_s"]
            lines += [
                "",
                f"STARTTLS / plaintext (same client, best of each): **{ratio:.2f}×** "
                f"({tls_best['per_s']:.0f} vs {plain_best['per_s']:.0f} msg/s); server CPU "
                f"{_num(tls_best.get('server_cpu_ms_per_msg_with_delivery'))} vs "
                f"{_num(plain_best.get('server_cpu_ms_per_msg_with_delivery'))} ms/msg.",
            ]
    problems = problem_lines(data)
    lines += [
        "",
        "**Result:** " + ("no errors, every message verified" if not problems else "**PROBLEMS**"),
        *problems,
    ]
    notes: Counter[str] = Counter()
    for info in data.get("servers", {}).values():
        notes.update(info.get("server_output", []))
    lines += ["", "Server output beyond the start-up lines (all servers of the run):"]
    lines += [f"- `{line}`" + (f" (×{n} servers)" if n > 1 else "") for line, n in notes.items()]
    if not notes:
        lines.append("- none")
    lines += ["", f"JSON: {data.get('json_path', '-')}"]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="mailwright TLS load test")
    parser.add_argument("--quick", action="store_true", help="short run (about a minute)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="load-generator processes for the c=50 steps (default: 2)",
    )
    parser.add_argument("--sessions", type=int, help="concurrent TLS sessions (default 1000)")
    parser.add_argument("--messages", type=int, help="messages per acceptance-rate step")
    parser.add_argument("--repeats", type=int, help="STARTTLS/plaintext pairs (default 2)")
    parser.add_argument("--skip-rates", action="store_true", help="no acceptance-rate steps")
    parser.add_argument("--skip-handshakes", action="store_true", help="no handshake steps")
    parser.add_argument("--no-smtp-source", action="store_true", help="no smtp-source step")
    parser.add_argument(
        "--max-load", type=float, default=1.5, help="wait for a 1-min load below this"
    )
    parser.add_argument(
        "--max-wait", type=float, default=600.0, help="seconds to wait for that before a step"
    )
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument(
        "--mailwright-command",
        help='how to start mailwright instead of this venv\'s script, e.g. "python -m mailwright"',
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="py-spy flame graphs of the server (STARTTLS rate and implicit handshake steps)",
    )
    parser.add_argument("--tmpdir", type=Path, help="where the server's data folder goes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the results")
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be between 1 and 16")
    if args.sessions is not None and not 1 <= args.sessions <= 10_000:
        parser.error("--sessions must be between 1 and 10000")
    if args.messages is not None and not 1 <= args.messages <= 100_000:
        parser.error("--messages must be between 1 and 100000")
    if args.repeats is not None and not 1 <= args.repeats <= 10:
        parser.error("--repeats must be between 1 and 10")
    if not 0 <= args.max_wait <= 3600:
        parser.error("--max-wait must be between 0 and 3600 seconds")
    return args


def _facts() -> Result:
    try:
        return machine_facts()
    except SystemExit:  # smtp-source missing: the facts without it
        return {
            "nproc": os.cpu_count(),
            "python": sys.version.split()[0],
            "git_commit": None,
            "git_dirty": None,
            "loadavg_start": os.getloadavg(),
        }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.quick() if args.quick else Plan.full()
    plan = replace(
        plan,
        burst_sessions=args.sessions or plan.burst_sessions,
        rate_messages=args.messages or plan.rate_messages,
        repeats=args.repeats or plan.repeats,
    )
    if (
        args.no_smtp_source is False
        and shutil.which("smtp-source") is None
        and not Path("/usr/sbin/smtp-source").exists()
    ):
        args.no_smtp_source = True
    started = datetime.now(UTC)
    data: Result = {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "plan": asdict(plan),
        "workers": args.workers,
        "openssl": ssl.OPENSSL_VERSION,
        "mailwright_command": args.mailwright_command,
        "machine": _facts(),
        "server_config_extra": EXTRA_CONFIG,
        "servers": {},
    }
    raise_nofile(plan.burst_sessions * 2 + 512)  # the server inherits it too
    tmp = Path(tempfile.mkdtemp(prefix="mailwright-tls-bench-", dir=args.tmpdir))
    data["machine"]["data_filesystem"] = filesystem_facts(tmp)
    # Workers are forked before the server starts, so they hold none of its handles.
    pool = multiprocessing.get_context("fork").Pool(max(args.workers, 1))
    runner = Runner(args, plan, pool, tmp)

    def cells() -> bool:
        run_all(runner, data)
        return False

    def end_pool() -> None:
        pool.terminate()
        pool.join()

    failed = measure(
        data,
        started,
        tmp,
        cells,
        keep=args.keep,
        errors=(multiprocessing.TimeoutError,),
        cleanup=end_pool,
    )
    timed = [s for p in ("rates", "handshakes", "burst") for s in data.get(p, [])]
    loud = [s["label"] for s in timed if (s.get("quiet") or {}).get("quiet") is False]
    data["quiet_summary"] = (
        f"**measured under load**: {', '.join(loud)}"
        if loud
        else "every step started on a quiet machine"
        if not args.no_wait
        else "no waiting for a quiet machine (--no-wait)"
    )
    failed |= bool(problem_lines(data))
    data["foundation"] = foundation_figure(RESULTS_DIR)
    stem = f"tls-{started:%Y%m%dT%H%M%SZ}{'-quick' if args.quick else ''}"
    publish(data, args.out, stem, report, kept=kept_note(tmp, args.keep), keep_md=True)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
