"""The ``auth`` helper: ``auth MECH USER`` -> the whole SASL exchange (RFC 4954).

The user names a mechanism and a user; the password is asked for without echo by the
terminal; this module turns the server's 334 challenges into responses with the
core's SASL clients (``smtp.client_mechanism``), which do the base64 and the
mechanism's arithmetic (CRAM-MD5's HMAC, SCRAM-SHA-256's proofs).  Sans-IO: the
terminal writes what ``start`` and ``answer`` return and feeds back the replies.
"""

from __future__ import annotations

import base64
import binascii

from mailwright.smtp import Auth, AuthResponse, Reply, SaslError, client_mechanism

# What the helper offers: the core's client mechanisms, in the order `?` lists them.
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256")
USAGE = "usage: auth plain|login|cram-md5|scram-sha-256 USER (the password is asked for)"


class AuthExchange:
    """One AUTH exchange; ``failure`` says why the client gave up, if it did."""

    def __init__(self, mechanism: str, username: str, password: str) -> None:
        self.mechanism = mechanism.upper()
        self._client = client_mechanism(self.mechanism, username, password)
        self.failure = ""

    def start(self) -> Auth:
        """The AUTH command, with the initial response where the mechanism has one
        (RFC 4954 §4: saves a round trip; PLAIN and SCRAM do)."""
        return Auth(self.mechanism, self._client.initial())

    def answer(self, challenge: Reply) -> AuthResponse:
        """The response to a 334: the mechanism's answer, or ``*`` (cancel, RFC 4954
        §4) when the challenge is not base64 or the mechanism refuses it."""
        try:
            data = base64.b64decode(challenge.lines[0].strip(), validate=True)
            return AuthResponse(self._client.respond(data))
        except (SaslError, binascii.Error, ValueError) as exc:
            self.failure = f"AUTH {self.mechanism}: {exc}; cancelled with *"
            return AuthResponse(None)

    @property
    def server_verified(self) -> bool:
        """False only for SCRAM when the server never proved it knew our secret."""
        return bool(getattr(self._client, "complete", True))
