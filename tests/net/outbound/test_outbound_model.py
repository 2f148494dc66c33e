"""The outbound API's values: RFC 5321 §4.5.3.2 timeouts by default, the package's
public names, and a SessionError that says where and why in one line."""

from __future__ import annotations

import mailwright.net.outbound as outbound
from mailwright.net.outbound import ClientTimeouts, Peer, SessionError, Stage
from mailwright.smtp import codes


def test_default_timeouts_are_rfc_5321_section_4_5_3_2() -> None:
    t = ClientTimeouts()
    minutes = {
        "greeting": 5,  # 4.5.3.2.1 initial 220 message
        "mail": 5,  # 4.5.3.2.2
        "rcpt": 5,  # 4.5.3.2.3
        "data_init": 2,  # 4.5.3.2.4
        "data_block": 3,  # 4.5.3.2.5
        "data_end": 10,  # 4.5.3.2.6
    }
    assert {name: getattr(t, name) / 60 for name in minutes} == minutes


def test_public_names() -> None:
    for name in outbound.__all__:
        assert getattr(outbound, name) is not None
    assert sorted(outbound.__all__) == sorted(set(outbound.__all__))


def test_session_error_says_where_and_why() -> None:
    err = SessionError(
        Stage.STARTTLS,
        "TLS required but not offered",
        temporary=True,
        result_reply=codes.R451_TLS_NOT_OFFERED,
        peer=Peer("mx.example.net", "192.0.2.1", 25),
    )
    assert str(err) == "mx.example.net[192.0.2.1] starttls: TLS required but not offered"
    assert err.reply is None and err.transcript == ()
