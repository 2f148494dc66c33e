"""``mailwright send``: one test message over the outbound client session.

``send_one`` resolves the targets (``target``), tries each address until one answers
(a failure to connect or a greeting that never comes moves on; any later refusal is
the answer), opens an ``OutboundSession`` with the wire tap of a ``Recorder``, sends,
QUITs, and returns a ``SendReport``: the exit status (``outcome``), the transcript,
every reply with its stage, the TLS report (``tlsinfo``) and the recipients' replies.
Bulk sending is ``bulk``.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from mailwright.client.explain import short
from mailwright.client.outcome import (
    EXIT_CONNECT,
    EXIT_OK,
    EXIT_USAGE,
    MEANINGS,
    session_status,
    transaction_status,
)
from mailwright.client.target import Target, TargetError, resolve_targets
from mailwright.client.tlsinfo import TlsInfo, inspect
from mailwright.client.transcript import Recorder
from mailwright.dns.resolver import DnsResolver
from mailwright.net.outbound import (
    ClientSettings,
    ClientTimeouts,
    Credentials,
    OutboundSession,
    OutgoingMessage,
    OutgoingRecipient,
    Peer,
    PeerCheck,
    SessionError,
    Stage,
    TlsMode,
    TlsPolicy,
    TransactionResult,
    TranscriptEntry,
)
from mailwright.smtp import Reply
from mailwright.spool.model import BodyType

SMTP_PORT = 25  # RFC 5321 §4.5.4.2
LMTP_PORT = 24  # RFC 2033 §5 (lmtp, assigned port 24)
SUBMISSIONS_PORT = 465  # RFC 8314 §7.3
DEFAULT_TIMEOUT = 30.0  # seconds per step; swaks' --timeout default is 30 s

# --quit-after names -> the session's stop points (swaks' names where they exist).
QUIT_AFTER = {
    "connect": Stage.CONNECT,
    "banner": Stage.GREETING,
    "ehlo": Stage.EHLO,
    "tls": Stage.TLS,
    "auth": Stage.AUTH,
    "mail": Stage.MAIL,
    "rcpt": Stage.RCPT,
    "data": Stage.DATA,
}


class TlsChoice:
    NONE = "none"  # swaks' default: no STARTTLS
    OPTIONAL = "optional"  # --tls-optional: STARTTLS when offered
    REQUIRED = "required"  # --tls: STARTTLS or fail
    ON_CONNECT = "connect"  # --tls-on-connect: implicit TLS


@dataclass(frozen=True, slots=True)
class SendOptions:
    mail_from: str
    recipients: tuple[str, ...]  # To, Cc and Bcc: the envelope
    message: bytes
    server: str | None = None
    port: int | None = None
    lmtp: bool = False
    helo: str = field(default_factory=lambda: socket.getfqdn() or "localhost")
    family: int | None = None  # 4, 6 or None
    nameservers: tuple[tuple[str, int], ...] | None = None  # --dns; None = resolv.conf
    tls: str = TlsChoice.NONE
    tls_verify: bool = False
    tls_ca: Path | None = None
    tls_sni: str | None = None
    auth: str | None = None  # mechanism name
    user: str = ""
    password: str = field(default="", repr=False)
    pipeline: bool = False
    bdat: int | None = None  # None: DATA; 0: BDAT, default chunk; n: chunks of n octets
    eight_bit: bool = False
    smtputf8: bool = False
    dsn_notify: tuple[str, ...] = ()
    dsn_ret: str | None = None
    envid: str | None = None
    quit_after: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def default_port(self) -> int:
        if self.port is not None:
            return self.port
        if self.tls == TlsChoice.ON_CONNECT:
            return SUBMISSIONS_PORT
        return LMTP_PORT if self.lmtp else SMTP_PORT


@dataclass(slots=True)
class SendReport:
    status: int
    reason: str
    recorder: Recorder
    target: Target | None = None
    replies: list[TranscriptEntry] = field(default_factory=list)
    tls: TlsInfo | None = None
    result: TransactionResult | None = None

    @property
    def meaning(self) -> str:
        return MEANINGS.get(self.status, "")

    @property
    def refusal(self) -> Reply | None:
        """The last 4xx/5xx reply the server gave, if any (what the summary explains)."""
        for entry in reversed(self.replies):
            if entry.reply.code >= 400:
                return entry.reply
        return None

    def explanation(self) -> str:
        """What the refusal means and what usually fixes it (``client.explain``), the
        same words ``probe`` and ``session`` show; "" when nothing was refused."""
        refusal = self.refusal
        return short(refusal) if refusal is not None else ""

    def summary(self) -> str:
        t = self.target
        where = f" via {t.host}[{t.address}]:{t.port}" if t else ""
        if self.status == EXIT_OK:
            what = self.reason or "message accepted"
            return f"ok{where}: {what}"
        return f"failed (exit {self.status}, {self.meaning}){where}: {self.reason}"

    def as_json(self) -> dict[str, object]:
        target = self.target
        return {
            "status": self.status,
            "meaning": self.meaning,
            "reason": self.reason,
            "server": None
            if target is None
            else {"host": target.host, "address": target.address, "port": target.port},
            "tls": None if self.tls is None else self.tls.as_json(),
            "replies": [
                {"stage": e.stage.value, "command": e.command, **_reply_json(e.reply)}
                for e in self.replies
            ],
            "recipients": []
            if self.result is None
            else [
                {
                    "address": r.recipient.address,
                    "delivered": r.delivered,
                    **_reply_json(r.reply),
                }
                for r in self.result.recipients
            ],
            "transcript": [line.as_json() for line in self.recorder.lines],
        }


def _reply_json(reply: Reply) -> dict[str, object]:
    explained = {"explanation": short(reply)} if reply.code >= 400 else {}
    return {
        "code": reply.code,
        "enhanced": reply.enhanced or None,
        "text": list(reply.lines),
        **explained,
    }


def timeouts(seconds: float) -> ClientTimeouts:
    return ClientTimeouts(*(seconds,) * 11)


def tls_policy(opts: SendOptions, on_tls: PeerCheck | None = None) -> TlsPolicy:
    if opts.tls == TlsChoice.NONE:
        return TlsPolicy(TlsMode.NONE, "send", "no --tls")
    if opts.tls == TlsChoice.OPTIONAL:
        mode = TlsMode.VERIFY if opts.tls_verify else TlsMode.OPPORTUNISTIC
    else:
        mode = TlsMode.VERIFY if opts.tls_verify else TlsMode.ENCRYPT
    return TlsPolicy(mode, "send", f"--tls ({opts.tls})", peer_check=on_tls)


def settings_for(opts: SendOptions, recorder: Recorder | None) -> ClientSettings:
    credentials = None
    if opts.auth is not None:
        credentials = Credentials(opts.user, opts.password, mechanisms=(opts.auth.upper(),))
    stop = QUIT_AFTER.get(opts.quit_after) if opts.quit_after else None
    return ClientSettings(
        helo_name=opts.helo,
        lmtp=opts.lmtp,
        timeouts=timeouts(opts.timeout),
        auth=credentials,
        ca_file=opts.tls_ca,
        # A test client sends credentials where its user says; swaks does too.
        allow_plaintext_auth=True,
        use_pipelining=opts.pipeline,
        use_chunking=opts.bdat is not None,
        trace=recorder.trace if recorder is not None else None,
        implicit_tls=opts.tls == TlsChoice.ON_CONNECT,
        stop_after=stop,
        bdat_chunk_size=opts.bdat or 0,
    )


def outgoing(opts: SendOptions) -> OutgoingMessage:
    body_type = BodyType.EIGHT_BIT_MIME if opts.eight_bit else BodyType.SEVEN_BIT
    return OutgoingMessage(
        opts.mail_from,
        tuple(OutgoingRecipient(r, notify=opts.dsn_notify) for r in opts.recipients),
        opts.message,
        body_type=body_type,
        smtputf8=opts.smtputf8,
        ret=opts.dsn_ret,
        envid=opts.envid,
    )


async def targets_for(opts: SendOptions) -> list[Target]:
    resolver = DnsResolver(list(opts.nameservers) if opts.nameservers is not None else None)
    first = opts.recipients[0] if opts.recipients else None
    return await resolve_targets(
        resolver, server=opts.server, recipient=first, port=opts.default_port, family=opts.family
    )


def peer_for(opts: SendOptions, target: Target) -> Peer:
    # --tls-sni names the server for SNI and the certificate check.
    return Peer(opts.tls_sni or target.host, target.address, target.port)


async def send_one(opts: SendOptions, recorder: Recorder) -> SendReport:
    """Send one message as ``opts`` say; never raises for what the network does."""
    try:
        found = await targets_for(opts)
    except TargetError as exc:
        recorder.error(str(exc))
        return SendReport(EXIT_CONNECT if exc.temporary else EXIT_USAGE, str(exc), recorder)
    report = SendReport(EXIT_CONNECT, "no server answered", recorder)

    def on_tls(ssl_object: ssl.SSLObject) -> str | None:
        name = opts.tls_sni or (report.target.host if report.target else "")
        report.tls = inspect(ssl_object, name, opts.tls_ca, verified=opts.tls_verify)
        for line in report.tls.lines():
            recorder.note(line)
        return None

    settings = settings_for(opts, recorder)
    policy = tls_policy(opts, on_tls)
    for target in found:
        report.target = target
        recorder.note(f"Trying {target.host}[{target.address}]:{target.port}...")
        try:
            session = await OutboundSession.open(peer_for(opts, target), settings, policy)
        except SessionError as exc:
            recorder.flush()
            if exc.stage is Stage.TLS and report.tls is None and "handshake" in exc.reason:
                recorder.error(exc.reason)
            report.replies = list(exc.transcript)
            report.status = session_status(exc)
            report.reason = f"{exc.stage.value}: {exc.reason}"
            recorder.error(report.reason)
            if report.status == EXIT_CONNECT and exc.stage in (Stage.CONNECT, Stage.GREETING):
                continue  # this one never answered: the next address may
            return report
        return await _transact(opts, session, report)
    return report


async def _transact(opts: SendOptions, session: OutboundSession, report: SendReport) -> SendReport:
    recorder = report.recorder
    stop = opts.quit_after
    if stop in ("connect", "banner", "ehlo", "tls", "auth"):
        report.replies = list(session.transcript)
        await session.quit()
        report.replies = list(session.transcript)
        recorder.flush()
        report.status, report.reason = EXIT_OK, f"stopped after {stop} (--quit-after)"
        recorder.note("Connection closed")
        return report
    opening = list(session.transcript)
    result = await session.send(outgoing(opts))
    report.result = result
    await session.quit()
    report.replies = opening + list(result.transcript)
    quit_entries = [e for e in session.transcript if e.stage is Stage.QUIT]
    report.replies += [e for e in quit_entries if e not in report.replies]
    recorder.flush()
    recorder.note("Connection closed")
    report.status = transaction_status(result)
    if report.status == EXIT_OK:
        delivered = [r for r in result.recipients if r.delivered]
        if result.reason.startswith("stopped"):
            report.reason = result.reason
        else:
            last = delivered[-1].reply if delivered else None
            report.reason = f"{len(delivered)}/{len(result.recipients)} recipient(s) accepted" + (
                f": {last}" if last else ""
            )
    else:
        refused = next((r for r in result.recipients if not r.delivered), None)
        detail = str(refused.reply) if refused is not None else ""
        report.reason = result.reason or detail
        if detail and detail not in report.reason:
            report.reason += f": {detail}"
    return report
