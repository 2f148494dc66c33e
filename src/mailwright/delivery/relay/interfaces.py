"""This host's interface addresses, for the relay's loop check: an MX that resolves to
one of them is ourselves (Postfix: "mail for X loops back to myself", its
inet_interfaces and proxy_interfaces), whatever port it would be reached on.

Python has no portable API for the list (``socket.if_nameindex`` gives names only;
psutil is no dependency and ``ip`` is no runtime tool), so Linux's own tables are read
once when the relay is built:

* ``/proc/net/fib_trie``: the IPv4 routing trie; an address followed by a
  ``/32 host LOCAL`` leaf is one the kernel delivers locally (an interface's own);
* ``/proc/net/if_inet6``: one line per IPv6 address, its first field 32 hex digits.

Elsewhere (no ``/proc``) the set is empty and only our listeners' endpoints count.
Addresses added after start are not seen: the loop check is a safety net, the
operator's MX records are the contract.
"""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

PROC_NET = Path("/proc/net")
_LOCAL_LEAF = "/32 host LOCAL"


def fib_trie_addresses(text: str) -> set[str]:
    """The IPv4 addresses ``/proc/net/fib_trie`` marks as local host routes."""
    found: set[str] = set()
    last: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|-- "):
            last = stripped[4:].strip()
        elif last is not None and stripped.startswith(_LOCAL_LEAF):
            with contextlib.suppress(ValueError):  # not an address: not ours
                found.add(str(ipaddress.IPv4Address(last)))
    return found


def if_inet6_addresses(text: str) -> set[str]:
    """The IPv6 addresses of ``/proc/net/if_inet6`` (compressed text form)."""
    found: set[str] = set()
    for line in text.splitlines():
        fields = line.split()
        if not fields or len(fields[0]) != 32:
            continue
        try:
            found.add(str(ipaddress.IPv6Address(int(fields[0], 16))))
        except ValueError:
            continue
    return found


def interface_addresses(proc_net: Path = PROC_NET) -> frozenset[str]:
    """Every address of this host's interfaces that Linux lists; empty elsewhere."""
    found: set[str] = set()
    for name, parse in (("fib_trie", fib_trie_addresses), ("if_inet6", if_inet6_addresses)):
        try:
            text = (proc_net / name).read_text("ascii", errors="replace")
        except OSError:
            continue
        found |= parse(text)
    return frozenset(found)
