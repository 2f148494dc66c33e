"""ESMTP MAIL/RCPT parameters through the server, in both feeding modes.

SIZE (RFC 1870), BODY (RFC 6152, RFC 3030), SMTPUTF8 (RFC 6531), RET/ENVID/NOTIFY/ORCPT
(RFC 3461), AUTH= (RFC 4954 §5).  Parameters of extensions are only valid after EHLO.
"""

from __future__ import annotations

import pytest

from mailwright.smtp import (
    DEFAULT_EXTENSIONS,
    CommandError,
    MailFrom,
    MailParams,
    RcptParams,
    RcptTo,
    Reply,
    ServerOptions,
    State,
    XtextError,
    codes,
    decode_xtext,
    encode_xtext,
)
from mailwright.smtp.limits import MAX_ENVID_LENGTH

from .helpers import EHLO, Driver, lines

MAIL = "MAIL FROM:<alice@a.example>"
RCPT = "RCPT TO:<bob@b.example>"


def mail(mode: str, params: str, **kwargs: object) -> tuple[Driver, MailFrom | Reply]:
    """Send MAIL with ``params``; return the MailFrom event or the error reply."""
    d = Driver(mode, **kwargs).feed(EHLO + lines(f"{MAIL} {params}".rstrip()))  # type: ignore[arg-type]
    event = d.events[-1]
    if isinstance(event, CommandError):
        return d, event.reply
    assert isinstance(event, MailFrom)
    return d, event


def rcpt(mode: str, params: str, mail_params: str = "") -> MailFrom | RcptTo | Reply:
    d = Driver(mode).feed(
        EHLO + lines(f"{MAIL} {mail_params}".rstrip(), f"{RCPT} {params}".rstrip())
    )
    event = d.events[-1]
    return event.reply if isinstance(event, CommandError) else event


def code_of(result: object) -> tuple[int, str]:
    assert isinstance(result, Reply), result
    return result.code, result.enhanced


# -- accepted ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("", MailParams()),
        ("SIZE=0", MailParams(size=0)),
        ("SIZE=12345", MailParams(size=12345)),
        ("size=7", MailParams(size=7)),
        ("BODY=7BIT", MailParams(body="7BIT")),
        ("BODY=8BITMIME", MailParams(body="8BITMIME")),
        ("body=8bitmime", MailParams(body="8BITMIME")),
        ("BODY=BINARYMIME", MailParams(body="BINARYMIME")),
        ("SMTPUTF8", MailParams(smtputf8=True)),
        ("RET=FULL", MailParams(ret="FULL")),
        ("RET=hdrs", MailParams(ret="HDRS")),
        ("ENVID=QQ-1234", MailParams(envid="QQ-1234")),
        ("ENVID=a+2Bb+3Dc+20d", MailParams(envid="a+b=c d")),
        ("ENVID=" + "x" * MAX_ENVID_LENGTH, MailParams(envid="x" * MAX_ENVID_LENGTH)),
        ("ENVID=caf+C3+A9", MailParams(envid="café")),  # xtext octets are UTF-8
        (
            "SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id1",
            MailParams(size=10, body="8BITMIME", smtputf8=True, ret="HDRS", envid="id1"),
        ),
    ],
)
def test_mail_parameter_accepted(mode: str, params: str, expected: MailParams) -> None:
    d, event = mail(mode, params)
    assert isinstance(event, MailFrom), event
    assert event.params == expected
    assert d.replies[-1] == codes.R250_SENDER_OK
    assert d.conn.transaction.mail == event


def test_auth_parameter_needs_the_auth_extension(mode: str) -> None:
    _, event = mail(mode, "AUTH=<>")
    assert code_of(event) == (555, "5.5.4")
    _, event = mail(mode, "AUTH=alice+40a.example", extensions=DEFAULT_EXTENSIONS | {"AUTH"})
    assert isinstance(event, MailFrom)
    assert event.params.auth == "alice@a.example"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("NOTIFY=NEVER", RcptParams(notify=("NEVER",))),
        ("NOTIFY=SUCCESS", RcptParams(notify=("SUCCESS",))),
        ("NOTIFY=success,failure", RcptParams(notify=("SUCCESS", "FAILURE"))),
        ("NOTIFY=SUCCESS,FAILURE,DELAY", RcptParams(notify=("SUCCESS", "FAILURE", "DELAY"))),
        ("NOTIFY=DELAY,SUCCESS", RcptParams(notify=("DELAY", "SUCCESS"))),
        ("ORCPT=rfc822;bob@b.example", RcptParams(orcpt="rfc822;bob@b.example")),
        ("ORCPT=RFC822;bob+2Bx@b.example", RcptParams(orcpt="rfc822;bob+x@b.example")),
        (
            "NOTIFY=FAILURE ORCPT=rfc822;b@b.example",
            RcptParams(notify=("FAILURE",), orcpt="rfc822;b@b.example"),
        ),
    ],
)
def test_rcpt_parameter_accepted(mode: str, params: str, expected: RcptParams) -> None:
    event = rcpt(mode, params)
    assert isinstance(event, RcptTo), event
    assert event.params == expected


# -- refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ("SIZE=abc", (501, "5.5.4")),
        ("SIZE=", (501, "5.5.4")),
        ("SIZE", (501, "5.5.4")),
        ("SIZE=-1", (501, "5.5.4")),
        ("SIZE=1e3", (501, "5.5.4")),
        ("SIZE=\u00b2", (501, "5.5.4")),  # str.isdigit() is True, int() fails
        ("SIZE=\u0663", (501, "5.5.4")),  # ARABIC-INDIC DIGIT THREE: not ASCII
        ("SIZE=1 SIZE=1", (501, "5.5.4")),
        ("BODY=9BIT", (501, "5.5.4")),
        ("BODY", (501, "5.5.4")),
        ("SMTPUTF8=yes", (501, "5.5.4")),
        ("RET=NONE", (501, "5.5.4")),
        ("ENVID=", (501, "5.5.4")),
        ("ENVID=a+2b", (501, "5.5.4")),  # xtext hex must be upper case
        ("ENVID=a+2", (501, "5.5.4")),
        ("ENVID=a=b", (501, "5.5.4")),
        ("ENVID=" + "x" * (MAX_ENVID_LENGTH + 1), (501, "5.5.4")),
        ("ENVID=+FF", (501, "5.5.4")),  # not UTF-8
        ("X-FOO=1", (555, "5.5.4")),
        ("NOTIFY=NEVER", (555, "5.5.4")),  # a RCPT parameter
        ("=1", (501, "5.5.4")),
        ("FOO_BAR=1", (501, "5.5.4")),
    ],
)
def test_mail_parameter_refused(mode: str, params: str, code: tuple[int, str]) -> None:
    d, event = mail(mode, params)
    assert code_of(event) == code
    assert d.state is State.READY
    assert d.conn.transaction.mail is None


@pytest.mark.parametrize(
    "params",
    [
        "NOTIFY=NEVER,SUCCESS",
        "NOTIFY=SUCCESS,SUCCESS",
        "NOTIFY=SOMETIMES",
        "NOTIFY=SUCCESS,",
        "NOTIFY=",
        "NOTIFY",
        "ORCPT=rfc822",
        "ORCPT=;bob@b.example",
        "ORCPT=rfc822;",
        "ORCPT=rfc822;bob+zz@b.example",
        "ORCPT=rfc822;" + "b" * 500,
    ],
)
def test_rcpt_parameter_refused(mode: str, params: str) -> None:
    assert code_of(rcpt(mode, params)) == (501, "5.5.4")


@pytest.mark.parametrize("params", ["SIZE=1", "X-FOO", "RET=FULL"])
def test_unknown_rcpt_parameter_is_555(mode: str, params: str) -> None:
    assert code_of(rcpt(mode, params)) == (555, "5.5.4")


def test_binarymime_with_data_is_503(mode: str) -> None:
    d = Driver(mode).feed(EHLO + lines(f"{MAIL} BODY=BINARYMIME", RCPT, "DATA"))
    assert d.replies[-1] == codes.R503_BINARYMIME_NEEDS_BDAT
    assert d.state is State.RCPT


def test_binarymime_needs_binarymime_advertised(mode: str) -> None:
    options = ServerOptions(extensions=DEFAULT_EXTENSIONS - {"BINARYMIME"})
    _, event = mail(mode, "BODY=BINARYMIME", options=options)
    assert code_of(event) == (501, "5.5.4")
    _, event = mail(mode, "BODY=8BITMIME", options=options)
    assert isinstance(event, MailFrom)


def test_dsn_parameters_need_dsn_advertised(mode: str) -> None:
    options = ServerOptions(extensions=DEFAULT_EXTENSIONS - {"DSN"})
    for params in ["RET=FULL", "ENVID=x"]:
        _, event = mail(mode, params, options=options)
        assert code_of(event) == (555, "5.5.4")


@pytest.mark.parametrize(
    "command",
    [
        f"{MAIL} SIZE=100",
        f"{MAIL} BODY=8BITMIME",
        f"{MAIL} SMTPUTF8",
        f"{MAIL} RET=FULL",
        f"{MAIL} ENVID=x",
    ],
)
def test_mail_extension_parameters_refused_after_helo(mode: str, command: str) -> None:
    d = Driver(mode).feed(lines("HELO client.example", command))
    assert code_of(d.command_errors[-1]) == (555, "5.5.4")
    assert d.state is State.READY


@pytest.mark.parametrize("params", ["NOTIFY=NEVER", "ORCPT=rfc822;b@b.example"])
def test_rcpt_extension_parameters_refused_after_helo(mode: str, params: str) -> None:
    d = Driver(mode).feed(lines("HELO client.example", MAIL, f"{RCPT} {params}"))
    assert code_of(d.command_errors[-1]) == (555, "5.5.4")
    assert d.state is State.MAIL


def test_extension_parameters_allowed_again_after_ehlo(mode: str) -> None:
    d = Driver(mode).feed(lines("HELO client.example", "EHLO client.example", f"{MAIL} SIZE=5"))
    assert d.of_type(MailFrom)[-1].params.size == 5


# -- SMTPUTF8 -------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["<jösé@a.example>", "<jose@bücher.example>"])
def test_utf8_sender_needs_smtputf8(mode: str, address: str) -> None:
    d = Driver(mode).feed(EHLO + lines(f"MAIL FROM:{address}"))
    assert d.command_errors == [codes.R553_UTF8_NOT_ALLOWED]
    assert bytes(d.output).endswith(b"\r\n553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n")
    d.feed(lines(f"MAIL FROM:{address} SMTPUTF8"))
    assert d.of_type(MailFrom)[-1].address.is_utf8
    assert d.state is State.MAIL


@pytest.mark.parametrize("address", ["<jösé@b.example>", "<bob@bücher.example>"])
def test_utf8_recipient_needs_smtputf8_on_mail(mode: str, address: str) -> None:
    result = rcpt(mode, "", mail_params="")
    assert isinstance(result, RcptTo)  # ASCII recipient: fine without SMTPUTF8
    d = Driver(mode).feed(EHLO + lines(MAIL, f"RCPT TO:{address}"))
    assert d.command_errors == [codes.R553_UTF8_NOT_ALLOWED]
    assert d.state is State.MAIL
    d = Driver(mode).feed(EHLO + lines(f"{MAIL} SMTPUTF8", f"RCPT TO:{address}"))
    (event,) = d.of_type(RcptTo)
    assert event.address.is_utf8
    assert d.state is State.RCPT


def test_utf8_domain_has_an_a_label(mode: str) -> None:
    d = Driver(mode).feed(EHLO + lines(f"{MAIL} SMTPUTF8", "RCPT TO:<bob@Bücher.example>"))
    (event,) = d.of_type(RcptTo)
    assert event.address.domain == "bücher.example"
    assert event.address.ascii_domain == "xn--bcher-kva.example"


def test_utf8_after_helo_is_refused(mode: str) -> None:
    d = Driver(mode).feed(lines("HELO c.example", "MAIL FROM:<jösé@a.example> SMTPUTF8"))
    assert code_of(d.command_errors[-1]) == (555, "5.5.4")


# -- xtext ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [("abc", "abc"), ("a+2Bb", "a+b"), ("+3D", "="), ("+20+09", " \t"), ("caf+C3+A9", "café")],
)
def test_xtext(encoded: str, decoded: str) -> None:
    assert decode_xtext(encoded) == decoded
    assert decode_xtext(encode_xtext(decoded)) == decoded


@pytest.mark.parametrize("bad", ["+", "+4", "+4g", "+ff", "a b", "a=b", "é", "+FF", "+C3"])
def test_bad_xtext(bad: str) -> None:
    with pytest.raises(XtextError):
        decode_xtext(bad)
