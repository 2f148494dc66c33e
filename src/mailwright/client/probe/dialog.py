"""One probe connection: ``net.outbound``'s ``Channel`` (the core's ``ClientConnection``
over asyncio), driven command by command.

The relay's ``OutboundSession`` runs a whole opening (EHLO, STARTTLS, AUTH) and a whole
transaction; a probe needs the single steps in between -- the plaintext EHLO *and* the
one after TLS, a VRFY, a RCPT answered and then RSET -- so it talks to the channel
directly.  The channel still writes every command through the core and reads every
reply through it, and its STARTTLS drops whatever plaintext was buffered behind the 220
(CVE-2011-0411), so a probe cannot be fooled by an injected reply either.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from mailwright.net.outbound import Peer, Stage
from mailwright.net.outbound.channel import Channel, ChannelError
from mailwright.net.outbound.transaction import describe_command
from mailwright.smtp import Ehlo, Event, Helo, Quit, Reply, StartTls, State, parse_ehlo

__all__ = ["ChannelError", "Dialog", "ProbeSettings", "Target", "is_ip_literal"]

# RFC 5321 §4.5.3.2 allows a server minutes per reply; a probe that waits that long for
# every step would take an hour on a tarpitting server.  Postfix's smtp_helo_timeout is
# 300 s; swaks' default --timeout is 30 s, which we follow.
DEFAULT_TIMEOUT = 30.0
SMTP_PORT = 25  # RFC 5321 §4.5.4.2 (well-known port of the MX service)
SMTPS_PORT = 465  # RFC 8314 §7.3: submissions (implicit TLS)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Target:
    """The server the user named: ``host`` as given, ``address`` to connect to."""

    host: str
    address: str
    port: int = SMTP_PORT

    @property
    def peer(self) -> Peer:
        return Peer(self.host, self.address, self.port)

    @property
    def domain_part(self) -> str:
        """The host as the domain of an address: ``[192.0.2.1]`` for an IP (RFC 5321
        §4.1.3 address literal; IPv6 with its ``IPv6:`` tag)."""
        if not is_ip_literal(self.host):
            return self.host
        ip = ipaddress.ip_address(self.host.strip("[]"))
        return f"[IPv6:{ip}]" if ip.version == 6 else f"[{ip}]"


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    helo: str
    timeout: float = DEFAULT_TIMEOUT
    ca_file: Path | None = None  # extra trust anchors for the certificate check
    tls_name: str | None = None  # the name the certificate must carry (default: host)
    smtps_port: int = SMTPS_PORT  # 0: do not try implicit TLS
    user_probe: str | None = None  # an address that exists, for the enumeration checks
    relay_test: bool = False
    relay_from: str = "relay-probe@example.com"  # RFC 2606: never a real sender
    relay_domain: str = "example.net"  # RFC 2606: the foreign domain of the relay test
    smuggling_to: str | None = None  # the user's own address: --smuggling-test --to
    mail_from: str | None = None  # MAIL FROM of the smuggling test (default: smuggling_to)


class Dialog:
    """One connection to the target; ``await Dialog.open(target, settings)``."""

    def __init__(self, channel: Channel, settings: ProbeSettings, greeting: Reply) -> None:
        self.channel = channel
        self.settings = settings
        self.greeting = greeting
        self.extensions: dict[str, str] | None = None  # None: EHLO refused (HELO only)

    @classmethod
    async def open(cls, target: Target, settings: ProbeSettings) -> Dialog:
        """Connect and read the greeting; ChannelError when either fails."""
        channel = await Channel.connect(target.peer, settings.timeout)
        try:
            greeting = await channel.reply(Stage.GREETING, "", settings.timeout)
        except BaseException:
            channel.abort()
            raise
        return cls(channel, settings, greeting)

    @property
    def open_for_commands(self) -> bool:
        return self.channel.alive and self.channel.conn.state is not State.CLOSED

    async def command(self, event: Event, stage: Stage) -> Reply:
        self.channel.write([event])
        return await self.channel.reply(stage, describe_command(event), self.settings.timeout)

    async def hello(self) -> Reply:
        """EHLO, and HELO when EHLO is refused 5xx (RFC 5321 §3.2); sets ``extensions``."""
        reply = await self.command(Ehlo(self.settings.helo), Stage.EHLO)
        if reply.is_positive:
            self.extensions = parse_ehlo(reply)
            return reply
        self.extensions = None
        if reply.is_permanent and self.open_for_commands:
            return await self.command(Helo(self.settings.helo), Stage.HELO)
        return reply

    async def starttls(self, context: ssl.SSLContext, server_name: str | None) -> Reply:
        """STARTTLS; on 220 the handshake (ChannelError when it fails).  The reply
        to STARTTLS is returned; after a 220 the session needs EHLO again."""
        reply = await self.command(StartTls(), Stage.STARTTLS)
        if reply.code == 220:
            await self.channel.start_tls(context, server_name, self.settings.timeout)
        return reply

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        return self.channel.ssl_object

    async def close(self) -> None:
        """QUIT when the session is in step (RFC 5321 §4.1.1.10), then close; never raises."""
        with contextlib.suppress(Exception):  # ChannelError, or a peer gone mid-QUIT
            if self.open_for_commands and self.channel.conn.pending == 0:
                await self.command(Quit(), Stage.QUIT)
        self.channel.close()
