"""No secret reaches a log: AUTH with every mechanism, successful and failed, against
``mailwright serve`` with the debug log on (captured from its standard error) and the
mail log in a file; then every log and every file in the data folder except the user
file is searched for the passwords, their base64 forms and the PLAIN blobs.

The exchanges include the ways clients leak secrets by mistake: a password sent raw
where base64 was expected (501), AUTH with an initial response in plaintext (538), and
a SASL response sent after the exchange ended (an unknown command).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from scramp import ScramClient

from helpers.secure import (
    ALICE,
    BOB,
    PASSWORD,
    WRONG_PASSWORD,
    b64,
    connect,
    plain_blob,
    secure_extra,
    write_users,
)
from helpers.servers import SubprocessServer

TWO_FIELD_PLAIN = f"{ALICE}\0{PASSWORD}".encode()  # malformed: no authzid field


def exercise(server: SubprocessServer) -> None:
    with connect(server, "submission") as c:  # PLAIN with an initial response
        assert c.cmd(f"AUTH PLAIN {b64(plain_blob(ALICE, PASSWORD))}").code == 235
    with connect(server, "submission") as c:  # PLAIN after an empty challenge
        assert c.cmd("AUTH PLAIN").code == 334
        assert c.cmd(b64(plain_blob(BOB, PASSWORD, authzid=BOB))).code == 235
    with connect(server, "submissions") as c:  # LOGIN, implicit TLS
        assert c.sasl("LOGIN", ALICE, PASSWORD).code == 235
    with connect(server, "submission") as c:
        assert c.sasl("CRAM-MD5", BOB, PASSWORD).code == 235
    with connect(server, "inbound") as c:  # SCRAM with scramp's client
        client = ScramClient(["SCRAM-SHA-256"], ALICE, PASSWORD)
        reply = c.cmd(f"AUTH SCRAM-SHA-256 {b64(client.get_client_first())}")
        client.set_server_first(base64.b64decode(reply.lines[0]).decode())
        reply = c.cmd(b64(client.get_client_final()))
        client.set_server_final(base64.b64decode(reply.lines[0]).decode())
        assert c.cmd("").code == 235
    # Failures.
    with connect(server, "submission") as c:
        assert c.cmd(f"AUTH PLAIN {b64(plain_blob(ALICE, WRONG_PASSWORD))}").code == 535
        assert c.sasl("LOGIN", ALICE, WRONG_PASSWORD).code == 535
        assert c.sasl("CRAM-MD5", BOB, WRONG_PASSWORD).code == 535
        assert c.sasl("SCRAM-SHA-256", ALICE, WRONG_PASSWORD).code == 535
        assert c.sasl("PLAIN", "nobody@example.test", WRONG_PASSWORD).code == 535
        # Malformed: two fields only (501), password sent raw instead of base64 (501).
        assert c.cmd(f"AUTH PLAIN {b64(TWO_FIELD_PLAIN)}").code == 501
        assert c.cmd("AUTH LOGIN").code == 334
        assert c.cmd(b64(ALICE)).code == 334
        assert c.cmd(f"{PASSWORD}!").code == 501
        # A response after the exchange ended is just an unknown command.
        assert c.cmd(b64(PASSWORD)).code == 500
        assert c.cmd(PASSWORD).code == 500
    with connect(server, "submission", tls=False) as c:  # plaintext: refused, 538
        assert c.cmd(f"AUTH PLAIN {b64(plain_blob(ALICE, PASSWORD))}").code == 538
        assert c.cmd(f"AUTH LOGIN {b64(ALICE)}").code == 538
        assert c.cmd(b64(PASSWORD)).code == 500


def secrets() -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for name, password in (("password", PASSWORD), ("wrong password", WRONG_PASSWORD)):
        found[name] = password.encode()
        found[f"base64({name})"] = b64(password).encode()
        found[f"base64({name}) unpadded"] = b64(password).rstrip("=").encode()
        found[f"hex({name})"] = password.encode().hex().encode()
        for user in (ALICE, BOB, "nobody@example.test"):
            for authzid in ("", user):
                blob = plain_blob(user, password, authzid)
                found[f"PLAIN blob {authzid!r} {user} {name}"] = blob
                found[f"base64(PLAIN blob {authzid!r} {user} {name})"] = b64(blob).encode()
    found["2-field PLAIN"] = TWO_FIELD_PLAIN
    found["base64(2-field PLAIN)"] = b64(TWO_FIELD_PLAIN).encode()
    return found


def test_no_secret_in_any_log(tmp_path: Path):
    workdir = tmp_path / "srv"
    workdir.mkdir()
    server = SubprocessServer(
        workdir, extra=secure_extra(log={"mail_log": "mail.log", "debug": True})
    )
    server.data_dir.mkdir()
    write_users(server.data_dir)
    server.start()
    try:
        exercise(server)
    finally:
        assert server.terminate() == 0
    mail_log = server.mail_log()
    debug_log = server.stderr()
    # The logs are real: they recorded the exchanges (so an empty file cannot pass).
    assert "AUTH failed for alice@example.test" in mail_log
    assert "AUTH before TLS" in mail_log
    assert re.search(r" auth client=\S+ user=bob@example.test mechanism=\S+", mail_log)
    files = {"stdout": server.stdout().encode(), "stderr": debug_log.encode()}
    for path in sorted(server.data_dir.rglob("*")):
        if path.is_file() and not path.name.startswith("users.json"):
            files[str(path.relative_to(server.data_dir))] = path.read_bytes()
    assert "mail.log" in files
    leaks = [
        f"{what} in {where}"
        for where, data in files.items()
        for what, secret in secrets().items()
        if secret in data
    ]
    assert leaks == []
