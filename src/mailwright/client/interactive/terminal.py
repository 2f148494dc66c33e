"""The interactive loop: a prompt_toolkit prompt over ``LineProtocol`` and a ``Wire``.

Replies are shown the moment they arrive (above the prompt, which stays editable), so
a 421 the server sends while the user is typing is seen at once.  After a command
the prompt waits until its reply is in, as telnet users wait by eye; the wait is
bounded by ``REPLY_TIMEOUT``.  Exit statuses (``cli.session`` documents them):
``EXIT_OK`` when the session ended by QUIT or Ctrl-D, ``EXIT_LOST`` when the server
closed it or it failed (timeout, TLS, a malformed reply), ``EXIT_CONNECT`` when no
session started.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout

from mailwright.client.explain import short
from mailwright.client.interactive.auth import AuthExchange
from mailwright.client.interactive.completion import SessionCompleter
from mailwright.client.interactive.display import Display, Explain
from mailwright.client.interactive.protocol import (
    AuthRequest,
    Closed,
    LineProtocol,
    Mode,
    Note,
    Received,
    SaveRequest,
    StartTlsRequest,
    Write,
)
from mailwright.client.interactive.wire import ConnectError, Wire, connect
from mailwright.net.tls import client_context
from mailwright.smtp import Ehlo, StartTls, State

EXIT_OK = 0
EXIT_LOST = 1
EXIT_CONNECT = 3

# RFC 5321 §4.5.3.2.2-.4 and .6: five minutes for a command's reply, ten for the
# reply to the end of the data; one bound serves an interactive user.
REPLY_TIMEOUT = 600.0
# Postfix smtp_connect_timeout (30s) and smtp_starttls_timeout (300s).
CONNECT_TIMEOUT = 30.0
TLS_TIMEOUT = 300.0

# Mechanisms that put the password itself on the wire (RFC 4616, LOGIN's base64).
CLEARTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})

_PROMPTS = {Mode.COMMAND: "smtp> ", Mode.DATA: "data> ", Mode.RAW: "raw> "}


@dataclass(frozen=True, slots=True)
class SessionOptions:
    host: str  # what the user named (TLS server name when it is not an address)
    address: str  # what to connect to
    port: int
    helo: str | None = None
    tls_on_connect: bool = False
    history: Path | None = None
    transcript: Path | None = None


def server_name(host: str) -> str | None:
    """The SNI name for ``host``: None for an IP address (RFC 6066 §3)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


class Terminal:
    def __init__(self, options: SessionOptions, explain: Explain | None) -> None:
        self.options = options
        self.protocol = LineProtocol(tls=options.tls_on_connect)
        self.display = Display(explain)
        self._changed = asyncio.Event()
        self._ended: Closed | None = None
        self._wire: Wire | None = None
        self._prompt: PromptSession[str] | None = None  # the one reading a line now
        self._tls = client_context(verify=False)  # a test client shows what it got

    # -- input from the wire ----------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        for item in self.protocol.receive(data):
            if isinstance(item, Received):
                self.display.lines(item.lines, item.reply)
            else:
                self._ended = item
                self._interrupt_prompt()
        self._changed.set()

    def _interrupt_prompt(self) -> None:
        """The server went away while the user may be typing: end the prompt, so
        the session ends now, not at the next Enter."""
        app = self._prompt.app if self._prompt is not None else None
        if app is not None and app.is_running and app.future is not None and not app.future.done():
            app.exit(exception=_ServerClosed())

    async def _wait_replies(self) -> bool:
        """Until every owed reply is in; False (and a note) if the time ran out."""
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                while self.protocol.waiting and self._ended is None:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            self.display.note(f"no reply within {REPLY_TIMEOUT:g}s; closing")
            self._ended = Closed("reply timeout")
            return False
        return True

    # -- the session ------------------------------------------------------------------

    async def run(self) -> int:
        opts = self.options
        try:
            self._wire = await connect(
                opts.address,
                opts.port,
                self._on_data,
                timeout=CONNECT_TIMEOUT,
                tls=self._tls if opts.tls_on_connect else None,
                server_hostname=server_name(opts.host),
            )
        except ConnectError as exc:
            raise SessionStartError(
                f"cannot connect to {opts.address}:{opts.port}: {exc}"
            ) from None
        self._note(f"connected to {opts.address}:{opts.port}")
        if opts.tls_on_connect:
            self._note(f"TLS on connect: {self._wire.tls_description()}")
        try:
            with patch_stdout(raw=True):
                status = await self._dialog()
        finally:
            self._wire.close()
            if opts.transcript is not None:
                self._save(opts.transcript)
        return status

    async def _dialog(self) -> int:
        assert self._wire is not None
        await self._wait_replies()
        if self.options.helo and self._ended is None:
            self._write(self.protocol.send(Ehlo(self.options.helo)))
            await self._wait_replies()
        history: History = (
            FileHistory(str(self.options.history))
            if self.options.history is not None
            else InMemoryHistory()
        )
        commands: PromptSession[str] = PromptSession(
            history=history,
            completer=SessionCompleter(lambda: self.protocol.extensions),
            complete_while_typing=False,
        )
        body: PromptSession[str] = PromptSession(history=InMemoryHistory())
        while self._ended is None:
            mode = self.protocol.mode
            self._prompt = body if mode is Mode.DATA else commands
            try:
                line = await self._prompt.prompt_async(_PROMPTS[mode])
            except KeyboardInterrupt:
                continue  # Ctrl-C drops the line being typed, as in a shell
            except EOFError:
                return await self._end_by_user()
            except _ServerClosed:
                break
            finally:
                self._prompt = None
            if self._ended is not None:
                break  # the server went away while the line was typed
            await self._handle(line)
        ended = self._ended
        assert ended is not None
        self._note(ended.reason)
        return EXIT_OK if self.protocol.quit_sent and not ended.protocol_error else EXIT_LOST

    async def _handle(self, line: str) -> None:
        action = self.protocol.typed(line)
        match action:
            case Write():
                self._write(action)
                await self._wait_replies()
            case Note(text):
                if text:
                    self.display.note(text)
            case SaveRequest(path):
                self._save(Path(path).expanduser())
            case StartTlsRequest():
                await self._starttls()
            case AuthRequest(mechanism, username):
                await self._auth(mechanism, username)

    def _write(self, action: Write) -> None:
        assert self._wire is not None
        if self.protocol.mode is not Mode.DATA or action.ended_data:
            # Commands are shown as the core wrote them; body lines only when the
            # wire differs from what was typed (a stuffed dot) or at the end.
            self.display.lines(action.lines)
        elif any(line.text.startswith("..") for line in action.lines):
            self.display.lines(action.lines)
        self._wire.write(action.data)

    def _note(self, text: str) -> None:
        self.display.lines(self.protocol.transcript.local(text))

    def _save(self, path: Path) -> None:
        try:
            self.protocol.transcript.save(path)
        except OSError as exc:
            self.display.note(f"cannot save the transcript to {path}: {exc.strerror or exc}")
        else:
            self.display.note(f"transcript saved to {path}")

    async def _end_by_user(self) -> int:
        """Ctrl-D: QUIT (if a command may be written now) and wait for the 221."""
        if self._ended is None and self.protocol.mode is Mode.COMMAND:
            action = self.protocol.typed("QUIT")
            if isinstance(action, Write):
                self._write(action)
                await self._wait_replies()
        return EXIT_OK

    # -- helpers ----------------------------------------------------------------------

    async def _starttls(self) -> None:
        assert self._wire is not None
        self._write(self.protocol.send(StartTls()))
        await self._wait_replies()
        if self._ended is not None or self.protocol.conn.state is not State.TLS:
            return  # refused: the reply is on screen
        try:
            description = await self._wire.start_tls(
                self._tls, server_name(self.options.host), TLS_TIMEOUT
            )
        except ConnectError as exc:
            self._ended = Closed(str(exc), protocol_error=True)
            return
        self.display.lines([self.protocol.tls_started(description)])
        self.display.note(
            "send EHLO again: what the server said before TLS is void (RFC 3207 §4.2)"
        )

    async def _auth(self, mechanism: str, username: str) -> None:
        if self.protocol.mode is not Mode.COMMAND or self.protocol.conn.pending:
            self.display.note("not now: finish the command or message in progress first")
            return
        if not self.protocol.tls and mechanism in CLEARTEXT_MECHANISMS:
            self.display.note(
                f"warning: no TLS: {mechanism}'s base64 is not encryption; anyone on the "
                "path reads the password (RFC 4954 §4; starttls first)"
            )
        try:
            password = await PromptSession[str]().prompt_async(
                f"password for {username}: ", is_password=True
            )
        except (EOFError, KeyboardInterrupt):
            self.display.note("auth cancelled; nothing sent")
            return
        exchange = AuthExchange(mechanism, username, password)
        self._write(self.protocol.send(exchange.start()))
        while await self._wait_replies() and self._ended is None:
            reply = self.protocol.last_reply
            if reply is None or reply.code != 334:
                break
            self._write(self.protocol.send(exchange.answer(reply)))
            if exchange.failure:
                self.display.note(exchange.failure)
        reply = self.protocol.last_reply
        if reply is not None and reply.is_positive and not exchange.server_verified:
            self.display.note(
                f"warning: the server accepted AUTH {mechanism} without proving it knows "
                "the password (no SCRAM server signature, RFC 5802 §5)"
            )


class _ServerClosed(Exception):
    """Ends the prompt when the connection ended while a line was being typed."""


class SessionStartError(Exception):
    """No session: the one line to print (exit status EXIT_CONNECT)."""


async def run_session(options: SessionOptions, explain: Explain | None = short) -> int:
    """Run the session; the exit status.  ``explain`` words each reply (by default
    ``client.explain.short``, the words ``send`` and ``probe`` use too)."""
    return await Terminal(options, explain).run()
