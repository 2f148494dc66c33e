"""Commands answered straight from ``data_received`` (the session's fast path) behave
exactly like the ones the session task answers: a crash in a handler still ends in
``421 4.3.0`` and a logged error, the per-command timeout restarts with every command
answered there, and the server keeps serving other sessions."""

from __future__ import annotations

import time

import pytest

from helpers.servers import InProcessServer
from helpers.wire import RawSMTP
from mailwright.policy.pipeline import Stage


def test_handler_crash_in_the_fast_path_answers_421_and_closes(
    server: InProcessServer, monkeypatch: pytest.MonkeyPatch
):
    """MAIL with plain-function hooks is answered in the fast path; a bug below the
    handler (here: the pipeline itself raising, not a hook, which would fail closed
    with 451) must still end the session with 421 4.3.0."""
    pipeline = server.app.listeners[0].services.pipeline
    run_now = pipeline.run_now

    def broken_at_mail(stage: Stage, ctx: object, *args: object) -> object:
        if stage is Stage.MAIL:
            raise RuntimeError("handler bug")
        return run_now(stage, ctx, *args)

    monkeypatch.setattr(pipeline, "run_now", broken_at_mail)
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        reply = raw.cmd("MAIL FROM:<sender@remote.test>")
        assert (reply.code, reply.enhanced) == (421, "4.3.0")
        assert raw.closed_by_peer()
    # Other sessions are unaffected.
    monkeypatch.undo()
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        assert raw.cmd("MAIL FROM:<sender@remote.test>").code == 250


def test_command_timeout_restarts_with_each_command_answered_in_the_fast_path(
    make_server,
):
    server: InProcessServer = make_server(smtp={"command_timeout": 1.0})
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        # Six commands 0.4 s apart: 2.4 s in all, each well within its own 1 s.
        for _ in range(6):
            time.sleep(0.4)
            assert raw.cmd("NOOP").code == 250
        # Then silence: the timeout ends the session with 421 4.4.2 (RFC 5321 §4.5.3.2).
        started = time.monotonic()
        reply = raw.reply()
        assert reply.code == 421
        assert time.monotonic() - started < 3.0
