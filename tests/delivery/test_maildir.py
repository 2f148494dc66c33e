"""Maildir writer: tmp -> fsync -> new, LF line endings, unique names with Dovecot's
sizes, readable by other software."""

from __future__ import annotations

import asyncio
import errno
import mailbox
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from mailwright.delivery import batch as batch_mod
from mailwright.delivery.batch import MaildirBatcher
from mailwright.delivery.maildir import (
    DeliveryKey,
    EarlierCopy,
    Maildir,
    maildir_form,
    maildir_path,
    safe_hostname,
    unique_name,
    virtual_size,
)
from mailwright.spool.queueid import new_queue_id

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"
# MESSAGE as the Maildir file holds it.
MESSAGE_LF = b"From: a@example.org\nTo: b@example.org\nSubject: hi\n\nHello.\n"
NAME_RE = re.compile(
    r"^(?P<sec>\d+)\.M(?P<usec>\d{1,6})P(?P<pid>\d+)Q(?P<q>\d+)R(?P<rand>[0-9a-f]{16})"
    r"\.(?P<host>[^/:,]+),S=(?P<size>\d+),W=(?P<vsize>\d+)$"
)


def deliver(md: Maildir, data: bytes) -> str:
    """One delivery as the local agent makes it: ``Maildir.stage`` in a batch, then the
    batch's fsync of ``new/``; the file name once that sync is done."""
    return asyncio.run(MaildirBatcher().deliver(md, partial(md.stage, data)))


@pytest.fixture
def md(tmp_path: Path) -> Maildir:
    box = Maildir(tmp_path / "mail" / "example.org" / "alice", hostname="mx.example.org")
    box.ensure()
    return box


def test_ensure_creates_private_dirs(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "m", hostname="h")
    box.ensure()
    box.ensure()  # idempotent
    for sub in ("cur", "new", "tmp"):
        mode = (tmp_path / "m" / sub).stat().st_mode
        assert stat.S_ISDIR(mode)
        assert stat.S_IMODE(mode) == 0o700


def test_deliver_lands_in_new(md: Maildir) -> None:
    name = deliver(md, MESSAGE)
    path = md.root / "new" / name
    assert path.read_bytes() == MESSAGE_LF
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(md.root / "tmp") == []
    assert os.listdir(md.root / "cur") == []


def test_name_parses_and_carries_size(md: Maildir) -> None:
    name = deliver(md, MESSAGE)
    match = NAME_RE.match(name)
    assert match, name
    assert int(match["size"]) == len(MESSAGE_LF) == (md.root / "new" / name).stat().st_size
    assert int(match["vsize"]) == len(MESSAGE)
    assert int(match["pid"]) == os.getpid()
    assert match["host"] == "mx.example.org"


# Written out by hand, not computed: what the wire form holds and what the file must.
# Dot lines arrive unstuffed (the SMTP core removed the transparency dot), so ".",
# ".." and ".dot" are content and stay; so do trailing spaces and tabs, a folded
# header line, 8-bit octets, empty lines and the missing line end of a BDAT body.
EXACT_WIRE = (
    b"Subject: dots \t \r\n\tfolded  \r\n\r\n"
    b".\r\n..\r\n.dot\r\n  \r\n\r\n\r\nGr\xfc\xdfe \xe9t\xe9 \r\n\x00\x7f\xff\tend"
)
EXACT_FILE = (
    b"Subject: dots \t \n\tfolded  \n\n"
    b".\n..\n.dot\n  \n\n\nGr\xfc\xdfe \xe9t\xe9 \n\x00\x7f\xff\tend"
)


def test_maildir_file_has_lf_line_endings(md: Maildir) -> None:
    """Issue 8 item 2: every CRLF of the wire form becomes LF, every other octet stays."""
    name = deliver(md, EXACT_WIRE)
    assert (md.root / "new" / name).read_bytes() == EXACT_FILE
    assert maildir_form(MESSAGE) == MESSAGE_LF


def test_maildir_name_carries_file_size_and_crlf_size(md: Maildir) -> None:
    """``S=`` is the size of the LF file, ``W=`` the RFC822.SIZE: the CRLF size."""
    for wire in (MESSAGE, EXACT_WIRE, b"Subject: empty body\r\n\r\n", b"x"):
        name = deliver(md, wire)
        match = NAME_RE.match(name)
        assert match, name
        size = (md.root / "new" / name).stat().st_size
        assert int(match["size"]) == size == len(wire) - wire.count(b"\r\n")
        assert int(match["vsize"]) == len(wire)


def test_bare_line_endings_from_bdat_are_kept(md: Maildir) -> None:
    """DATA cannot bring a bare CR or LF (the core answers 521), so a line that is only
    a CR cannot come from it; BDAT chunks are taken as sent (RFC 3030).  Only CRLF pairs
    are converted; a bare LF or CR stays as it came, and ``W=`` counts the file as
    Dovecot does: each LF without a CR before it is one more octet."""
    wire = b"Subject: b\r\n\r\nbare\nlf\rcr\r\r\nend\r\n"
    name = deliver(md, wire)
    data = (md.root / "new" / name).read_bytes()
    assert data == b"Subject: b\n\nbare\nlf\rcr\r\nend\n"
    # As IMAP shows it: Subject: b CRLF CRLF bare CRLF lf CR cr CRLF end CRLF.
    match = NAME_RE.match(name)
    assert match, name
    assert int(match["size"]) == len(data) == 28
    assert int(match["vsize"]) == len(b"Subject: b\r\n\r\nbare\r\nlf\rcr\r\nend\r\n") == 32


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (b"", 0),
        (b"no line end", 11),
        (b"a\nb\n", 6),
        (b"a\r\nb\n", 6),  # an LF with its CR counts once
        (b"\r", 1),
        (b"\r\r\n\n", 5),
    ],
)
def test_virtual_size_counts_like_dovecot(data: bytes, size: int) -> None:
    assert virtual_size(data) == size


def test_hostname_escaped() -> None:
    assert safe_hostname("a/b:c") == "a\\057b\\072c"
    name = unique_name("a/b:c", 5, 7)
    assert "/" not in name and ":" not in name
    assert name.endswith(".a\\057b\\072c,S=5,W=7")


def test_unique_names_for_rapid_deliveries(md: Maildir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # names, not disks, are under test
    with ThreadPoolExecutor(8) as pool:
        names = list(pool.map(lambda i: md.stage(b"msg %d\r\n" % i), range(1000)))
    assert len(set(names)) == 1000
    assert len(os.listdir(md.root / "new")) == 1000
    assert os.listdir(md.root / "tmp") == []


def test_readable_by_stdlib_mailbox(md: Maildir) -> None:
    first = deliver(md, MESSAGE)
    deliver(md, b"Subject: second\r\n\r\nBody 2\r\n")
    reader = mailbox.Maildir(str(md.root), factory=None, create=False)
    keys = sorted(reader.keys())
    assert len(keys) == 2
    assert first in keys  # no ":2," info in new/: the key is the whole name
    msg = reader[first]
    assert msg["Subject"] == "hi"
    assert msg.get_subdir() == "new"
    assert reader.get_bytes(first) == MESSAGE_LF
    subjects = sorted(reader[k]["Subject"] for k in keys)
    assert subjects == ["hi", "second"]


def _assert_clean(md: Maildir) -> None:
    assert os.listdir(md.root / "tmp") == []
    assert os.listdir(md.root / "new") == []


def test_fsync_failure_leaves_no_debris(md: Maildir, monkeypatch: pytest.MonkeyPatch) -> None:
    def enospc(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(OSError) as info:
        deliver(md, MESSAGE)
    assert info.value.errno == errno.ENOSPC
    _assert_clean(md)


def test_write_failure_leaves_no_debris(md: Maildir, monkeypatch: pytest.MonkeyPatch) -> None:
    def eio(fd: int, data: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", eio)
    with pytest.raises(OSError):
        deliver(md, MESSAGE)
    _assert_clean(md)


def test_link_failure_leaves_no_debris(md: Maildir, monkeypatch: pytest.MonkeyPatch) -> None:
    def eio(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "link", eio)
    with pytest.raises(OSError):
        deliver(md, MESSAGE)
    _assert_clean(md)


def test_dir_fsync_failure_removes_new_file(md: Maildir, monkeypatch: pytest.MonkeyPatch) -> None:
    def eio(path: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(batch_mod, "fsync_dir", eio)
    with pytest.raises(OSError):
        deliver(md, MESSAGE)
    _assert_clean(md)  # a retry must not produce a duplicate


def test_no_hard_links_falls_back_to_rename(md: Maildir, monkeypatch: pytest.MonkeyPatch) -> None:
    def eperm(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", eperm)
    name = deliver(md, MESSAGE)
    assert (md.root / "new" / name).read_bytes() == MESSAGE_LF
    assert os.listdir(md.root / "tmp") == []


KEY = DeliveryKey("1M91SP8GXG2MGS9X", 1796430570.028237)


KEYED = f"1796430570.M28237K1M91SP8GXG2MGS9X.mx.example.org,S={len(MESSAGE_LF)},W={len(MESSAGE)}"


def test_keyed_name_is_the_same_on_every_attempt(md: Maildir) -> None:
    name = deliver(md, MESSAGE)  # unkeyed: random, unique
    keyed = md.stage(MESSAGE, KEY)
    assert keyed == KEYED
    assert not isinstance(keyed, EarlierCopy) and keyed != name
    again = md.stage(MESSAGE, KEY)  # link(2) says EEXIST: no listing needed
    assert again == keyed and isinstance(again, EarlierCopy)
    assert sorted(os.listdir(md.root / "new")) == sorted([name, keyed])
    assert os.listdir(md.root / "tmp") == []


def test_recheck_finds_a_copy_in_cur_under_another_host_name(tmp_path: Path) -> None:
    old = Maildir(tmp_path / "box", hostname="old.example.org")
    old.ensure()
    name = old.stage(MESSAGE, KEY)
    os.rename(old.root / "new" / name, old.root / "cur" / f"{name}:2,RS")
    renamed = Maildir(tmp_path / "box", hostname="new.example.org")
    assert renamed.stage(MESSAGE, replace(KEY, recheck=True)) == name
    assert os.listdir(old.root / "new") == [] and os.listdir(old.root / "tmp") == []


def test_a_crash_leftover_in_tmp_does_not_block_the_redelivery(md: Maildir) -> None:
    (md.root / "tmp" / KEYED).write_bytes(b"half")  # killed while writing it
    keyed = asyncio.run(MaildirBatcher().deliver(md, partial(md.stage, MESSAGE, KEY)))
    assert keyed == KEYED and not isinstance(keyed, EarlierCopy)
    assert (md.root / "new" / keyed).read_bytes() == MESSAGE_LF


def test_failed_new_sync_keeps_the_earlier_copy(
    md: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier attempt's copy may have been read already: a failed sync of new/ on
    the re-delivery fails the delivery (retried) but never removes that copy."""
    name = md.stage(MESSAGE, KEY)

    def eio(path: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(batch_mod, "fsync_dir", eio)
    with pytest.raises(OSError):
        asyncio.run(MaildirBatcher().deliver(md, partial(md.stage, MESSAGE, KEY)))
    assert os.listdir(md.root / "new") == [name]


def test_backlog_from_before_a_restart_lists_the_folder_once(
    md: Maildir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart every queued message is a re-delivery: the ones no process
    attempted since (``ended_only``) share one listing of new/ and cur/, and still
    recognise every earlier copy, in new/ or moved to cur/."""
    keys = [DeliveryKey(new_queue_id(), 1796430570.0 + i / 7) for i in range(40)]
    written = [md.stage(MESSAGE, key) for key in keys[:20]]  # by the process that died
    for name in written[::2]:
        os.rename(md.root / "new" / name, md.root / "cur" / f"{name}:2,S")
    listed: list[object] = []
    real_listdir = os.listdir

    def counting_listdir(path: object) -> list[str]:
        listed.append(path)
        return real_listdir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "listdir", counting_listdir)
    after = [md.stage(MESSAGE, replace(k, recheck=True, ended_only=True)) for k in keys]
    assert listed == [md.new_dir, md.cur_dir]
    assert after[:20] == written and all(isinstance(n, EarlierCopy) for n in after[:20])
    assert not any(isinstance(n, EarlierCopy) for n in after[20:])
    assert len(real_listdir(md.root / "new")) + len(real_listdir(md.root / "cur")) == 40
    # A key this process attempted before is looked up afresh: the kept listing does
    # not know what this process wrote since.
    again = md.stage(MESSAGE, replace(keys[30], recheck=True))
    assert again == after[30] and isinstance(again, EarlierCopy)
    assert len(listed) == 4


def test_maildir_path_scheme(tmp_path: Path) -> None:
    assert maildir_path(tmp_path, "example.org", "alice") == tmp_path / "example.org" / "alice"
    for domain, box in [("..", "x"), ("example.org", ".."), ("a/b", "x"), ("d", ""), ("d", "a\0")]:
        with pytest.raises(ValueError):
            maildir_path(tmp_path, domain, box)
