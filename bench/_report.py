"""Machine facts, target evaluation and the Markdown report of the acceptance benchmark."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from _load import smtp_source_path

BENCH_DIR = Path(__file__).resolve().parent
TARGET_RATIO = 3.0  # mailwright / aiosmtpd msgs/s at 1 KB and the highest concurrency (50)
TARGET_IDLE_KIB = 40.0  # mailwright RSS per idle connection
KB = 1024

Result = dict[str, Any]


# -- facts and report ------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _command(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def machine_facts() -> Result:
    postconf = shutil.which("postconf") or "/usr/sbin/postconf"
    repo = BENCH_DIR.parent
    dirty = _command(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"])
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "mailwright": _version("mailwright"),
        "aiosmtpd": _version("aiosmtpd"),
        "uvloop_installed": _version("uvloop"),
        "postfix": _command([postconf, "-dh", "mail_version"]),
        "smtp_source": smtp_source_path(),
        "git_commit": _command(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(dirty),
        "loadavg_start": os.getloadavg(),
    }


def build_slowsync(tmp: Path) -> Path:
    """Compile bench/slowsync.c (the slow-flush shim) into ``tmp``."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise SystemExit("--flush-delay-ms needs a C compiler (cc, gcc or clang)")
    out = tmp / "slowsync.so"
    argv = [compiler, "-O2", "-shared", "-fPIC", "-o", str(out), str(BENCH_DIR / "slowsync.c")]
    subprocess.run([*argv, "-ldl", "-lpthread"], check=True, timeout=120)
    return out


def filesystem_facts(path: Path) -> Result:
    """Type, device and options of the file system holding ``path`` (from /proc/mounts).

    Matters for the numbers: fsync cost differs by file system, and ext4 *without* a
    journal (common on VM images) makes every file creation scan for recently deleted
    inodes, which penalises servers that create and delete files per message.
    """
    best: Result = {}
    target = str(path.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    for line in mounts:
        device, mount, fstype, options, *_ = line.split()
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best.get("mount", "")):
            best = {"device": device, "mount": mount, "type": fstype, "options": options}
    if best.get("type") == "ext4":
        name = Path(best["device"]).name
        journal = Path(f"/sys/fs/ext4/{name}/journal_task")
        with contextlib.suppress(OSError):
            best["journal"] = journal.read_text().strip() not in ("", "<none>")
    return best


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def _fs_label(fs: Result) -> str:
    if not fs:
        return "?"
    has_journal = fs.get("journal")
    journal = "" if has_journal is None else (", journal" if has_journal else ", NO journal")
    return f"{fs['type']} ({fs['device']} at {fs['mount']}{journal})"


def _best(runs: list[Result]) -> Result:
    return max(runs, key=lambda r: r.get("msgs_per_s", 0.0), default={})


def report(data: Result) -> str:
    facts = data["machine"]
    lines = [
        "## mailwright acceptance benchmark",
        "",
        f"{data['started']} · mode `{data['mode']}` · connections: "
        f"{'reused (-d)' if data['reuse'] else 'one per message'} · repeats {data['repeats']}"
        f" · mailwright smtp.processes {data.get('processes', 0)}"
        + (f" · servers under `{data['server_prefix']}`" if data["server_prefix"] else "")
        + (f" · **+{data['flush_delay_ms']:g} ms per fsync**" if data["flush_delay_ms"] else ""),
        f"nproc {facts['nproc']} · Python {facts['python']} · {facts['platform']} · "
        f"mailwright {facts['mailwright']} (uvloop {data['uvloop'].get('mailwright', '?')}) · "
        f"aiosmtpd {facts['aiosmtpd']} (uvloop {data['uvloop'].get('aiosmtpd', '?')}) · "
        f"Postfix {facts['postfix']} · git {facts['git_commit']}"
        f"{' (dirty)' if facts['git_dirty'] else ''} · load "
        f"{facts['loadavg_start'][0]:.2f} → {facts['loadavg_end'][0]:.2f} · data on "
        + _fs_label(facts.get("data_filesystem", {})),
        "",
        "| size | conc | msgs | mailwright msg/s | aiosmtpd msg/s | mw/aio | "
        "mw peak RSS MiB | aio peak RSS MiB | mw receive CPU ms/msg | "
        "mw CPU ms/msg with delivery | aio CPU ms/msg | mw drain s | mail verified |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for cell in data["cells"]:
        mw, aio = _best(cell["mailwright"]), _best(cell["aiosmtpd"])
        ratio = mw.get("msgs_per_s", 0.0) / aio["msgs_per_s"] if aio.get("msgs_per_s") else 0.0
        ok = all(r.get("verified") for r in cell["mailwright"] + cell["aiosmtpd"])
        lines.append(
            f"| {cell['size'] // KB} KB | {cell['concurrency']} | {cell['messages']} | "
            f"{mw.get('msgs_per_s', 0):.0f} | {aio.get('msgs_per_s', 0):.0f} | {ratio:.2f}× | "
            f"{_mib(mw.get('vm_hwm_kib'))} | {_mib(aio.get('vm_hwm_kib'))} | "
            f"{mw.get('cpu_ms_per_msg', 0):.2f} | "
            f"{mw.get('cpu_ms_per_msg_with_delivery', 0):.2f} | "
            f"{aio.get('cpu_ms_per_msg', 0):.2f} | {mw.get('drain_seconds', 0):.2f} | "
            f"{'yes' if ok else 'NO'} |"
        )
    lines += [
        "",
        "| idle connections | count | RSS before MiB | RSS with idle MiB | KiB/connection |",
        "|:---|---:|---:|---:|---:|",
    ]
    for idle in data["idle"]:
        lines.append(
            f"| {idle['server']} | {idle['connections']} | {_mib(idle['rss_before_kib'])} | "
            f"{_mib(idle['rss_after_kib'])} | {idle['kib_per_connection']:.1f} |"
        )
    targets = data["targets"]
    lines += ["", "| target | measured | goal | met |", "|:---|---:|---:|:---|"]
    for target in targets:
        lines.append(
            f"| {target['name']} | {target['measured']} | {target['goal']} | "
            f"{'yes' if target['met'] else '**no**'} |"
        )
    problems = [
        f"- {r['server']} {cell['size'] // KB} KB c={cell['concurrency']}: {p}"
        for cell in data["cells"]
        for r in cell["mailwright"] + cell["aiosmtpd"]
        for p in r.get("problems", [])
    ]
    if problems:
        lines += ["", "**Problems:**", *problems]
    if data.get("error"):
        lines += ["", f"**Run aborted:** {data['error'].strip()[-1500:]}"]
    lines += ["", f"JSON: {data.get('json_path', '-')}"]
    return "\n".join(lines)


def evaluate(data: Result) -> list[Result]:
    targets: list[Result] = []
    for cell in data["cells"]:
        if cell["size"] == 1 * KB and cell["concurrency"] == max(data["plan"]["concurrency"]):
            mw, aio = _best(cell["mailwright"]), _best(cell["aiosmtpd"])
            ratio = mw.get("msgs_per_s", 0.0) / aio["msgs_per_s"] if aio.get("msgs_per_s") else 0.0
            targets.append(
                {
                    "name": f"mailwright/aiosmtpd msg/s, 1 KB, c={cell['concurrency']}",
                    "measured": f"{ratio:.2f}×",
                    "goal": f"≥ {TARGET_RATIO:g}×",
                    "met": ratio >= TARGET_RATIO,
                    "value": round(ratio, 3),
                }
            )
    for idle in data["idle"]:
        if idle["server"] == "mailwright":
            kib = idle["kib_per_connection"]
            targets.append(
                {
                    "name": "mailwright RSS per idle connection",
                    "measured": f"{kib:.1f} KiB",
                    "goal": f"< {TARGET_IDLE_KIB:g} KiB",
                    "met": kib < TARGET_IDLE_KIB,
                    "value": kib,
                }
            )
    runs = [r for cell in data["cells"] for r in cell["mailwright"] + cell["aiosmtpd"]]
    targets.append(
        {
            "name": "no mail lost or refused (every cell verified)",
            "measured": f"{sum(bool(r.get('verified')) for r in runs)}/{len(runs)} runs",
            "goal": "all",
            "met": bool(runs) and not data.get("error") and all(r.get("verified") for r in runs),
        }
    )
    return targets
