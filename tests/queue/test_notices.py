"""Delivery status notifications the queue runner sends (RFC 3464 / RFC 3461): delay
warnings, success and "relayed" reports, Remote-MTA and the whole remote reply,
NOTIFY=NEVER, and double bounces to the postmaster that can never loop.

Every report is read back with the stdlib ``email`` package, from the bytes the
(fake) delivery agent was handed — exactly what would go on the wire — over every
``SpoolStore`` backend, with the test's clock (no sleeps).  A restart is a new store
and a new runner over the same place (``StoreFactory``).
"""

from __future__ import annotations

import email
import email.message
import logging
from email.utils import formatdate

import pytest

from helpers.spoolkit import BODY, BUSY, CONFIG, OK, UNKNOWN, Clock, StoreFactory, put, run
from mailwright.config import DeliveryConfig
from mailwright.queue.agent import DeliveryResult, Progress, ReplySource
from mailwright.queue.dsn import FOLD_WIDTH
from mailwright.queue.notices import postmaster_address
from mailwright.queue.runner import QueueRunner
from mailwright.smtp import Reply
from mailwright.spool.model import Envelope, Recipient, RemoteSession, SpooledMessage
from mailwright.spool.store import SpoolStore

REMOTE = ReplySource.REMOTE  # the scripted results stand for a remote host's replies

HOUR = 3600.0
WARN = DeliveryConfig(
    retry_initial=60, retry_max=HOUR, max_queue_lifetime=24 * HOUR, delay_warning_time=4 * HOUR
)
MTA = "mx.example.com"
POSTMASTER = f"postmaster@{MTA}"
SENDER = "alice@example.com"


class ScriptedAgent:
    """Per-address results (default: 250 delivered locally); records every call."""

    def __init__(self, results: dict[str, DeliveryResult] | None = None) -> None:
        self.results = results or {}
        self.calls: list[tuple[SpooledMessage, bytes, list[str]]] = []

    async def deliver(
        self,
        message: SpooledMessage,
        body: bytes,
        recipients: list[Recipient],
        progress: Progress | None = None,
    ) -> dict[str, DeliveryResult]:
        self.calls.append((message, body, [r.address for r in recipients]))
        return {r.address: self.results.get(r.address, DeliveryResult(OK)) for r in recipients}

    def reports(self) -> list[tuple[SpooledMessage, email.message.Message]]:
        """Every null-sender message handed over, parsed."""
        return [
            (m, email.message_from_bytes(b)) for m, b, _ in self.calls if not m.envelope.mail_from
        ]

    def addresses(self) -> list[list[str]]:
        return [rcpts for _, _, rcpts in self.calls]


def runner(store: SpoolStore, agent: ScriptedAgent, clock: Clock, **kw: object) -> QueueRunner:
    config = kw.pop("config", WARN)
    return QueueRunner(
        store,
        agent,
        config,  # type: ignore[arg-type]
        clock=clock,
        reporting_mta=MTA,
        jitter=lambda: 0.0,
        **kw,  # type: ignore[arg-type]
    )


def parts(report: email.message.Message) -> list[email.message.Message]:
    payload = report.get_payload()
    assert isinstance(payload, list) and len(payload) == 3
    return payload


def status_blocks(report: email.message.Message) -> list[email.message.Message]:
    """The per-message block, then one block per recipient (RFC 3464 §2)."""
    status = parts(report)[1]
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    return blocks


def unfold(value: str) -> str:
    """RFC 5322 §2.2.3: unfolding is removing the line breaks."""
    return value.replace("\r\n", "").replace("\n", "")


def one(notify: tuple[str, ...] = (), address: str = "bob@example.net") -> Envelope:
    return Envelope(SENDER, (Recipient(address, notify),))


# -- 1. Remote-MTA and the whole remote reply -------------------------------------------


def test_bounce_names_the_remote_mta_and_carries_its_whole_reply(
    stores: StoreFactory, clock: Clock
) -> None:
    lines = (
        "<bob@example.net>: Recipient address rejected: this mailbox was closed",
        "in 2019 when the project moved; write to the new address given on the",
        "web site, or ask the postmaster of example.net for help with it",
    )
    refused = DeliveryResult(
        Reply(550, "5.1.1", lines), remote_host="mx1.example.net", source=REMOTE
    )
    agent = ScriptedAgent({"bob@example.net": refused})

    async def main() -> None:
        store = stores(clock)
        await store.open()
        await put(store, one())
        await runner(store, agent, clock).run_once()
        ((bounce, parsed),) = agent.reports()
        assert bounce.envelope.recipients[0].address == SENDER
        _, bob = status_blocks(parsed)
        assert bob["Action"] == "failed" and bob["Status"] == "5.1.1"
        assert bob["Remote-MTA"] == "dns; mx1.example.net"
        # Every line of the reply, none cut; folded so no line is over 78 characters.
        assert unfold(bob["Diagnostic-Code"]) == "smtp; 550 5.1.1 " + " ".join(lines)
        wire = agent.calls[-1][1]
        start = wire.index(b"Content-Type: message/delivery-status")
        status_part = wire[start : wire.index(b"\r\n--", start)]
        assert b"\r\n Diagnostic" not in status_part and b"\r\n " in status_part  # folded
        assert max(len(x) for x in status_part.split(b"\r\n")) <= FOLD_WIDTH
        human = parts(parsed)[0].get_payload(decode=True)
        assert isinstance(human, bytes) and b"host mx1.example.net said: 550 5.1.1" in human
        await store.close()

    run(main())


def test_remote_mta_is_the_host_name_alone_not_postfix_host_address_port(
    stores: StoreFactory, clock: Clock
) -> None:
    """RFC 3464 §2.3.5: ``Remote-MTA: dns; <host name>`` — the relay's results name
    the host Postfix style ("mx[192.0.2.1]:25"), which belongs in the human part only.
    The name comes from the result's session, or the part before "[" without one."""
    postfix_style = "mx1.example.net[192.0.2.1]:25"
    session = RemoteSession("mx2.example.net", "2001:db8::2", 25)
    agent = ScriptedAgent(
        {
            "bob@example.net": DeliveryResult(UNKNOWN, remote_host=postfix_style, source=REMOTE),
            "carol@example.net": DeliveryResult(
                UNKNOWN,
                remote_host="mx2.example.net[2001:db8::2]:25",
                session=session,
                source=REMOTE,
            ),
        }
    )

    async def main() -> None:
        store = stores(clock)
        await store.open()
        env = Envelope(SENDER, (Recipient("bob@example.net"), Recipient("carol@example.net")))
        await put(store, env)
        await runner(store, agent, clock).run_once()
        ((_, parsed),) = agent.reports()
        _, bob, carol = status_blocks(parsed)
        assert bob["Remote-MTA"] == "dns; mx1.example.net"
        assert carol["Remote-MTA"] == "dns; mx2.example.net"
        human = parts(parsed)[0].get_payload(decode=True)
        assert isinstance(human, bytes) and f"host {postfix_style} said".encode() in human
        await store.close()

    run(main())


def test_expiry_bounce_is_our_verdict_not_what_the_remote_host_said(
    stores: StoreFactory, clock: Clock
) -> None:
    """The host answered 451 4.2.0 every time; giving up after the queue lifetime is
    our decision (4.4.7): no Remote-MTA, an X- diagnostic, no "host ... said: 451 4.4.7
    Message expired" (it never said that), the host named as the last error's source."""
    busy = DeliveryResult(BUSY, remote_host="mx1.example.net[192.0.2.1]:25", source=REMOTE)
    agent = ScriptedAgent({"bob@example.net": busy})

    async def main() -> None:
        store = stores(clock)
        await store.open()
        queue = runner(store, agent, clock)
        await put(store, one())
        await queue.run_once()
        clock.advance(WARN.max_queue_lifetime + 1)
        await queue.run_once()
        await store.close()

    run(main())
    (parsed,) = [
        p for _, p in agent.reports() if p["Subject"] == "Undelivered Mail Returned to Sender"
    ]
    _, bob = status_blocks(parsed)
    assert (bob["Action"], bob["Status"]) == ("failed", "4.4.7")
    assert bob["Remote-MTA"] is None
    expected = (
        "X-mailwright; Message expired after 1 days in queue; last error:"
        f" {BUSY} (host mx1.example.net[192.0.2.1])"
    )
    assert unfold(bob["Diagnostic-Code"]) == expected
    human = parts(parsed)[0].get_payload(decode=True)
    assert isinstance(human, bytes) and b" said:" not in human
    assert f"<bob@example.net>: {expected.removeprefix('X-mailwright; ')}".encode() in human


# -- 2. delay warnings --------------------------------------------------------------


def test_delay_warning_is_sent_once_and_not_again_after_a_restart(
    stores: StoreFactory, clock: Clock
) -> None:
    busy = DeliveryResult(BUSY, remote_host="mx1.example.net", source=REMOTE)
    agent = ScriptedAgent({"bob@example.net": busy})
    received = clock.now

    async def first_hours() -> str:
        store = stores(clock)
        await store.open()
        queue = runner(store, agent, clock)
        message = await put(store, one())
        await queue.run_once()  # deferred, not late yet
        clock.advance(3 * HOUR)
        await queue.run_once()
        assert agent.reports() == []
        clock.advance(HOUR + 1)  # past delay_warning_time
        await queue.run_once()
        assert queue.notices_sent == 1
        clock.advance(HOUR)
        await queue.run_once()  # still deferred: no second warning
        assert len(agent.reports()) == 1
        loaded = await store.load(message.queue_id)
        assert loaded is not None and loaded.recipients[0].delay_warned
        await store.close()
        return message.queue_id

    qid = run(first_hours())
    ((warning, parsed),) = agent.reports()
    assert warning.envelope.mail_from == "" and warning.envelope.recipients[0].address == SENDER
    assert parsed["Subject"] == "Delayed Mail (still being retried)"
    assert parsed["To"] == f"<{SENDER}>"
    per_message, bob = status_blocks(parsed)
    assert per_message["Reporting-MTA"] == f"dns; {MTA}"
    assert bob["Final-Recipient"] == "rfc822; bob@example.net"
    assert bob["Action"] == "delayed"
    assert bob["Status"] == "4.2.0"  # from the last reply
    assert bob["Remote-MTA"] == "dns; mx1.example.net"
    assert bob["Diagnostic-Code"] == "smtp; 451 4.2.0 Mailbox busy"
    lifetime = WARN.max_queue_lifetime
    assert bob["Will-Retry-Until"] == formatdate(received + lifetime, usegmt=True)
    # No failure: only the header comes back (RFC 3461 §4.3).
    returned = parts(parsed)[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"Hello" not in parsed.as_bytes() and "Subject: test" in str(returned.get_payload())

    async def after_restart() -> None:
        store = stores(clock)
        await store.open()
        queue = runner(store, agent, clock)
        clock.advance(2 * HOUR)
        await queue.run_once()
        assert queue.notices_sent == 0
        assert len(agent.reports()) == 1
        assert agent.calls[-1][0].queue_id == qid  # it was attempted again
        await store.close()

    run(after_restart())


@pytest.mark.parametrize(
    ("notify", "warned"),
    [
        ((), True),  # no NOTIFY: FAILURE,DELAY at our discretion (RFC 3461 §4.1)
        (("DELAY",), True),
        (("FAILURE", "DELAY"), True),
        (("FAILURE",), False),
        (("SUCCESS",), False),
        (("NEVER",), False),
    ],
)
def test_delay_warning_follows_notify(
    stores: StoreFactory, clock: Clock, notify: tuple[str, ...], warned: bool
) -> None:
    agent = ScriptedAgent({"bob@example.net": DeliveryResult(BUSY)})

    async def main() -> None:
        store = stores(clock)
        await store.open()
        await put(store, one(notify))
        clock.advance(5 * HOUR)  # the first attempt is already late
        await runner(store, agent, clock).run_once()
        assert len(agent.reports()) == int(warned)
        await store.close()

    run(main())


def test_delay_warning_time_zero_turns_warnings_off(stores: StoreFactory, clock: Clock) -> None:
    agent = ScriptedAgent({"bob@example.net": DeliveryResult(BUSY)})
    off = WARN.model_copy(update={"delay_warning_time": 0.0})

    async def main() -> None:
        store = stores(clock)
        await store.open()
        await put(store, one())
        clock.advance(20 * HOUR)
        await runner(store, agent, clock, config=off).run_once()
        assert agent.reports() == []
        await store.close()

    run(main())


def test_delay_warning_lists_only_recipients_still_pending(
    stores: StoreFactory, clock: Clock
) -> None:
    agent = ScriptedAgent({"carol@example.net": DeliveryResult(BUSY)})

    async def main() -> None:
        store = stores(clock)
        await store.open()
        env = Envelope(SENDER, (Recipient("bob@example.net"), Recipient("carol@example.net")))
        await put(store, env)
        clock.advance(5 * HOUR)
        await runner(store, agent, clock).run_once()
        ((_, parsed),) = agent.reports()
        _, carol = status_blocks(parsed)  # bob was delivered: not in the warning
        assert carol["Final-Recipient"] == "rfc822; carol@example.net"
        await store.close()

    run(main())


# -- 3. success: delivered, relayed, or left to the next hop ----------------------------


def test_notify_success_local_delivery_reports_delivered(
    stores: StoreFactory, clock: Clock
) -> None:
    agent = ScriptedAgent()

    async def main() -> None:
        store = stores(clock)
        await store.open()
        env = Envelope(
            SENDER,
            (Recipient("bob@example.net", ("SUCCESS",), "rfc822;bob@old.example"),),
            envid="ENV-7",
            ret="FULL",
        )
        original = await put(store, env)
        queue = runner(store, agent, clock)
        await queue.run_once()
        assert await store.load(original.queue_id) is None
        assert queue.notices_sent == 1 and queue.bounces_sent == 0
        ((report, parsed),) = agent.reports()
        assert report.envelope.recipients[0].address == SENDER
        assert parsed["Subject"] == "Successful Mail Delivery Report"
        per_message, bob = status_blocks(parsed)
        assert per_message["Original-Envelope-Id"] == "ENV-7"
        assert bob["Action"] == "delivered"
        assert bob["Status"] == "2.0.0"
        assert bob["Original-Recipient"] == "rfc822; bob@old.example"
        assert bob["Remote-MTA"] is None
        # Even RET=FULL returns only the header when nothing failed (RFC 3461 §4.3).
        assert parts(parsed)[2].get_content_type() == "text/rfc822-headers"
        await store.close()

    run(main())


@pytest.mark.parametrize(("next_hop_dsn", "reported"), [(False, True), (True, False)])
def test_notify_success_relayed_only_when_the_next_hop_lacks_dsn(
    stores: StoreFactory, clock: Clock, next_hop_dsn: bool, reported: bool
) -> None:
    accepted = Reply.of(250, "2.0.0", "Ok: queued as 4XyZ")
    result = DeliveryResult(
        accepted, remote_host="mx1.example.net", next_hop_dsn=next_hop_dsn, source=REMOTE
    )
    agent = ScriptedAgent({"bob@example.net": result})

    async def main() -> None:
        store = stores(clock)
        await store.open()
        await put(store, one(("SUCCESS", "FAILURE")))
        await runner(store, agent, clock).run_once()
        reports = agent.reports()
        assert len(reports) == int(reported)
        if reported:
            _, bob = status_blocks(reports[0][1])
            assert bob["Action"] == "relayed"
            assert bob["Status"] == "2.0.0"
            assert bob["Remote-MTA"] == "dns; mx1.example.net"
            assert bob["Diagnostic-Code"] == "smtp; 250 2.0.0 Ok: queued as 4XyZ"
        await store.close()

    run(main())


def test_no_success_report_without_notify_success(stores: StoreFactory, clock: Clock) -> None:
    agent = ScriptedAgent()

    async def main() -> None:
        store = stores(clock)
        await store.open()
        await put(store, one(("FAILURE", "DELAY")))
        await put(store, one())
        await runner(store, agent, clock).run_once()
        assert agent.reports() == []
        await store.close()

    run(main())


def test_notify_never_gets_no_report_of_any_kind(stores: StoreFactory, clock: Clock) -> None:
    agent = ScriptedAgent(
        {"late@example.net": DeliveryResult(BUSY), "bad@example.net": DeliveryResult(UNKNOWN)}
    )

    async def main() -> None:
        store = stores(clock)
        await store.open()
        never = ("NEVER",)
        env = Envelope(
            SENDER,
            tuple(
                Recipient(a, never)
                for a in ("ok@example.net", "late@example.net", "bad@example.net")
            ),
        )
        await put(store, env)
        clock.advance(5 * HOUR)
        queue = runner(store, agent, clock)
        await queue.run_once()
        clock.advance(30 * HOUR)  # and expired
        await queue.run_once()
        assert agent.reports() == []
        assert [m async for m in store.iterate()] == []
        await store.close()

    run(main())


# -- 4. double bounces -----------------------------------------------------------------


def test_undeliverable_bounce_goes_to_the_postmaster_once_and_never_loops(
    stores: StoreFactory, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The sender and the postmaster both refuse: original -> bounce -> double bounce
    -> logged, and nothing more."""
    refused = DeliveryResult(UNKNOWN, remote_host="mx.example.com", source=REMOTE)
    agent = ScriptedAgent(
        {"bad@example.net": refused, SENDER: refused, POSTMASTER: DeliveryResult(UNKNOWN)}
    )

    async def main() -> None:
        store = stores(clock)
        await store.open()
        await put(store, one(address="bad@example.net"))
        queue = runner(store, agent, clock, postmaster=POSTMASTER)
        with caplog.at_level(logging.WARNING, "mailwright.queue.runner"):
            await queue.run_once()
        assert agent.addresses() == [["bad@example.net"], [SENDER], [POSTMASTER]]
        assert queue.bounces_sent == 2
        assert [m async for m in store.iterate()] == []
        clock.advance(10 * 24 * HOUR)
        assert await queue.run_once() == 0  # nothing left to try, ever
        await store.close()

    run(main())
    bounce, double = agent.reports()
    assert bounce[0].envelope.recipients == (Recipient(SENDER),)
    assert double[0].envelope.mail_from == ""
    assert double[0].envelope.recipients == (Recipient(POSTMASTER, ("NEVER",)),)
    parsed = double[1]
    assert parsed["To"] == f"<{POSTMASTER}>"
    assert parsed["Subject"] == "Postmaster Copy: Undelivered Mail"
    _, block = status_blocks(parsed)
    assert block["Final-Recipient"] == f"rfc822; {SENDER}"
    assert block["Action"] == "failed" and block["Status"] == "5.1.1"
    assert block["Remote-MTA"] == "dns; mx.example.com"
    # The postmaster sees the failed bounce's header, not the original's content.
    returned = parts(parsed)[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    assert "Subject: Undelivered Mail Returned to Sender" in str(returned.get_payload())
    assert BODY.split(b"\r\n\r\n")[1] not in double[1].as_bytes()
    assert "no further notice: postmaster@mx.example.com" in caplog.text


def test_failed_double_bounce_is_not_reported_even_after_the_postmaster_changes(
    stores: StoreFactory, clock: Clock
) -> None:
    """The NOTIFY=NEVER mark on a double bounce is stored: a restarted runner with
    another postmaster address still sends no third report."""
    agent = ScriptedAgent(
        {SENDER: DeliveryResult(UNKNOWN), "bad@example.net": DeliveryResult(UNKNOWN)}
    )
    agent.results[POSTMASTER] = DeliveryResult(BUSY)

    async def before() -> None:
        store = stores(clock)
        await store.open()
        await put(store, one(address="bad@example.net"))
        await runner(store, agent, clock, postmaster=POSTMASTER).run_once()
        assert agent.addresses()[-1] == [POSTMASTER]  # deferred, still queued
        await store.close()

    run(before())
    agent.results[POSTMASTER] = DeliveryResult(UNKNOWN)

    async def after() -> None:
        store = stores(clock)
        await store.open()
        queue = runner(store, agent, clock, postmaster="hostmaster@mx.example.com")
        clock.advance(HOUR)
        await queue.run_once()
        assert agent.addresses()[-1] == [POSTMASTER]
        assert queue.bounces_sent == 0
        assert [m async for m in store.iterate()] == []
        await store.close()

    run(after())


def test_mail_from_null_to_the_postmaster_that_fails_is_only_logged(
    stores: StoreFactory, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The second guard alone: someone else's bounce to our postmaster (no NOTIFY)."""
    agent = ScriptedAgent({POSTMASTER: DeliveryResult(UNKNOWN)})

    async def main() -> None:
        store = stores(clock)
        await store.open()
        await put(store, Envelope("", (Recipient(POSTMASTER),)))
        queue = runner(store, agent, clock, postmaster=POSTMASTER)
        with caplog.at_level(logging.WARNING, "mailwright.queue.runner"):
            await queue.run_once()
        assert agent.addresses() == [[POSTMASTER]]
        assert queue.bounces_sent == 0
        await store.close()

    run(main())
    assert "from <> dropped, no further notice" in caplog.text


def test_no_delay_or_success_report_for_a_null_sender(stores: StoreFactory, clock: Clock) -> None:
    agent = ScriptedAgent({"late@example.net": DeliveryResult(BUSY)})

    async def main() -> None:
        store = stores(clock)
        await store.open()
        notify = ("SUCCESS", "DELAY")
        env = Envelope(
            "", (Recipient("ok@example.net", notify), Recipient("late@example.net", notify))
        )
        await put(store, env)
        clock.advance(5 * HOUR)
        queue = runner(store, agent, clock)
        await queue.run_once()
        assert len(agent.calls) == 1  # the message itself, no report
        assert queue.notices_sent == queue.bounces_sent == 0
        await store.close()

    run(main())


@pytest.mark.parametrize(
    ("hostname", "domains", "expected"),
    [
        ("mx.example.com", ["example.com", "mx.example.com"], "postmaster@mx.example.com"),
        ("MX.Example.com.", ["mx.example.com"], "postmaster@mx.example.com"),
        ("mx.example.com", ["example.com", "example.org"], "postmaster@example.com"),
        ("mx.example.com", [], "postmaster@mx.example.com"),
    ],
)
def test_postmaster_address(hostname: str, domains: list[str], expected: str) -> None:
    assert postmaster_address(hostname, domains) == expected


def test_default_config_warns_after_four_hours() -> None:
    assert DeliveryConfig().delay_warning_time == 4 * HOUR
    assert CONFIG.delay_warning_time == 4 * HOUR
