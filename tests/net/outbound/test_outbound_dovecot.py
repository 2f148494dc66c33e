"""LMTP to a real mailbox store: Dovecot's LMTP server on a unix socket (RFC 2033).
One reply per recipient after the data, in RCPT order, over DATA and over BDAT."""

from __future__ import annotations

import pytest

from helpers.dovecot_lmtp import dovecot_lmtp
from helpers.outbound import body, message, run, settings
from mailwright.net.outbound import OutboundSession, Peer, Stage, TlsMode, TlsPolicy

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
def test_per_recipient_replies_from_dovecot(chunking: bool) -> None:
    data = body("lmtp to dovecot", b"Delivered by LMTP.\r\n")
    with dovecot_lmtp(prepare_mail=("carol",)) as lmtp:

        async def main():  # type: ignore[no-untyped-def]
            session = await OutboundSession.open(
                Peer("localhost", str(lmtp.socket)),
                settings(lmtp=True, use_chunking=chunking),
                TlsPolicy(TlsMode.NONE),
            )
            result = await session.send(
                message("bob@example.test", "carol@example.test", "dave@example.test", data=data)
            )
            await session.quit()
            return session, result

        session, result = run(main())
        bob, carol, dave = result.recipients
        assert bob.delivered and dave.delivered, result.recipients
        # carol's Maildir cannot be created: her own reply after the data says so.
        assert carol.reply.is_transient and carol.reply.enhanced == "4.2.0", carol.reply
        # Dovecot names the recipient in each reply: they came in RCPT order.
        for r in result.recipients:
            assert f"<{r.recipient.address}>" in r.reply.text
        assert result.usable
        assert ("CHUNKING" in result.info.extensions) is True
        assert [e.stage for e in result.transcript][-3:] == [Stage.MESSAGE] * 3
        last = result.transcript[-1].command
        assert last == (f"BDAT {len(data)} LAST" if chunking else ".")
        assert session.transcript[1].command == "LHLO client.example.test"
        for user in ("bob", "dave"):
            stored = lmtp.maildir_messages(user)
            assert len(stored) == 1 and stored[0].endswith(b"\nDelivered by LMTP.\n")
