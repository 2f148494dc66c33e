"""A handler's whole outcome reaches the wire and the log through the session's one
writing place: a ``Disconnect`` verdict's reply is written and the connection closed
after it (nothing pipelined behind it is answered), and its private reason goes to the
mail log, not to the peer.  Both through the fast path (a plain hook, answered from
``data_received``) and through the session task (a coroutine hook)."""

from __future__ import annotations

import pytest

from helpers.servers import InProcessServer
from helpers.wire import RawSMTP
from mailwright.net.listener import Listener
from mailwright.policy.context import SessionContext
from mailwright.policy.pipeline import Stage
from mailwright.policy.verdict import Disconnect
from mailwright.smtp import MailFrom, Reply

# 554, not 421: the core closes after any 421 by itself; this close is the outcome's.
R554_GO_AWAY = Reply.of(554, "5.7.1", "Go away")
REASON = "hook said so: sender on the test blocklist"


def disconnect_on(server: InProcessServer, sender: str, *, coroutine: bool) -> None:
    """Register a MAIL hook on the running server: ``sender`` is disconnected."""

    def verdict(mail: MailFrom) -> Disconnect | None:
        if str(mail.address) == sender:
            return Disconnect(R554_GO_AWAY, REASON)
        return None

    def plain(ctx: SessionContext, mail: MailFrom) -> Disconnect | None:
        return verdict(mail)

    async def later(ctx: SessionContext, mail: MailFrom) -> Disconnect | None:
        return verdict(mail)

    [listener] = server.app.listeners
    assert isinstance(listener, Listener)
    hook = later if coroutine else plain
    listener.services.pipeline.register(Stage.MAIL, "test-disconnect", hook)


@pytest.mark.parametrize("coroutine", [False, True], ids=["fast-path", "task"])
def test_disconnect_outcome_closes_after_its_reply_and_logs_its_reason(
    server: InProcessServer, coroutine: bool
):
    disconnect_on(server, "spammer@example.net", coroutine=coroutine)
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        assert raw.cmd("MAIL FROM:<friend@example.net>").code == 250
        assert raw.cmd("RSET").code == 250
        # Pipelined: the RCPT and NOOP behind the refused MAIL get no answer.
        raw.send(b"MAIL FROM:<spammer@example.net>\r\nRCPT TO:<alice@example.com>\r\nNOOP\r\n")
        reply = raw.reply()
        assert (reply.code, reply.enhanced, reply.text) == (554, "5.7.1", "5.7.1 Go away")
        assert REASON not in reply.text
        assert raw.closed_by_peer()
    log = server.mail_log()
    [line] = [ln for ln in log.splitlines() if "Go away" in ln]
    assert "rejected stage=mail" in line and f'reason="{REASON}"' in line, line
