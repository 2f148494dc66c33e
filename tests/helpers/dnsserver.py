"""A DNS server of the test's own on loopback, so nothing reaches the system resolver.

``LoopbackDns`` serves RFC 1035 zone text (parsed by dnslib: MX, A, AAAA, TXT with
several strings, TLSA, CNAME, PTR, SOA) over UDP and TCP on one ephemeral port, in two
threads.  It answers the way an authoritative server (or a validating resolver in front
of one) does, which is what the resolver under test must tell apart:

* NXDOMAIN for a name that does not exist, NODATA (NOERROR, empty answer) for a name that
  exists with other types or only as an empty non-terminal — both with the SOA of the
  enclosing zone in the authority section, whose TTL and minimum bound the negative
  cache (RFC 2308 §3, §5);
* CNAME chains inside the zone followed into the answer section (RFC 1034 §4.3.2);
* a referral (no answer, the NS records in the authority section, RA clear) for names
  under an NS record that is not at an SOA: what a non-recursive server sends;
* the AD bit on answers for names under ``authentic`` (RFC 4035 §3.2.3: what a
  validating resolver sets once it has validated the data), except names under
  ``insecure`` (an unsigned child zone below a signed one, e.g. TLSA records an
  attacker could forge below an MX host whose address records are signed);
* SERVFAIL for names under ``servfail``; no answer at all for names under ``silent``
  (to drive timeouts), nor to the first ``drop`` queries (lost datagrams);
* a UDP answer larger than the client's buffer (512 bytes, or its EDNS size) goes out
  truncated with TC set, so the client retries over TCP (RFC 7766 §5).

``queries`` lists every question received as ``(name, type)`` — lower case, no trailing
dot, type mnemonic (``"MX"``) — so a test proves what was (not) asked, e.g. a cache hit.
``set_zone`` swaps the records mid-test.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator

import pytest
from dnslib import CNAME, EDNS0, QTYPE, RCODE, RR, DNSRecord

POLL_INTERVAL = 0.05  # how often the server threads look at the stop flag
TCP_READ_TIMEOUT = 5.0  # a TCP client that stops mid-message is dropped after this
CLASSIC_UDP_SIZE = 512  # RFC 1035 §4.2.1: UDP messages without EDNS
BIND_ATTEMPTS = 20  # tries to find a port free for both UDP and TCP
CNAME_CHAIN_LIMIT = 8  # a loop in the zone must not hang the server


def _key(name: object) -> str:
    return str(name).rstrip(".").lower()


def _under(name: str, suffixes: frozenset[str]) -> bool:
    return any(name == s or name.endswith("." + s) for s in suffixes)


class Zone:
    """Records by owner name; answers one question the way ``LoopbackDns`` describes."""

    def __init__(self, text: str) -> None:
        self.records: dict[str, list[RR]] = {}
        for rr in RR.fromZone(text):
            self.records.setdefault(_key(rr.rname), []).append(rr)
        self.soas = {
            name for name, rrs in self.records.items() if any(r.rtype == QTYPE.SOA for r in rrs)
        }

    def exists(self, name: str) -> bool:
        """A name with records, or an empty non-terminal above one (RFC 8020)."""
        return name in self.records or any(owner.endswith("." + name) for owner in self.records)

    def soa_for(self, name: str) -> RR | None:
        labels = name.split(".")
        for i in range(len(labels)):
            zone = ".".join(labels[i:])
            if zone in self.soas:
                return next(r for r in self.records[zone] if r.rtype == QTYPE.SOA)
        return None

    def delegation_for(self, name: str) -> list[RR] | None:
        """The NS records of a zone cut at or above ``name`` (NS at a name without an
        SOA: the child zone is delegated elsewhere, RFC 1034 §4.2.1)."""
        labels = name.split(".")
        for i in range(len(labels)):
            owner = ".".join(labels[i:])
            if owner in self.soas:
                return None
            ns = [r for r in self.records.get(owner, []) if r.rtype == QTYPE.NS]
            if ns:
                return ns
        return None

    def answer(self, request: DNSRecord) -> DNSRecord:
        reply = request.reply(ra=1, aa=1)
        qname, qtype = _key(request.q.qname), request.q.qtype
        name = qname
        for _ in range(CNAME_CHAIN_LIMIT):
            cut = self.delegation_for(name)
            if cut is not None:  # not ours: a referral, as an authoritative-only server
                reply.header.aa = 0
                reply.header.ra = 0
                reply.add_auth(*cut)
                return reply
            rrs = self.records.get(name, [])
            matches = [r for r in rrs if r.rtype == qtype or qtype == QTYPE.ANY]
            if matches:
                reply.add_answer(*matches)
                return reply
            cnames = [r for r in rrs if r.rtype == QTYPE.CNAME]
            if not cnames or qtype == QTYPE.CNAME:
                break
            reply.add_answer(cnames[0])
            rdata = cnames[0].rdata
            assert isinstance(rdata, CNAME)
            name = _key(rdata.label)
        if not self.exists(name):
            reply.header.rcode = RCODE.NXDOMAIN
        soa = self.soa_for(name)
        if soa is not None:
            reply.add_auth(soa)
        return reply


class LoopbackDns:
    """See the module docstring.  Use as a context manager (or ``start``/``stop``)."""

    def __init__(
        self,
        zone: str,
        *,
        authentic: Iterable[str] = (),
        insecure: Iterable[str] = (),
        servfail: Iterable[str] = (),
        silent: Iterable[str] = (),
        drop: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.authentic = frozenset(_key(n) for n in authentic)
        self.insecure = frozenset(_key(n) for n in insecure)
        self.servfail = frozenset(_key(n) for n in servfail)
        self.silent = frozenset(_key(n) for n in silent)
        self.drop = drop
        self.queries: list[tuple[str, str]] = []
        self.port = 0
        self._zone = Zone(zone)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None

    # -- public surface ---------------------------------------------------------------

    @property
    def nameserver(self) -> str:
        """``IP:port`` as the ``[dns] nameservers`` setting takes it (``[v6]:port``)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def set_zone(self, text: str) -> None:
        zone = Zone(text)
        with self._lock:
            self._zone = zone

    def asked(self, name: str, qtype: str) -> int:
        """How many times ``name``/``qtype`` was asked (over UDP and TCP)."""
        return self.queries.count((_key(name), qtype))

    def start(self) -> LoopbackDns:
        self._udp, self._tcp = self._bind()
        self.port = self._udp.getsockname()[1]
        for target in (self._serve_udp, self._serve_tcp):
            thread = threading.Thread(
                target=target, name=f"loopback-dns-{target.__name__}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()

    def __enter__(self) -> LoopbackDns:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the protocol -----------------------------------------------------------------

    def handle(self, data: bytes, udp: bool) -> bytes | None:
        """The wire answer to one query, or None to stay silent."""
        try:
            request = DNSRecord.parse(data)
        except Exception:  # garbage in: a server drops it
            return None
        if not request.questions:
            return None
        qname = _key(request.q.qname)
        self.queries.append((qname, QTYPE.get(request.q.qtype)))
        if _under(qname, self.silent):
            return None
        with self._lock:
            if self.drop > 0:  # a lost datagram
                self.drop -= 1
                return None
        if _under(qname, self.servfail):
            reply = request.reply(ra=1)
            reply.header.ad = 0
            reply.header.rcode = RCODE.SERVFAIL
        else:
            with self._lock:
                zone = self._zone
            reply = zone.answer(request)
            # reply() copies the query's flags, AD included (a stub sets AD to ask for
            # it, RFC 6840 §5.7): an answer has AD only where the test says it is secure.
            secure = _under(qname, self.authentic) and not _under(qname, self.insecure)
            reply.header.ad = 1 if secure else 0
        limit = CLASSIC_UDP_SIZE
        for rr in request.ar:
            if rr.rtype == QTYPE.OPT:
                # Echo EDNS (RFC 6891 §6.1.1) and honour the client's buffer size.
                limit = max(CLASSIC_UDP_SIZE, rr.rclass)
                reply.add_ar(EDNS0(udp_len=limit))
        wire = reply.pack()
        if udp and len(wire) > limit:
            # The question stays (dnslib's truncate() drops it, and a client rightly
            # rejects an answer that does not echo its question, RFC 1035 §7.3).
            truncated = DNSRecord(reply.header, q=request.q)
            truncated.header.tc = 1
            wire = truncated.pack()
        return wire

    # -- sockets ----------------------------------------------------------------------

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(BIND_ATTEMPTS):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                tcp.bind((self.host, udp.getsockname()[1]))
            except OSError:  # the TCP side of that port is taken: try another
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            return udp, tcp
        raise RuntimeError(f"no port free for both UDP and TCP on {self.host}")

    def _serve_udp(self) -> None:
        assert self._udp is not None
        while not self._stop.is_set():
            readable, _, _ = select.select([self._udp], [], [], POLL_INTERVAL)
            if not readable:
                continue
            data, peer = self._udp.recvfrom(65535)
            wire = self.handle(data, udp=True)
            if wire is not None:
                self._udp.sendto(wire, peer)

    def _serve_tcp(self) -> None:
        assert self._tcp is not None
        while not self._stop.is_set():
            readable, _, _ = select.select([self._tcp], [], [], POLL_INTERVAL)
            if readable:
                conn, _ = self._tcp.accept()
                thread = threading.Thread(target=self._serve_conn, args=(conn,), daemon=True)
                thread.start()

    def _serve_conn(self, conn: socket.socket) -> None:
        """RFC 1035 §4.2.2: each message prefixed with its two-byte length; several
        queries may share a connection (RFC 7766 §6.2.1)."""
        with conn:
            while not self._stop.is_set():
                readable, _, _ = select.select([conn], [], [], POLL_INTERVAL)
                if not readable:
                    continue
                try:
                    conn.settimeout(TCP_READ_TIMEOUT)
                    (length,) = struct.unpack("!H", _read_exact(conn, 2))
                    data = _read_exact(conn, length)
                except (OSError, EOFError):
                    return
                wire = self.handle(data, udp=False)
                if wire is not None:
                    with contextlib.suppress(OSError):
                        conn.sendall(struct.pack("!H", len(wire)) + wire)


def _read_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


MakeDns = Callable[..., LoopbackDns]


@pytest.fixture
def loopback_dns() -> Iterator[MakeDns]:
    """A factory: ``loopback_dns(zone_text, authentic=..., host="::1")`` starts a
    ``LoopbackDns``; every one started is stopped at teardown."""
    started: list[LoopbackDns] = []

    def make(zone: str, **kwargs: object) -> LoopbackDns:
        server = LoopbackDns(zone, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()
