"""``mailwright explain`` as a subprocess: golden human output, ``--json`` parsed back,
argument grouping, standard input, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

from mailwright.cli.explain import group_arguments


def mw(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwright", "explain", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


GOLDEN = """\
421  Service not available, closing transmission channel
  outcome  temporary failure
  meaning  421: Service not available, closing transmission channel - the server
           is closing the connection (shutdown, overload, too many connections
           or errors, a timeout) [transient negative completion: not done now,
           retrying later may work; connections].
  defined  RFC 5321 §4.2.2
  fix      temporary: retry later, with fewer connections at once

550 5.1.1  Bad destination mailbox address (the recipient does not exist on that server)
  text     <bob@example.org>: Recipient address rejected: User unknown
  outcome  permanent failure
  meaning  550: Requested action not taken: mailbox unavailable - permanently
           refused: no such mailbox, no access, or policy [permanent negative
           completion: not done, do not retry it unchanged; mail system]. 5.1.1:
           Bad destination mailbox address - the recipient does not exist: the
           part left of the @ is unknown there [class 5: permanent failure
           (retrying the same message will fail the same way); subject:
           addressing status]. The text matches Postfix's wording: the recipient
           does not exist on that server.
  wording  Postfix
  defined  RFC 5321 §4.2.2; RFC 3463 §3.4; IANA SMTP Enhanced Status Codes
           registry (RFC 5248)
  fix      the recipient does not exist: check the address
"""


def test_human_output_golden() -> None:
    done = mw("421", "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown")
    assert done.returncode == 0, done.stderr
    assert done.stdout == GOLDEN
    assert done.stderr == ""


def test_json_is_parsed_back() -> None:
    done = mw("--json", "451", "4.7.1", "5.7.26", "559")
    assert done.returncode == 0, done.stderr
    items = json.loads(done.stdout)
    assert [(i["code"], i["enhanced"]) for i in items] == [
        (451, "4.7.1"),
        (None, "5.7.26"),
        (559, None),
    ]
    first = items[0]
    assert first["permanent"] is False
    assert first["title"] == "Delivery not authorized, message refused"
    assert first["fix"].startswith("temporary: ")
    assert "RFC 3463 §3.10" in first["rfc"]
    assert items[1]["rfc"].startswith("RFC 7372")
    assert items[2]["registered"] is False


def test_standard_input_takes_a_pasted_multiline_reply() -> None:
    pasted = (
        "550-5.7.1 [192.0.2.9] Our system has detected that this message is\r\n"
        "550-5.7.1 likely unsolicited mail. To reduce the amount of spam sent\r\n"
        "550 5.7.1 to Gmail, this message has been blocked. gsmtp\r\n"
    )
    done = mw("--json", "-", stdin=pasted)
    assert done.returncode == 0, done.stderr
    [item] = json.loads(done.stdout)
    assert (item["code"], item["enhanced"], item["source"]) == (550, "5.7.1", "Gmail")
    assert item["text"].splitlines()[0] == (
        "[192.0.2.9] Our system has detected that this message is"
    )


def test_bad_input_is_one_line_and_exit_2() -> None:
    for args in (["hello"], ["999"], ["550", "6.1.1"], ["--json", "1.2.3.4"]):
        done = mw(*args)
        assert done.returncode == 2, args
        assert done.stdout == ""
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith("mailwright: explain: ")
        assert "Traceback" not in done.stderr
    assert mw().returncode == 2  # no argument: click's usage error


def test_argument_grouping() -> None:
    assert group_arguments(("451", "4.7.1")) == ["451 4.7.1"]
    assert group_arguments(("550", "5.7.26", "421")) == ["550 5.7.26", "421"]
    assert group_arguments(("5.7.26", "421", "550")) == ["5.7.26", "421", "550"]
    assert group_arguments(("550", "5.7.1", "<x@y>:", "Relay", "access", "denied", "421")) == [
        "550 5.7.1 <x@y>: Relay access denied",
        "421",
    ]
    assert group_arguments(("550", "relay", "denied")) == ["550 relay denied"]
    assert group_arguments(("-",)) == ["-"]
    assert group_arguments(("421", "550 5.1.1 User unknown")) == ["421", "550 5.1.1 User unknown"]


def test_help_reads_like_a_man_page() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mailwright", "explain", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    for heading in (
        "mailwright explain [OPTIONS] CODE...",
        "Input forms:",
        "Examples:",
        "Exit status:",
    ):
        assert heading in done.stdout
    assert "mailwright explain 451 4.7.1" in done.stdout
