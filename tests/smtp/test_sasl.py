"""SASL mechanisms (mailwright.smtp._sasl): RFC test vectors, round trips, failures.

Cancelling (``*``) is the caller's business: the core turns it into
``AuthResponse(None)`` before a mechanism sees anything, so it is not tested here.
"""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest

from mailwright.smtp._sasl import (
    CLIENT_PREFERENCE,
    LOGIN_PASSWORD_CHALLENGE,
    LOGIN_USERNAME_CHALLENGE,
    SERVER_MECHANISMS,
    Authenticated,
    Challenge,
    CheckPassword,
    CramMd5Server,
    Failed,
    SaslError,
    SaslStep,
    ScramKeys,
    ScramSha256Server,
    TooWeak,
    cram_md5_digest,
    make_scram_keys,
    may_authorize,
    normalize_username,
    server_mechanism,
)
from mailwright.smtp._sasl_client import (
    CramMd5Client,
    ScramSha256Client,
    choose_mechanism,
    client_mechanism,
)

# RFC 7677 §3 example.
RFC7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC7677_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC7677_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC7677_DIALOG = [
    b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
]
# RFC 2195 §2 example.
RFC2195_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
RFC2195_RESPONSE = b"tim b913a602c7eda7a495b4e6e7334d3890"


class Credentials:
    """An in-memory CredentialLookup."""

    def __init__(self) -> None:
        self.cram: dict[str, str] = {}
        self.scram: dict[str, ScramKeys] = {}
        self.asked: list[str] = []

    def cram_secret(self, user: str) -> str | None:
        self.asked.append(user)
        return self.cram.get(user)

    def scram_keys(self, user: str) -> ScramKeys | None:
        self.asked.append(user)
        return self.scram.get(user)


@pytest.fixture(scope="module")
def creds() -> Credentials:
    c = Credentials()
    c.cram["tim"] = "tanstaaftanstaaf"
    c.cram["alice@example.com"] = "s3cret wörd"
    c.scram["user"] = make_scram_keys("pencil", iterations=4096, salt=RFC7677_SALT)
    c.scram["alice@example.com"] = make_scram_keys("s3cret wörd", iterations=4096)
    return c


def run(server, client) -> tuple[SaslStep, list[SaslStep]]:
    """Drive a client against a server until a terminal step; return it and the trail."""
    trail: list[SaslStep] = []
    step = server.start(client.initial())
    trail.append(step)
    for _ in range(10):
        if not isinstance(step, Challenge):
            return step, trail
        step = server.step(client.respond(step.data))
        trail.append(step)
    raise AssertionError("exchange does not end")


# -- PLAIN -----------------------------------------------------------------------------


def test_plain_rfc4616_examples() -> None:
    # RFC 4616 §4: "tim" with password "tanstaaftanstaaf", no authzid ...
    step = server_mechanism("PLAIN", Credentials()).start(b"\0tim\0tanstaaftanstaaf")
    assert step == CheckPassword("tim", "tanstaaftanstaaf", "")
    # ... and "Ursel" authorising as "Kurt" with password "xipj3plmq".
    step = server_mechanism("plain", Credentials()).start(b"Kurt\0Ursel\0xipj3plmq")
    assert step == CheckPassword("ursel", "xipj3plmq", "kurt")
    assert not may_authorize(step.authcid, step.authzid)
    assert may_authorize("tim", "") and may_authorize("tim", "TIM")


def test_plain_without_initial_response_gets_empty_challenge() -> None:
    server = server_mechanism("PLAIN", Credentials())
    assert server.start(None) == Challenge(b"")
    assert server.step(b"\0tim\0pw") == CheckPassword("tim", "pw", "")
    with pytest.raises(RuntimeError):
        server.step(b"\0tim\0pw")


def test_check_password_repr_hides_the_password() -> None:
    step = server_mechanism("PLAIN", Credentials()).start(b"\0tim\0hunter2")
    assert "hunter2" not in repr(step)


@pytest.mark.parametrize(
    "message",
    [
        b"",  # "AUTH PLAIN ="
        b"tim\0pw",  # one NUL
        b"\0tim\0pw\0extra",  # extra NUL
        b"\0\0pw",  # empty authcid
        b"\0tim\0",  # empty password
        b"\0tim\xff\0pw",  # not UTF-8
        b"\0tim\0\xc3(",  # password not UTF-8
        b"\0" + b"u" * 256 + b"\0pw",  # authcid over 255 octets
        b"\0tim\0" + b"p" * 256,  # password over 255 octets
        b"z" * 256 + b"\0tim\0pw",  # authzid over 255 octets
    ],
)
def test_plain_malformed(message: bytes) -> None:
    step = server_mechanism("PLAIN", Credentials()).start(message)
    assert isinstance(step, Failed) and step.malformed


def test_plain_255_octet_fields_are_fine() -> None:
    step = server_mechanism("PLAIN", Credentials()).start(b"\0" + b"u" * 255 + b"\0" + b"p" * 255)
    assert isinstance(step, CheckPassword)


# -- LOGIN -----------------------------------------------------------------------------


def test_login_dialog() -> None:
    server = server_mechanism("LOGIN", Credentials())
    assert server.start(None) == Challenge(LOGIN_USERNAME_CHALLENGE)
    assert server.step(b"Alice@Example.COM") == Challenge(LOGIN_PASSWORD_CHALLENGE)
    assert server.step(b"secret") == CheckPassword("alice@example.com", "secret", "")


def test_login_initial_response_is_the_username() -> None:
    server = server_mechanism("LOGIN", Credentials())
    assert server.start(b"tim") == Challenge(LOGIN_PASSWORD_CHALLENGE)
    assert server.step(b"pw") == CheckPassword("tim", "pw", "")


@pytest.mark.parametrize(
    ("username", "password"),
    [(b"", b"pw"), (b"\xff", b"pw"), (b"tim", b""), (b"tim", b"\xfe"), (b"t\0m", b"pw")],
)
def test_login_malformed(username: bytes, password: bytes) -> None:
    server = server_mechanism("LOGIN", Credentials())
    server.start(None)
    step = server.step(username)
    if isinstance(step, Challenge):
        step = server.step(password)
    assert isinstance(step, Failed) and step.malformed


# -- CRAM-MD5 --------------------------------------------------------------------------


def test_cram_md5_rfc2195_vector(creds: Credentials) -> None:
    assert cram_md5_digest("tanstaaftanstaaf", RFC2195_CHALLENGE) == (
        "b913a602c7eda7a495b4e6e7334d3890"
    )
    server = CramMd5Server(creds, challenge=RFC2195_CHALLENGE)
    assert server.start(None) == Challenge(RFC2195_CHALLENGE)
    assert server.step(RFC2195_RESPONSE) == Authenticated("tim")
    client = CramMd5Client("tim", "tanstaaftanstaaf")
    assert client.initial() is None
    assert client.respond(RFC2195_CHALLENGE) == RFC2195_RESPONSE


def test_cram_md5_challenge_shape_and_uniqueness(creds: Credentials) -> None:
    a = server_mechanism("CRAM-MD5", creds, hostname="mx.example.org").start(None)
    b = server_mechanism("CRAM-MD5", creds, hostname="mx.example.org").start(None)
    assert isinstance(a, Challenge) and isinstance(b, Challenge)
    assert a.data.startswith(b"<") and a.data.endswith(b"@mx.example.org>")
    assert b"." in a.data and a.data != b.data


def test_cram_md5_wrong_password_names_the_login(creds: Credentials) -> None:
    """A failure carries the login from the response, for the log (issue 8, item 9)."""
    server = CramMd5Server(creds, challenge=RFC2195_CHALLENGE)
    server.start(None)
    step = server.step(b"Tim " + cram_md5_digest("wrong", RFC2195_CHALLENGE).encode())
    assert step == Failed("CRAM-MD5: bad credentials", authcid="tim")


@pytest.mark.parametrize("login", [b"nobody", b"user"])  # unknown; SCRAM-only
def test_cram_md5_without_a_cram_secret_is_too_weak_not_failed(
    creds: Credentials, login: bytes
) -> None:
    """No CRAM-MD5 secret, known user or not: TooWeak (534), never a failure."""
    server = CramMd5Server(creds, challenge=RFC2195_CHALLENGE)
    server.start(None)
    step = server.step(login + b" b913a602c7eda7a495b4e6e7334d3890")
    assert step == TooWeak(login.decode())
    assert login.decode() in creds.asked


def test_cram_md5_accepts_upper_case_hex(creds: Credentials) -> None:
    server = CramMd5Server(creds, challenge=RFC2195_CHALLENGE)
    server.start(None)
    assert server.step(RFC2195_RESPONSE.upper().replace(b"TIM", b"tim")) == Authenticated("tim")


@pytest.mark.parametrize(
    "response",
    [
        b"",
        b"tim",
        b"b913a602c7eda7a495b4e6e7334d3890",
        b"tim b913a6",
        b"tim " + b"g" * 32,
        b"\xff x",
    ],
)
def test_cram_md5_malformed(creds: Credentials, response: bytes) -> None:
    server = CramMd5Server(creds, challenge=RFC2195_CHALLENGE)
    server.start(None)
    step = server.step(response)
    assert isinstance(step, Failed) and step.malformed


def test_cram_md5_refuses_initial_response(creds: Credentials) -> None:
    step = server_mechanism("CRAM-MD5", creds).start(b"tim")
    assert isinstance(step, Failed) and step.malformed


# -- SCRAM-SHA-256 ---------------------------------------------------------------------


def test_scram_rfc7677_vector_both_sides(creds: Credentials) -> None:
    server = ScramSha256Server(creds, nonce=RFC7677_SERVER_NONCE)
    client = ScramSha256Client("user", "pencil", nonce=RFC7677_CLIENT_NONCE)
    client_first = client.initial()
    assert client_first == RFC7677_DIALOG[0]
    assert server.start(client_first) == Challenge(RFC7677_DIALOG[1])
    client_final = client.respond(RFC7677_DIALOG[1])
    assert client_final == RFC7677_DIALOG[2]
    # RFC 4954 §4: the server-final is "additional data with success": a 334 challenge.
    assert server.step(client_final) == Challenge(RFC7677_DIALOG[3])
    assert not client.complete
    assert client.respond(RFC7677_DIALOG[3]) == b""
    assert client.complete
    assert server.step(b"") == Authenticated("user")


def test_scram_without_initial_response(creds: Credentials) -> None:
    server = server_mechanism("SCRAM-SHA-256", creds)
    client = client_mechanism("SCRAM-SHA-256", "user", "pencil")
    assert server.start(None) == Challenge(b"")
    step = server.step(client.respond(b""))  # the client sends client-first now
    while isinstance(step, Challenge):
        step = server.step(client.respond(step.data))
    assert step == Authenticated("user") and client.complete


def test_scram_wrong_password(creds: Credentials) -> None:
    step, _ = run(server_mechanism("SCRAM-SHA-256", creds), ScramSha256Client("user", "pen"))
    assert isinstance(step, Failed) and not step.malformed


def test_scram_unknown_user_looks_like_a_wrong_password(creds: Credentials) -> None:
    server = server_mechanism("SCRAM-SHA-256", creds)
    step, trail = run(server, ScramSha256Client("nobody", "pencil"))
    assert isinstance(trail[0], Challenge) and b",i=" in trail[0].data  # a full first round
    assert isinstance(step, Failed) and not step.malformed
    # The fake salt is stable per name, so probing twice does not reveal anything.
    again = server_mechanism("SCRAM-SHA-256", creds).start(b"n,,n=nobody,r=abc")
    assert isinstance(again, Challenge)
    salt = lambda data: data.split(b",s=")[1].split(b",")[0]  # noqa: E731
    assert salt(again.data) == salt(trail[0].data)


def test_scram_client_rejects_a_forged_server_signature(creds: Credentials) -> None:
    server = ScramSha256Server(creds, nonce=RFC7677_SERVER_NONCE)
    client = ScramSha256Client("user", "pencil", nonce=RFC7677_CLIENT_NONCE)
    server.start(client.initial())
    client.respond(RFC7677_DIALOG[1])
    with pytest.raises(SaslError):
        client.respond(b"v=" + base64.b64encode(b"\0" * 32))
    assert not client.complete


def test_scram_non_empty_answer_to_server_final(creds: Credentials) -> None:
    server = ScramSha256Server(creds, nonce=RFC7677_SERVER_NONCE)
    server.start(RFC7677_DIALOG[0])
    server.step(RFC7677_DIALOG[2])
    step = server.step(b"junk")
    assert isinstance(step, Failed) and step.malformed


@pytest.mark.parametrize(
    ("client_first", "malformed"),
    [
        (b"", True),
        (b"\xff\xfe", True),
        (b"n,,n=user", True),  # no nonce
        (b"x,,n=user,r=abc", True),  # bad GS2 flag
        (b"n,,m=ext,n=user,r=abc", True),  # mandatory extension
        (b"p=tls-unique,,n=user,r=abc", False),  # channel binding not offered
        (b"n,a=admin,n=user,r=abc", False),  # authzid not supported
    ],
)
def test_scram_bad_client_first(creds: Credentials, client_first: bytes, malformed: bool) -> None:
    step = server_mechanism("SCRAM-SHA-256", creds).start(client_first)
    assert isinstance(step, Failed) and step.malformed is malformed


def test_scram_bad_client_final(creds: Credentials) -> None:
    server = ScramSha256Server(creds, nonce=RFC7677_SERVER_NONCE)
    server.start(RFC7677_DIALOG[0])
    step = server.step(b"c=biws,r=wrong-nonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert isinstance(step, Failed) and step.malformed


# -- every mechanism, client <-> server ------------------------------------------------


@pytest.mark.parametrize("mechanism", SERVER_MECHANISMS)
def test_round_trip(creds: Credentials, mechanism: str) -> None:
    server = server_mechanism(mechanism, creds)
    client = client_mechanism(mechanism, "Alice@Example.com", "s3cret wörd")
    step, _ = run(server, client)
    if isinstance(step, CheckPassword):  # PLAIN and LOGIN: the caller verifies
        assert step == CheckPassword("alice@example.com", "s3cret wörd", "")
    else:
        assert step == Authenticated("alice@example.com")
    assert client.complete


@pytest.mark.parametrize("mechanism", ["CRAM-MD5", "SCRAM-SHA-256"])
def test_round_trip_wrong_password(creds: Credentials, mechanism: str) -> None:
    client = client_mechanism(mechanism, "alice@example.com", "guess")
    step, _ = run(server_mechanism(mechanism, creds), client)
    assert isinstance(step, Failed) and not step.malformed


def test_plain_client_with_authzid_and_late_message() -> None:
    client = client_mechanism("PLAIN", "tim", "pw", authzid="kurt")
    assert client.respond(b"") == b"kurt\0tim\0pw"  # server sent an empty 334 first
    with pytest.raises(SaslError):
        client.respond(b"")


def test_login_client_answers_in_order() -> None:
    client = client_mechanism("LOGIN", "tim", "pw")
    assert client.initial() is None
    assert client.respond(b"VXNlcm5hbWU6") == b"tim"  # whatever the wording
    assert client.respond(b"Password:") == b"pw"
    with pytest.raises(SaslError):
        client.respond(b"more?")


def test_unknown_mechanisms() -> None:
    assert server_mechanism("GSSAPI", Credentials()) is None
    assert server_mechanism("SCRAM-SHA-256-PLUS", Credentials()) is None
    with pytest.raises(ValueError):
        client_mechanism("XOAUTH2", "u", "p")


def test_choose_mechanism() -> None:
    assert choose_mechanism(["LOGIN", "plain", "CRAM-MD5"]) == "PLAIN"
    assert choose_mechanism(["PLAIN", "SCRAM-SHA-256"]) == "SCRAM-SHA-256"
    assert choose_mechanism(["CRAM-MD5"]) == "CRAM-MD5"
    assert choose_mechanism(["GSSAPI"]) is None
    assert set(CLIENT_PREFERENCE) == set(SERVER_MECHANISMS)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("alice@example.com.", "alice@example.com"),
        ("bob@Bücher.de", "bob@xn--bcher-kva.de"),
        ("Tim", "tim"),
        ("e\u0301@x.org", "\u00e9@x.org"),  # NFC
    ],
)
def test_normalize_username(raw: str, canonical: str) -> None:
    assert normalize_username(raw) == canonical


def test_module_imports_no_io() -> None:
    code = (
        "import sys, mailwright.smtp._sasl\n"
        "bad = {'asyncio','socket','ssl','sqlite3','threading','subprocess'} & set(sys.modules)\n"
        "print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
