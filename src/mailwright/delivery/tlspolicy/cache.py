"""The MTA-STS policy cache: one JSON file per domain under ``data_dir/mta-sts/``, so
policies survive a restart (RFC 8461 §5.1: a cached, unexpired policy is applied even
when DNS or HTTPS cannot confirm it — that is what defeats an attacker who blocks the
policy fetch).

A file holds the domain, the TXT record id the policy was fetched under, the fetch
time (wall clock: it must mean the same after a restart) and the policy.  A policy is
fresh until ``fetched_at + max_age``.  Files are written through
``mailwright.fs.durable.write_atomic``; a file that does not parse is treated as
absent (and replaced at the next successful fetch), never as an error that stops
delivery.  The methods are synchronous file operations: async callers run them in a
thread.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mailwright.delivery.tlspolicy.mtasts import StsMode, StsPolicy
from mailwright.fs.durable import ensure_dir, write_atomic

CACHE_DIR_NAME = "mta-sts"
FORMAT_VERSION = 1
# A domain as a file name: lower-case LDH labels only (A-labels), so no name can walk
# out of the directory or collide with the temporary files (which start with ".").
_SAFE_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
# RFC 1035 §2.3.4: a domain name is at most 255 octets (a file name limit is too).
MAX_DOMAIN_LENGTH = 253
# Entries (policies and "none on disk") kept in memory, least recently used dropped
# first: a worker that has delivered to millions of domains must not hold them all.
MAX_MEMORY_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class CachedPolicy:
    domain: str
    policy_id: str  # the TXT record id it was fetched under (RFC 8461 §3.1)
    policy: StsPolicy
    fetched_at: float  # seconds since the epoch

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.policy.max_age

    def fresh(self, now: float) -> bool:
        return now < self.expires_at


class PolicyCache:
    """Policies by domain, on disk, with an in-memory copy of what was read or
    written (``clock`` is wall-clock seconds; injectable for tests)."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.clock = clock
        self._memory: OrderedDict[str, CachedPolicy | None] = OrderedDict()
        self._lock = threading.Lock()  # callers use threads (asyncio.to_thread)

    def path(self, domain: str) -> Path | None:
        if len(domain) > MAX_DOMAIN_LENGTH or not _SAFE_DOMAIN.fullmatch(domain):
            return None
        return self.directory / f"{domain}.json"

    def get(self, domain: str) -> CachedPolicy | None:
        """The cached policy for ``domain`` if it is still fresh, else None."""
        entry = self.load(domain)
        return entry if entry is not None and entry.fresh(self.clock()) else None

    def load(self, domain: str) -> CachedPolicy | None:
        """The cached policy for ``domain``, fresh or expired."""
        with self._lock:
            if domain in self._memory:
                self._memory.move_to_end(domain)
                return self._memory[domain]
        path = self.path(domain)
        entry = _read(path, domain) if path is not None else None
        self._remember(domain, entry)
        return entry

    def put(self, entry: CachedPolicy) -> None:
        """Store ``entry`` durably (raises ``OSError``; the caller decides whether a
        cache that cannot be written matters — delivery goes on without it)."""
        path = self.path(entry.domain)
        if path is None:
            return
        document = {
            "format": FORMAT_VERSION,
            "domain": entry.domain,
            "id": entry.policy_id,
            "fetched_at": entry.fetched_at,
            "policy": entry.policy.to_dict(),
        }
        ensure_dir(self.directory)
        write_atomic(path, json.dumps(document, sort_keys=True).encode("utf-8") + b"\n")
        self._remember(entry.domain, entry)

    def _remember(self, domain: str, entry: CachedPolicy | None) -> None:
        with self._lock:
            self._memory[domain] = entry
            self._memory.move_to_end(domain)
            while len(self._memory) > MAX_MEMORY_ENTRIES:
                self._memory.popitem(last=False)


def _read(path: Path, domain: str) -> CachedPolicy | None:
    try:
        document = json.loads(path.read_bytes())
        policy = document["policy"]
        if document["format"] != FORMAT_VERSION or document["domain"] != domain:
            return None
        return CachedPolicy(
            domain=domain,
            policy_id=str(document["id"]),
            policy=StsPolicy(
                mode=StsMode(policy["mode"]),
                mx=tuple(str(mx) for mx in policy["mx"]),
                max_age=int(policy["max_age"]),
                version=str(policy["version"]),
            ),
            fetched_at=float(document["fetched_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        # Missing (the usual case) or damaged: as if never cached.
        return None
