"""``client.probe`` against aiosmtpd, an independent SMTP server implementation.

aiosmtpd with a handler that accepts every recipient is an open relay: the probe must
say so without ever sending DATA (the handler sees no message).  aiosmtpd >= 1.4.5
ends DATA only at <CRLF>.<CRLF> (its fix for CVE-2024-27305, SMTP smuggling), so the
smuggling test must report no variant, and the handler must receive each test message
whole -- the smuggled transaction still inside its body.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.smtp import SMTP

from helpers.outbound import run
from helpers.servers import HOST
from mailwright.client.probe import ProbeSettings, Report, Target, probe

TO = "me@aiosmtpd.test"


class AcceptAll:
    """aiosmtpd's handler API: every RCPT 250 (the default), every message kept."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.original_content)
        return "250 2.0.0 OK"


def probe_aiosmtpd(handler: AcceptAll, **kwargs: Any) -> Report:
    async def main() -> Report:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(handler, hostname="aio.test"), HOST, 0)
        try:
            port = server.sockets[0].getsockname()[1]
            settings = ProbeSettings(helo="probe.test", timeout=5.0, smtps_port=0, **kwargs)
            return await probe(Target(HOST, HOST, port), settings)
        finally:
            server.close()
            await server.wait_closed()

    return run(main())


def test_aiosmtpd_accepting_every_recipient_is_an_open_relay() -> None:
    handler = AcceptAll()
    report = probe_aiosmtpd(handler, relay_test=True)
    relay = next(f for f in report.findings if f.id == "open-relay")
    assert "plain foreign recipient <relay-probe@example.net>: 250" in relay.detail
    assert "percent hack <relay-probe%example.net@[127.0.0.1]>: 250" in relay.detail
    assert handler.messages == []  # RCPT, RSET: never DATA


def test_aiosmtpd_is_not_reported_for_smuggling_and_gets_each_message_whole() -> None:
    handler = AcceptAll()
    report = probe_aiosmtpd(handler, smuggling_to=TO)
    assert not [i for i in report.ids() if i.startswith("smuggling-")], report.findings
    results = report.facts["smuggling_test"]
    assert len(results) == 7
    assert all(r.endswith("not vulnerable") for r in results.values()), results
    assert len(handler.messages) == 7
    for body in handler.messages:
        head, _, text = body.partition(b"\r\n\r\n")
        assert b"Subject: mailwright probe: SMTP smuggling test" in head
        assert b"Subject: mailwright probe: SMUGGLED message" in text
