"""Resolver micro benchmark: what a lookup costs cached, uncached and shared.

    .venv/bin/python bench/dns_cache.py [--names N] [--hits N]

Against the test suite's loopback DNS server (``tests/helpers/dnsserver.py``, dnslib;
needs the ``test`` extra), with one ``DnsResolver``:

1. **uncached**: N distinct MX names asked one after another (a UDP round trip to
   127.0.0.1 each, and the server is Python too: an upper bound on query cost);
2. **cached**: the same N names asked again, ``--hits`` lookups in all — the path a
   queue run takes for every message to a domain it has seen;
3. **shared**: N lookups of one uncached name at once — one query answers them all.

Every answer is checked (records present, query counts as expected); a mismatch exits
with status 2.  Only 127.0.0.1 is used; the server is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers.dnsserver import LoopbackDns
from mailwright.dns.resolver import DnsResolver

DEFAULT_NAMES = 200
DEFAULT_HITS = 200_000


def fail(problem: str) -> NoReturn:
    print(f"dns_cache: {problem}", file=sys.stderr)
    raise SystemExit(2)


def zone(names: int) -> str:
    lines = ["$ORIGIN bench.test.", "$TTL 3600", "@ IN SOA ns hostmaster 1 3600 600 86400 60"]
    lines += [f"d{i} IN MX 10 mx{i}" for i in range(names)]
    return "\n".join(lines) + "\n"


async def measure(server: LoopbackDns, names: int, hits: int) -> list[tuple[str, float, str]]:
    resolver = DnsResolver([server.address], timeout=2.0, cache_size=names * 2)
    domains = [f"d{i}.bench.test" for i in range(names)]
    rows: list[tuple[str, float, str]] = []

    started = time.perf_counter()
    for domain in domains:
        if not (await resolver.mx(domain)).records:
            fail(f"no MX for {domain}")
    elapsed = time.perf_counter() - started
    rows.append(("uncached (loopback UDP)", names / elapsed, f"{elapsed / names * 1e6:.0f} µs"))

    started = time.perf_counter()
    for i in range(hits):
        await resolver.mx(domains[i % names])
    elapsed = time.perf_counter() - started
    rows.append(("cached", hits / elapsed, f"{elapsed / hits * 1e6:.2f} µs"))
    if len(server.queries) != names:
        fail(f"cache missed: {len(server.queries)} queries for {names} names")

    before = len(server.queries)
    started = time.perf_counter()
    answers = await asyncio.gather(*(resolver.mx("d0.shared.bench.test") for _ in range(names)))
    elapsed = time.perf_counter() - started
    rows.append(("shared (one name at once)", names / elapsed, f"{elapsed * 1e3:.1f} ms all"))
    if len(server.queries) != before + 1 or len({id(a) for a in answers}) != 1:
        fail("overlapping lookups were not shared")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=DEFAULT_NAMES)
    parser.add_argument("--hits", type=int, default=DEFAULT_HITS)
    args = parser.parse_args()
    if args.names < 1 or args.hits < 1:
        parser.error("--names and --hits must be at least 1")
    with LoopbackDns(zone(args.names)) as server:
        rows = asyncio.run(measure(server, args.names, args.hits))
    print(f"DnsResolver, {args.names} names, {args.hits} cached lookups\n")
    print("| lookup | per second | cost |\n|:---|---:|---:|")
    for label, rate, cost in rows:
        print(f"| {label} | {rate:,.0f} | {cost} |")


if __name__ == "__main__":
    main()
