"""The control channel (``runtime.control``): one codec for every message, both halves.

Every message type round-trips byte-exactly, in a datagram and on a pipe read one byte
at a time; a truncated, oversized, unknown or wrong-direction line is a one-line
``ControlError`` (a batch keeps its good lines); and the session side, the main side,
the worker and its link all use this one module — no second definition of a framing
constant, a tag or a descriptor transfer anywhere else.
"""

from __future__ import annotations

import ast
import socket
import typing
from pathlib import Path

import pytest

import mailwright
from helpers.servers import build_config
from mailwright.runtime import control, sessionpool, sessions, worker, workerlink
from mailwright.runtime.control import (
    Adopt,
    AuthFailed,
    AuthSucceeded,
    Ban,
    ControlError,
    Queued,
    Ready,
    Released,
    ReloadTls,
    ReopenLog,
    Stop,
    Stress,
    Wake,
)

# Each message type, as one canonical line on the wire.
WIRE: list[tuple[control.Message, bytes]] = [
    (Adopt(1, "127.0.0.1"), b"c 1 127.0.0.1"),
    (Adopt(0, "2001:db8::1", make_room=True), b"e 0 2001:db8::1"),
    (Stress(True), b"S 1"),
    (Stress(False), b"S 0"),
    (Ban("192.0.2.7", 600.0), b"b 192.0.2.7 600"),
    (Ban("::1", 2.5), b"b ::1 2.5"),
    (ReloadTls(), b"h"),
    (ReopenLog(), b"o"),
    (Stop(), b"x"),
    (Wake(), b"w"),
    (Ready(), b"ready"),
    (Queued("0ABCDEFGHJKMNPQR"), b"q 0ABCDEFGHJKMNPQR"),
    (Released("192.0.2.7"), b"r 192.0.2.7"),
    (AuthFailed("192.0.2.7"), b"f 192.0.2.7"),
    (AuthSucceeded("192.0.2.7"), b"s 192.0.2.7"),
]
SRC = Path(mailwright.__file__).parent


def test_the_examples_cover_every_message_type():
    assert {type(message) for message, _ in WIRE} == set(typing.get_args(control.Message))
    directions = control.TO_SESSION | control.TO_MAIN | control.TO_WORKER
    assert directions == set(typing.get_args(control.Message))


@pytest.mark.parametrize(("message", "line"), WIRE, ids=[line.decode() for _, line in WIRE])
def test_every_message_round_trips_byte_exactly(message: control.Message, line: bytes):
    assert control.encode(message) == line
    assert control.decode(line) == message
    assert control.encode(control.decode(line)) == line


def test_a_datagram_carries_every_message_in_order():
    messages = [message for message, _ in WIRE]
    data = control.encode_batch(messages)
    assert data == b"\n".join(line for _, line in WIRE)
    assert control.unpack(data) == (messages, [])


def test_the_pipe_decoder_takes_reads_of_any_size():
    messages = [message for message, _ in WIRE]
    stream = control.encode_stream(messages)
    assert stream == b"".join(line + b"\n" for _, line in WIRE)
    decoder = control.StreamDecoder()
    got: list[control.Message] = []
    for i in range(len(stream)):  # one byte at a time: lines cut anywhere
        decoded, problems = decoder.feed(stream[i : i + 1])
        assert problems == []
        got += decoded
    assert got == messages


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"b 192.0.2.7", "b: expected seconds"),  # truncated: no seconds
        (b"b 192.0.2.7 soon", "b: expected seconds"),
        (b"b 192.0.2.7 nan", "b: expected seconds"),
        (b"b 192.0.2.7 -1", "b: expected seconds"),
        (b"c 1", "c: expected one client IP"),  # truncated: no IP
        (b"c x 127.0.0.1", "c: expected a listener index"),
        (b"c 1 127.0.0.1 extra", "c: expected one client IP"),
        (b"q", "q: expected a queue id"),
        (b"q ../etc", "q: expected a queue id"),
        (b"r", "r: expected one client IP"),
        (b"S", "S: expected 0 or 1"),
        (b"S 2", "S: expected 0 or 1"),
        (b"x now", "x: unexpected argument"),
        (b"ready 1", "ready: unexpected argument"),
        (b"z 1", "unknown message"),
        (b"", "unknown message"),
        (b"r \xff", "not ASCII"),
        (b"q " + b"A" * 300, "over 256"),  # oversized line
    ],
)
def test_a_bad_line_is_a_one_line_control_error(line: bytes, reason: str):
    with pytest.raises(ControlError) as info:
        control.decode(line)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_a_message_of_the_other_direction_is_unknown_to_the_receiver():
    with pytest.raises(ControlError, match="unknown message"):
        control.decode(b"q 0ABC", control.TO_SESSION)  # a session is never told of mail
    with pytest.raises(ControlError, match="unknown message"):
        control.decode(b"c 0 127.0.0.1", control.TO_MAIN)
    with pytest.raises(ControlError, match="unknown message"):
        control.decode(b"ready", control.TO_WORKER)


def test_a_batch_keeps_its_good_lines():
    messages, problems = control.unpack(b"q 0ABC\nzzz\nr 192.0.2.7", control.TO_MAIN)
    assert messages == [Queued("0ABC"), Released("192.0.2.7")]
    assert problems == ["unknown message b'zzz'"]


def test_an_oversized_datagram_is_refused_both_ways():
    many = [Queued("0ABCDEFGHJKMNPQR")] * (control.CONTROL_DATAGRAM_MAX // 18 + 1)
    with pytest.raises(ControlError, match="over 65536"):
        control.encode_batch(many)
    data = b"\n".join(control.encode(m) for m in many)
    assert control.unpack(data) == ([], [f"datagram of {len(data)} bytes, over 65536"])


def test_an_overlong_pipe_line_is_dropped_and_the_next_ones_read():
    decoder = control.StreamDecoder(control.TO_WORKER)
    messages, problems = decoder.feed(b"q " + b"A" * 400)
    assert (messages, problems) == ([], ["line of over 256 bytes dropped"])
    messages, problems = decoder.feed(b"AAAA\nq 0ABC\nw\n")
    assert messages == [Queued("0ABC"), Wake()]
    assert problems == ["unknown message b'AAAA'"]  # the dropped line's tail


def test_descriptors_travel_with_their_adopt_lines():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a, b = socket.socketpair()
    with ours, theirs, a, b:
        data = control.encode_batch([Adopt(0, "127.0.0.1")])
        control.send_datagram(ours, data, [a.fileno()])
        got, fds = control.receive_datagram(theirs)
        assert control.unpack(got) == ([Adopt(0, "127.0.0.1")], [])
        with socket.socket(fileno=fds[0]) as copy:
            copy.send(b"through the copy")
            assert b.recv(100) == b"through the copy"


def test_the_config_frame_round_trips(tmp_path: Path):
    config = build_config(tmp_path)
    read, write = socket.socketpair()
    with read, write:
        write.sendall(control.config_frame(config))
        assert control.read_config(read.fileno()) == config


def test_a_config_frame_cut_short_is_a_control_error(tmp_path: Path):
    read, write = socket.socketpair()
    with read, write:
        write.sendall(control.config_frame(build_config(tmp_path))[:20])
        write.shutdown(socket.SHUT_WR)
        with pytest.raises(ControlError, match="closed the pipe before sending"):
            control.read_config(read.fileno())


# -- one encoder, one decoder ---------------------------------------------------------


def test_both_sides_of_every_channel_use_the_one_codec():
    """The session side, the main side, the worker and its link hold the same module."""
    for side in (sessions, sessionpool, worker, workerlink):
        assert side.control is control, side.__name__


def _assigned_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_framing_and_descriptor_passing_are_defined_only_in_control():
    """No second ``CONTROL_DATAGRAM_MAX``, config header or SCM_RIGHTS call elsewhere.

    One exception, by name: ``spool/wakeup.py``, the wake-up FIFO that ``mailwright
    sendmail`` and ``queue flush`` poke (Postfix's ``public/pickup``).  It is not a
    channel between the server and its children but between unrelated processes and
    the queue runner; both of its halves are in that one module, and it sits below
    ``runtime`` in the layer order, so it cannot use this codec.  Its own line limit
    is checked below to stay its only framing."""
    framing = {"CONTROL_DATAGRAM_MAX", "CONFIG_HEADER", "MAX_FDS", "MAX_LINE", "LINE_END"}
    wakeup = SRC / "spool" / "wakeup.py"
    assert framing & _assigned_names(ast.parse(wakeup.read_text("utf-8"))) == {"MAX_LINE"}
    for path in SRC.rglob("*.py"):
        if path in (SRC / "runtime" / "control.py", wakeup):
            continue
        text = path.read_text("utf-8")
        assert not framing & _assigned_names(ast.parse(text)), path
        for call in ("send_fds", "recv_fds", "pickle.loads", "CONFIG_HEADER.pack"):
            assert call not in text, (path, call)
