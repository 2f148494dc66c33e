"""SASL client mechanisms for SMTP AUTH (RFC 4954): PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256.

The client half of ``_sasl`` (which documents the exchange, including how SCRAM's
server-final travels as one more 334 challenge).  Used by the relay and by
``mailwright send``; sans-IO like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailwright.smtp._sasl import (
    CLIENT_PREFERENCE,
    CRAM_MD5,
    LOGIN,
    PLAIN,
    SCRAM_SHA_256,
    SaslClient,
    SaslError,
    cram_md5_digest,
)


class PlainClient:
    mechanism = PLAIN
    complete = True  # PLAIN proves nothing about the server

    def __init__(self, username: str, password: str, authzid: str = "") -> None:
        self._message = b"\0".join(s.encode("utf-8") for s in (authzid, username, password))
        self._sent = False

    def initial(self) -> bytes | None:
        self._sent = True
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        if self._sent:
            raise SaslError("PLAIN: unexpected challenge after the message")
        self._sent = True
        return self._message


class LoginClient:
    """Answers the first challenge with the username and the second with the password,
    whatever their text (servers word them differently)."""

    mechanism = LOGIN
    complete = True

    def __init__(self, username: str, password: str) -> None:
        self._answers = [password.encode("utf-8"), username.encode("utf-8")]

    def initial(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        if not self._answers:
            raise SaslError("LOGIN: unexpected third challenge")
        return self._answers.pop()


class CramMd5Client:
    mechanism = CRAM_MD5
    complete = True

    def __init__(self, username: str, password: str) -> None:
        self._username, self._password = username, password
        self._done = False

    def initial(self) -> bytes | None:
        return None

    def respond(self, challenge: bytes) -> bytes:
        if self._done:
            raise SaslError("CRAM-MD5: unexpected second challenge")
        self._done = True
        return f"{self._username} {cram_md5_digest(self._password, challenge)}".encode()


class ScramSha256Client:
    """SCRAM-SHA-256 client; ``complete`` once the server signature has verified."""

    mechanism = SCRAM_SHA_256

    def __init__(self, username: str, password: str, *, nonce: str | None = None) -> None:
        from scramp import ScramClient

        self._client = ScramClient([SCRAM_SHA_256], username, password, c_nonce=nonce)
        self._stage = "first"
        self.complete = False

    def initial(self) -> bytes | None:
        if self._stage != "first":
            raise SaslError("SCRAM: initial response already sent")
        self._stage = "server-first"
        first: str = self._client.get_client_first()  # scramp is untyped
        return first.encode("utf-8")

    def respond(self, challenge: bytes) -> bytes:
        from scramp import ScramException

        if self._stage == "first" and not challenge:  # server asked for client-first
            initial = self.initial()
            assert initial is not None
            return initial
        try:
            text = challenge.decode("utf-8")
            if self._stage == "server-first":
                self._client.set_server_first(text)
                self._stage = "server-final"
                final: str = self._client.get_client_final()
                return final.encode("utf-8")
            if self._stage == "server-final":
                self._client.set_server_final(text)
                self._stage = "done"
                self.complete = True
                return b""  # RFC 4954 §4: the empty response that earns the 235
        except (ScramException, UnicodeDecodeError) as exc:
            self._stage = "done"
            raise SaslError(f"SCRAM: {exc}") from None
        raise SaslError("SCRAM: unexpected challenge")


def client_mechanism(name: str, username: str, password: str, *, authzid: str = "") -> SaslClient:
    """A client state machine for ``name``; ``ValueError`` if unsupported."""
    match name.upper():
        case "PLAIN":
            return PlainClient(username, password, authzid)
        case "LOGIN":
            return LoginClient(username, password)
        case "CRAM-MD5":
            return CramMd5Client(username, password)
        case "SCRAM-SHA-256":
            return ScramSha256Client(username, password)
    raise ValueError(f"unsupported SASL mechanism {name!r}")


def choose_mechanism(offered: Iterable[str]) -> str | None:
    """The client's pick among the server's ``AUTH`` keywords (CLIENT_PREFERENCE)."""
    available = {m.upper() for m in offered}
    return next((m for m in CLIENT_PREFERENCE if m in available), None)
