"""Which replies of a session go into one recipient's history row
(``delivery.relay.history``): the shared opening, MAIL and DATA, its own RCPT and —
for LMTP, one reply per accepted recipient after the data (RFC 2033 §4.2) — its own
final reply, never another recipient's."""

from __future__ import annotations

from mailwright.delivery.relay.history import failed_session, recipient_replies
from mailwright.net.outbound import OPPORTUNISTIC, Peer, SessionError, Stage, TranscriptEntry
from mailwright.smtp import Reply

LMTP_TRANSCRIPT = (
    TranscriptEntry(Stage.GREETING, "", Reply(220, "", ("lmtp ready",))),
    TranscriptEntry(Stage.EHLO, "LHLO relay.test", Reply(250, "", ("lmtp",))),
    TranscriptEntry(Stage.MAIL, "MAIL FROM:<s@origin.test>", Reply(250, "2.1.0", ("Ok",))),
    TranscriptEntry(Stage.RCPT, "RCPT TO:<a@x.test>", Reply(250, "2.1.5", ("Ok",))),
    TranscriptEntry(Stage.RCPT, "RCPT TO:<b@x.test>", Reply(550, "5.1.1", ("Unknown",))),
    TranscriptEntry(Stage.RCPT, "RCPT TO:<c@x.test>", Reply(250, "2.1.5", ("Ok",))),
    TranscriptEntry(Stage.DATA, "DATA", Reply(354, "", ("Go",))),
    TranscriptEntry(Stage.MESSAGE, ".", Reply(250, "2.0.0", ("a saved",))),
    TranscriptEntry(Stage.MESSAGE, ".", Reply(452, "4.2.2", ("c over quota",))),
)


def texts(index: int, lmtp: bool = True) -> list[str]:
    replies = recipient_replies(LMTP_TRANSCRIPT, index, lmtp=lmtp)
    return [f"{r.stage} {r.command} {r.reply}".strip() for r in replies]


def test_lmtp_recipient_gets_its_own_rcpt_and_its_own_reply_after_the_data():
    shared = [
        "greeting  220 lmtp ready",
        "ehlo LHLO relay.test 250 lmtp",
        "mail MAIL FROM:<s@origin.test> 250 2.1.0 Ok",
    ]
    assert texts(0) == [
        *shared,
        "rcpt RCPT TO:<a@x.test> 250 2.1.5 Ok",
        "data DATA 354 Go",
        "message . 250 2.0.0 a saved",
    ]
    assert texts(1) == [*shared, "rcpt RCPT TO:<b@x.test> 550 5.1.1 Unknown", "data DATA 354 Go"]
    assert texts(2) == [
        *shared,
        "rcpt RCPT TO:<c@x.test> 250 2.1.5 Ok",
        "data DATA 354 Go",
        "message . 452 4.2.2 c over quota",
    ]


def test_smtp_reply_after_the_data_is_every_recipients():
    # SMTP has one reply after the data, for all (here the transcript's first).
    assert texts(2, lmtp=False)[-2:] == [
        "message . 250 2.0.0 a saved",
        "message . 452 4.2.2 c over quota",
    ]


def test_a_session_that_failed_before_a_transaction_keeps_what_it_got():
    error = SessionError(
        Stage.EHLO,
        "EHLO refused",
        temporary=False,
        reply=Reply(554, "5.7.1", ("go away",)),
        result_reply=Reply(554, "5.7.1", ("go away",)),
        peer=Peer("mx.x.test", "2001:db8::5", 2525),
        transcript=(
            TranscriptEntry(Stage.GREETING, "", Reply(220, "", ("hi",))),
            TranscriptEntry(Stage.EHLO, "EHLO relay.test", Reply(554, "5.7.1", ("go away",))),
        ),
    )
    session = failed_session(error, OPPORTUNISTIC)
    assert (session.host, session.address, session.port) == ("mx.x.test", "2001:db8::5", 2525)
    assert (session.tls_mode, session.tls_source, session.tls_version) == ("may", "default", None)
    assert [str(r.reply) for r in session.replies] == ["220 hi", "554 5.7.1 go away"]
