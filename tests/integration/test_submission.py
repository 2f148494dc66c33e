"""Submission (RFC 6409) with stdlib smtplib: STARTTLS + login, local delivery, relay
for authenticated users, AUTH required before MAIL, sender-login matching.

A message an authenticated user sends to a remote domain is *accepted and queued*,
then relayed by MX; the tests' DNS knows no ``remote.test``, so it fails delivery
permanently with ``550 5.1.2 Recipient domain not found`` and bounces to the
sender: the mail log and the sender's Maildir show it, no remote Maildir ever does.
"""

from __future__ import annotations

import email.utils
import smtplib
import time

import pytest

from helpers.secure import (
    ALICE,
    ALICE_ALIAS,
    BOB,
    PASSWORD,
    client_context,
    connect,
    listeners,
    login,
    secure_extra,
    wait_for_log,
    write_users,
)
from helpers.servers import EXAMPLE, HOST, HOSTNAME
from helpers.wire import CLIENT_NAME, message, queue_id_of, smtplib_client


def secure_server(make_server, *, worker: bool = False, **kwargs):
    return make_server(extra=secure_extra(**kwargs), prepare=write_users, worker=worker)


def smtplib_login(server, role: str = "submission") -> smtplib.SMTP:
    if role == "submissions":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            HOST, server.ports[role], CLIENT_NAME, timeout=10, context=client_context()
        )
    else:
        smtp = smtplib.SMTP(HOST, server.ports[role], CLIENT_NAME, timeout=10)
        smtp.starttls(context=client_context())
    smtp.ehlo()
    code, text = smtp.login(ALICE, PASSWORD)
    assert code == 235, text
    return smtp


@pytest.mark.parametrize("role", ["submission", "submissions"])
def test_smtplib_starttls_login_delivers_locally(make_server, role):
    server = secure_server(make_server)
    smtp = smtplib_login(server, role)
    try:
        refused = smtp.sendmail(ALICE, [BOB], message(f"local via {role}"))
        assert refused == {}
    finally:
        smtp.quit()
    [msg] = server.maildir_messages(EXAMPLE, "bob")
    assert f"Subject: local via {role}".encode() in msg


# The bounce path (a DSN queued by the runner and delivered like any message) also in
# the production process mode, the runner in a delivery worker process.
@pytest.mark.parametrize("worker", [False, True], ids=["runner-in-server", "worker-process"])
def test_smtplib_login_relays_to_remote_domain_queued_then_bounced(make_server, worker):
    server = secure_server(make_server, worker=worker)
    smtp = smtplib_login(server)
    try:
        smtp.mail(ALICE)
        code, text = smtp.rcpt("someone@remote.test")
        assert code == 250, text  # relaying is allowed for authenticated users
        code, text = smtp.data(message("to a remote domain"))
        assert code == 250, text
        queue_id = queue_id_of(text)
    finally:
        smtp.quit()
    log = wait_for_log(server, f"{queue_id}: bounced to=<someone@remote.test>")
    [line] = [ln for ln in log.splitlines() if f"{queue_id}: bounced" in ln]
    assert "550 5.1.2 Recipient domain not found" in line, line
    assert f"{queue_id}: accepted from=<{ALICE}>" in log
    # The bounce (a DSN) goes back to alice; nothing is delivered anywhere else.
    [dsn] = server.maildir_messages(EXAMPLE, "alice")
    assert b"someone@remote.test" in dsn and b"5.1.2" in dsn
    boxes = {p.relative_to(server.data_dir / "mail").parts[:2] for p in server.all_mail_files()}
    assert boxes == {(EXAMPLE, "alice")}


def test_smtplib_login_mixed_local_and_remote_recipients(make_server):
    server = secure_server(make_server)
    smtp = smtplib_login(server)
    try:
        refused = smtp.sendmail(ALICE, [BOB, "friend@remote.test"], message("mixed"))
        assert refused == {}
    finally:
        smtp.quit()
    [msg] = server.maildir_messages(EXAMPLE, "bob")
    assert b"Subject: mixed" in msg
    wait_for_log(server, "bounced to=<friend@remote.test>")


def test_submission_without_auth_530(make_server):
    server = secure_server(make_server)
    for role, tls in [("submission", True), ("submission", False), ("submissions", True)]:
        with connect(server, role, tls=tls) as c:
            reply = c.cmd(f"MAIL FROM:<{ALICE}>")
            assert (reply.code, reply.enhanced) == (530, "5.7.0"), (role, tls, reply)
            # Not even local recipients are reachable without AUTH on submission.
            assert c.cmd(f"RCPT TO:<{BOB}>").code == 503
    server.assert_nothing_stored()
    assert "MAIL before AUTH on a submission listener" in server.mail_log()


def test_submission_without_auth_530_with_smtplib(make_server):
    server = secure_server(make_server)
    with smtplib.SMTP(HOST, server.ports["submission"], CLIENT_NAME, timeout=10) as smtp:
        smtp.starttls(context=client_context())
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail(ALICE, [BOB], message("no auth"))
        assert refused.value.smtp_code == 530


def test_sender_login_mismatch_553(make_server):
    server = secure_server(make_server)
    with login(server) as c:
        reply = c.cmd(f"MAIL FROM:<{BOB}>")
        assert (reply.code, reply.enhanced) == (553, "5.7.1"), reply
        reply = c.cmd("MAIL FROM:<alice@remote.test>")
        assert (reply.code, reply.enhanced) == (553, "5.7.1"), reply
        # Her own addresses (any case) and the null sender are fine.
        for sender in (ALICE, "Alice@Example.TEST", ALICE_ALIAS, ""):
            assert c.cmd(f"MAIL FROM:<{sender}>").code == 250, sender
            assert c.cmd("RSET").code == 250
    assert "alice@example.test may not send as bob@example.test" in server.mail_log()


def test_sender_login_mismatch_553_with_smtplib(make_server):
    server = secure_server(make_server)
    smtp = smtplib_login(server)
    try:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail(BOB, [BOB], message("forged"))
        assert refused.value.smtp_code == 553
    finally:
        smtp.quit()
    server.assert_nothing_stored()


def test_sender_login_match_can_be_turned_off(make_server):
    from helpers.secure import listeners

    server = make_server(
        extra=secure_extra(listener=listeners(submission={"sender_login_match": False})),
        prepare=write_users,
    )
    with login(server) as c:
        assert c.cmd(f"MAIL FROM:<{BOB}>").code == 250


def test_inbound_auth_is_optional_and_not_sender_matched(make_server):
    """On the inbound (MX) role AUTH is optional: strangers deliver to local users,
    and an authenticated user is not held to its own sender addresses there."""
    server = secure_server(make_server)
    with connect(server, "inbound") as c:
        assert c.cmd("MAIL FROM:<stranger@remote.test>").code == 250
        assert c.cmd(f"RCPT TO:<{BOB}>").code == 250
    with login(server, "inbound") as c:
        assert c.cmd(f"MAIL FROM:<{BOB}>").code == 250
        assert c.cmd("RCPT TO:<someone@remote.test>").code == 250  # authenticated relay


def test_smtplib_login_is_not_slowed_by_an_unusable_cram_md5(make_server):
    """CRAM-MD5 is opt-in per user.  smtplib's login() tries CRAM-MD5 first whenever
    it is offered and falls back to PLAIN after a 535; with the default AUTH failure
    delay (1 s) every login then took a second longer and logged a failed AUTH (food
    for fail2ban-style bans).  With no user opted in, CRAM-MD5 is not offered."""
    from helpers.secure import ALICE_ALIAS, fast_store

    def only_alice(data_dir):
        fast_store(data_dir).add(ALICE, PASSWORD, addresses=[ALICE_ALIAS])

    server = make_server(
        extra=secure_extra(abuse={"auth_base_delay": 1.0, "auth_max_delay": 8.0}),
        prepare=only_alice,
    )
    with smtplib.SMTP(HOST, server.ports["submission"], CLIENT_NAME, timeout=10) as smtp:
        smtp.starttls(context=client_context())
        smtp.ehlo()
        assert "CRAM-MD5" not in smtp.esmtp_features["auth"].upper()
        start = time.monotonic()
        assert smtp.login(ALICE, PASSWORD)[0] == 235
        assert time.monotonic() - start < 0.8
    assert "AUTH failed" not in server.mail_log()
    # Once a user opts in, CRAM-MD5 is offered (to everyone: the server cannot know
    # who is logging in before the exchange).
    fast_store(server.data_dir).add(BOB, PASSWORD, cram_md5=True)
    with connect(server, "submission", ehlo=False) as c:
        [auth] = [line for line in c.ehlo().lines if line.startswith("AUTH ")]
        assert "CRAM-MD5" in auth.split()
        assert c.sasl("CRAM-MD5", BOB, PASSWORD).code == 235


def _from_checking_server(make_server):
    return make_server(
        extra=secure_extra(listener=listeners(submission={"from_header_match": True})),
        prepare=write_users,
    )


def _send_with_from(server, header_from: str) -> tuple[int, str]:
    smtp = smtplib_login(server)
    try:
        smtp.mail(ALICE)
        code, text = smtp.rcpt(BOB)
        assert code == 250, text
        body = f"From: {header_from}\r\nSubject: from check\r\n\r\nhello\r\n"
        code, reply = smtp.data(body.encode())
        return code, reply.decode()
    finally:
        smtp.quit()


def test_from_header_mismatch_553(make_server):
    """Regression: with from_header_match on, a user cannot put another user's address
    in From: even with its own envelope sender (553 5.7.1 at the end of DATA)."""
    server = _from_checking_server(make_server)
    code, text = _send_with_from(server, f"Bob <{BOB}>")
    assert (code, text.split()[0]) == (553, "5.7.1"), text
    server.wait_settled()
    assert server.accepted_count() == 0
    assert server.message_files(EXAMPLE, "bob") == []


def test_from_header_with_own_alias_is_accepted(make_server):
    server = _from_checking_server(make_server)
    code, text = _send_with_from(server, f'"Alice" <{ALICE_ALIAS}>')
    assert code == 250, text
    [msg] = server.maildir_messages(EXAMPLE, "bob")
    assert b"Subject: from check" in msg


def test_from_header_not_checked_by_default(make_server):
    server = secure_server(make_server)
    code, text = _send_with_from(server, f"Bob <{BOB}>")
    assert code == 250, text


# -- RFC 6409 §8.2/8.3: Date: and Message-ID: added on submission (issue 8 item 10) --

# What a minimal client (a script, a device) submits: neither Date: nor Message-ID:.
INCOMPLETE = (
    b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: incomplete\r\n"
    b"\r\nNo Date, no Message-ID.\r\n"
)


def lf(data: bytes) -> bytes:
    """Line ends as LF: the Maildir may store CRLF or LF (DESIGN: LF)."""
    return data.replace(b"\r\n", b"\n")


def header_fields(delivered: bytes, name: bytes) -> list[bytes]:
    head = lf(delivered).split(b"\n\n", 1)[0]
    return [line for line in head.split(b"\n") if line.lower().startswith(name.lower() + b":")]


@pytest.mark.parametrize("role", ["submission", "submissions"])
def test_submission_adds_missing_date_and_message_id(make_server, role):
    server = secure_server(make_server)
    smtp = smtplib_login(server, role)
    try:
        assert smtp.sendmail(ALICE, [BOB], INCOMPLETE) == {}
    finally:
        smtp.quit()
    [delivered] = server.maildir_messages(EXAMPLE, "bob")
    [date] = header_fields(delivered, b"Date")  # exactly one of each
    [message_id] = header_fields(delivered, b"Message-ID")
    sent = email.utils.parsedate_to_datetime(date[5:].strip().decode())
    assert abs(sent.timestamp() - time.time()) < 300
    assert message_id.startswith(b"Message-ID: <") and message_id.endswith(f"@{HOSTNAME}>".encode())
    # Added after our Received header, before the client's header section, which
    # follows unchanged with the body.
    text = lf(delivered)
    assert text.index(b"\nReceived: ") < text.index(b"\nDate: ") < text.index(b"\nFrom: ")
    assert text.endswith(b"\n" + lf(message_id) + b"\n" + lf(INCOMPLETE))


def test_submission_leaves_a_complete_message_unchanged(make_server):
    server = secure_server(make_server)
    complete = message("complete", extra=b"Date: Tue, 14 Nov 2023 22:13:20 +0100\r\n")
    smtp = smtplib_login(server)
    try:
        assert smtp.sendmail(ALICE, [BOB], complete) == {}
    finally:
        smtp.quit()
    [delivered] = server.maildir_messages(EXAMPLE, "bob")
    assert header_fields(delivered, b"Date") == [b"Date: Tue, 14 Nov 2023 22:13:20 +0100"]
    assert header_fields(delivered, b"Message-ID") == [b"Message-ID: <complete@remote.test>"]
    # Only trace fields in front of the original.
    trace = lf(delivered)[: -len(lf(complete))]
    assert lf(delivered).endswith(lf(complete))
    assert b"\nDate:" not in trace and b"\nMessage-ID:" not in trace


def test_inbound_never_adds_date_or_message_id(make_server):
    server = secure_server(make_server)
    with smtplib_client(HOST, server.ports["inbound"]) as smtp:
        assert smtp.sendmail("sender@remote.test", [BOB], INCOMPLETE) == {}
    [delivered] = server.maildir_messages(EXAMPLE, "bob")
    assert header_fields(delivered, b"Date") == []
    assert header_fields(delivered, b"Message-ID") == []
    assert lf(delivered).endswith(lf(INCOMPLETE))


def test_submission_adds_missing_fields_to_a_bdat_message(make_server):
    server = secure_server(make_server)
    first, second = INCOMPLETE[:20], INCOMPLETE[20:]  # the header section spans chunks
    with login(server) as c:
        assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
        assert c.cmd(f"RCPT TO:<{BOB}>").code == 250
        c.send(f"BDAT {len(first)}\r\n".encode() + first)
        assert c.reply().code == 250
        c.send(f"BDAT {len(second)} LAST\r\n".encode() + second)
        assert c.reply().code == 250
    [delivered] = server.maildir_messages(EXAMPLE, "bob")
    assert len(header_fields(delivered, b"Date")) == 1
    assert len(header_fields(delivered, b"Message-ID")) == 1
    assert lf(delivered).endswith(lf(INCOMPLETE))
