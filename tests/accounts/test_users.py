"""The user store (mailwright.accounts.users): secrets, file format, reloads."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from mailwright.accounts.users import (
    USERS_FILE,
    UserError,
    UserInfo,
    UserStore,
    UsersUnavailable,
    format_scram,
    parse_scram,
)
from mailwright.smtp._sasl import (
    Authenticated,
    Challenge,
    server_mechanism,
)
from mailwright.smtp._sasl_client import (
    ScramSha256Client,
    client_mechanism,
)

PASSWORD = "correct horse battery staple"
# Cheap parameters for tests only; the defaults are RFC 9106's (m=64 MiB).
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def make_store(path: Path) -> UserStore:
    return UserStore(path, hasher=FAST_HASHER, scram_iterations=4096)


@pytest.fixture
def store(tmp_path: Path) -> UserStore:
    return make_store(tmp_path / "data" / USERS_FILE)


def test_add_verify_list(store: UserStore) -> None:
    info = store.add("Alice@Example.com", PASSWORD, addresses=["a.smith@example.com"])
    assert info == UserInfo(
        "alice@example.com",
        ("alice@example.com", "a.smith@example.com"),
        ("PLAIN", "LOGIN", "SCRAM-SHA-256"),
    )
    assert store.verify_password("alice@example.com", PASSWORD)
    assert store.verify_password("ALICE@example.COM", PASSWORD)
    assert not store.verify_password("alice@example.com", PASSWORD + "!")
    store.add("bob@example.com", "hunter2", cram_md5=True)
    assert [u.login for u in store.list()] == ["alice@example.com", "bob@example.com"]
    assert store.list()[1].mechanisms == ("PLAIN", "LOGIN", "SCRAM-SHA-256", "CRAM-MD5")


def test_duplicates_and_unknown_users(store: UserStore) -> None:
    store.add("alice@example.com", PASSWORD, addresses=["shared@example.com"])
    with pytest.raises(UserError, match="already exists"):
        store.add("ALICE@example.com", "x")
    with pytest.raises(UserError, match=r"belongs to alice@example\.com"):
        store.add("bob@example.com", "x", addresses=["Shared@example.com"])
    with pytest.raises(UserError, match="belongs to alice"):
        store.add("shared@example.com", "x")
    with pytest.raises(UserError, match="no such user"):
        store.set_password("nobody@example.com", "x")
    with pytest.raises(UserError, match="no such user"):
        store.delete("nobody@example.com")
    assert [u.login for u in store.list()] == ["alice@example.com"]


@pytest.mark.parametrize("login", ["alice", "@example.com", "a b@example.com", "a@", ""])
def test_invalid_login(store: UserStore, login: str) -> None:
    with pytest.raises(UserError, match="invalid login"):
        store.add(login, PASSWORD)


@pytest.mark.parametrize("password", ["tab\there", "nul\0", "\u00ad", "p" * 256])
def test_invalid_password(store: UserStore, password: str) -> None:
    with pytest.raises(UserError):
        store.add("alice@example.com", password)
    assert store.list() == []


def test_set_password_and_delete(store: UserStore) -> None:
    store.add("alice@example.com", PASSWORD, cram_md5=True)
    store.set_password("alice@example.com", "new password")
    assert store.verify_password("alice@example.com", "new password")
    assert not store.verify_password("alice@example.com", PASSWORD)
    assert store.cram_secret("alice@example.com") == "new password"  # choice kept
    store.set_password("alice@example.com", "newer", cram_md5=False)
    assert store.cram_secret("alice@example.com") is None
    store.delete("Alice@example.com")
    assert store.list() == []
    assert not store.verify_password("alice@example.com", "newer")


def test_file_is_private_and_holds_no_plaintext(store: UserStore) -> None:
    store.add("alice@example.com", PASSWORD)
    store.set_password("alice@example.com", PASSWORD + "2")
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    assert mode == 0o600
    raw = store.path.read_bytes()
    assert PASSWORD.encode() not in raw
    assert b"correct horse" not in raw
    doc = json.loads(raw)
    entry = doc["users"]["alice@example.com"]
    assert doc["version"] == 1
    assert entry["password_hash"].startswith("$argon2id$")
    assert entry["scram_sha_256"].startswith("SCRAM-SHA-256$4096:")
    assert "cram_md5_secret" not in entry
    # No temporary files left behind by write_atomic.
    assert sorted(p.name for p in store.path.parent.iterdir()) == [
        USERS_FILE,
        USERS_FILE + ".lock",
    ]


def test_cram_secret_only_when_opted_in(store: UserStore) -> None:
    store.add("alice@example.com", PASSWORD)
    store.add("bob@example.com", "bobs password", cram_md5=True)
    assert store.cram_secret("alice@example.com") is None
    assert store.cram_secret("bob@example.com") == "bobs password"
    assert store.cram_secret("nobody@example.com") is None
    # The opt-in secret is plaintext-equivalent: it is in the file, as documented.
    assert b"bobs password" in store.path.read_bytes()


def test_scram_keys_verify_with_a_scramp_client(store: UserStore) -> None:
    store.add("alice@example.com", PASSWORD)
    server = server_mechanism("SCRAM-SHA-256", store)
    client = ScramSha256Client("Alice@example.com", PASSWORD)
    step = server.start(client.initial())
    while isinstance(step, Challenge):
        step = server.step(client.respond(step.data))
    assert step == Authenticated("alice@example.com")
    assert client.complete
    assert store.scram_keys("nobody@example.com") is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"])
def test_every_mechanism_against_the_store(store: UserStore, mechanism: str) -> None:
    password = "pässwörd ünïcode"
    store.add("alice@example.com", password, cram_md5=True)
    server = server_mechanism(mechanism, store)
    client = client_mechanism(mechanism, "alice@example.com", password)
    step = server.start(client.initial())
    while isinstance(step, Challenge):
        step = server.step(client.respond(step.data))
    if mechanism in ("PLAIN", "LOGIN"):
        assert store.verify_password(step.authcid, step.password)
    else:
        assert step == Authenticated("alice@example.com")


def test_saslprep_makes_equivalent_passwords_equal(store: UserStore) -> None:
    # RFC 4013 §3: U+00AD (soft hyphen) maps to nothing, so "I\u00adX" is "IX".
    store.add("alice@example.com", "I\u00adX")
    assert store.verify_password("alice@example.com", "IX")


def test_addresses(store: UserStore) -> None:
    store.add("alice@example.com", PASSWORD, addresses=["A.Smith@Example.com", "alice@example.org"])
    assert store.owns_address("alice@example.com", "alice@example.com")
    assert store.owns_address("alice@example.com", "a.smith@EXAMPLE.com")
    assert store.owns_address("alice@example.com", "alice@example.org")
    assert not store.owns_address("alice@example.com", "bob@example.com")
    assert not store.owns_address("nobody@example.com", "alice@example.com")
    assert store.user_for_address("ALICE@example.org") == "alice@example.com"
    assert store.user_for_address("bob@example.com") is None
    with pytest.raises(UserError, match="invalid address"):
        store.add("bob@example.com", PASSWORD, addresses=["not an address"])


def test_reload_after_external_change(tmp_path: Path) -> None:
    path = tmp_path / USERS_FILE
    server_view = make_store(path)
    assert server_view.list() == []
    assert not server_view.verify_password("alice@example.com", PASSWORD)
    make_store(path).add("alice@example.com", PASSWORD)  # e.g. `mailwright user add`
    assert server_view.verify_password("alice@example.com", PASSWORD)
    make_store(path).delete("alice@example.com")
    assert server_view.scram_keys("alice@example.com") is None


def test_unreadable_users_file_fails_closed_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / USERS_FILE
    server_view = make_store(path)
    server_view.add("alice@example.com", PASSWORD)
    assert server_view.verify_password("alice@example.com", PASSWORD)
    good = path.read_bytes()
    path.write_text("{ not json")
    # No "last good copy": an account deleted or re-keyed since must not keep working.
    with pytest.raises(UsersUnavailable, match="cannot read"):
        server_view.verify_password("alice@example.com", PASSWORD)
    with pytest.raises(UsersUnavailable):
        server_view.scram_keys("alice@example.com")
    with pytest.raises(UsersUnavailable):
        server_view.owns_address("alice@example.com", "alice@example.com")
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 3  # one line at every attempt, naming the file
    assert all(str(path) in line and "unreadable" in line for line in errors)
    with pytest.raises(UserError, match="cannot read"):
        make_store(path).list()  # a fresh reader (the CLI) says so
    with pytest.raises(UserError, match="cannot read"):
        server_view.add("bob@example.com", PASSWORD)  # never overwrite what we can't read
    path.write_bytes(good)
    assert server_view.verify_password("alice@example.com", PASSWORD)  # recovered


class SpyHasher(PasswordHasher):
    """Records which hash each verification ran against."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified.append(str(hash))
        return super().verify(hash, password)


def test_unknown_user_verifies_against_a_dummy_hash(tmp_path: Path) -> None:
    hasher = SpyHasher()
    store = UserStore(tmp_path / USERS_FILE, hasher=hasher, scram_iterations=4096)
    store.add("alice@example.com", PASSWORD)
    hashes = hasher.verified
    assert not store.verify_password("nobody@example.com", PASSWORD)
    assert not store.verify_password("nobody@example.com", "\0")  # SASLprep-invalid, too
    assert store.verify_password("alice@example.com", PASSWORD)
    assert len(hashes) == 3
    assert hashes[0] == hashes[1] != hashes[2]  # one cached dummy, same parameters
    assert hashes[0].split("$")[:4] == hashes[2].split("$")[:4]


def test_scram_text_format_round_trip(store: UserStore) -> None:
    store.add("alice@example.com", PASSWORD)
    keys = store.scram_keys("alice@example.com")
    assert keys is not None and keys.iterations == 4096 and len(keys.salt) == 16
    assert parse_scram(format_scram(keys)) == keys
    with pytest.raises(ValueError):
        parse_scram("SCRAM-SHA-1$4096:abc$def:ghi")


def test_defaults_are_strong(tmp_path: Path) -> None:
    """What the default store writes (PHC string, SCRAM iteration count), as a
    verifier reads it back: argon2id with RFC 9106's parameters, SCRAM >= 4096."""
    default = UserStore(tmp_path / USERS_FILE)
    default.add("alice@example.com", PASSWORD)
    [entry] = json.loads((tmp_path / USERS_FILE).read_text("utf-8"))["users"].values()
    params = extract_parameters(entry["password_hash"])
    assert params.type is Type.ID
    assert params.memory_cost >= 65536 and params.time_cost >= 3
    keys = default.scram_keys("alice@example.com")
    assert keys is not None and keys.iterations >= 4096
