"""The durable aiosmtpd baseline server that ``bench/acceptance.py`` compares against.

Run as a subprocess::

    python bench/aiosmtpd_baseline.py --port 0 --dir /tmp/x/mail [--uvloop] [--inline-fsync]

It prints ``aiosmtpd: listening on 127.0.0.1:PORT`` once bound and runs until
SIGTERM/SIGINT.

To be a *fair* comparison with mailwright (which fsyncs before its 250), the handler
makes every message durable before answering ``250 OK``: it writes the message to a
new file, fsyncs the file, then fsyncs the directory.  By default that blocking work
runs in asyncio's default thread pool (``asyncio.to_thread``), as a competent
aiosmtpd user would write it, so concurrent sessions overlap their fsyncs; with
``--inline-fsync`` it runs on the event loop (the naive handler).  The event loop is
the standard asyncio one unless ``--uvloop`` is given (aiosmtpd's own default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

FILE_MODE = 0o600


class DurableFileHandler:
    """Writes each message to ``directory/<n>.eml``, fsyncs file and directory."""

    def __init__(self, directory: Path, *, inline: bool) -> None:
        self.directory = directory
        self.inline = inline
        self._counter = itertools.count()
        self._prefix = f"{os.getpid()}-"

    def _store(self, name: str, content: bytes) -> None:
        path = self.directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if isinstance(content, str):  # only with decode_data=True, which we do not set
            content = content.encode("utf-8", "surrogateescape")
        name = f"{self._prefix}{next(self._counter)}.eml"
        try:
            if self.inline:
                self._store(name, content)
            else:
                await asyncio.to_thread(self._store, name, content)
        except OSError:
            return "451 4.3.0 Local error in processing"
        return "250 OK"


async def serve(args: argparse.Namespace) -> None:
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    handler = DurableFileHandler(directory, inline=args.inline_fsync)
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        # hostname given: aiosmtpd would otherwise call socket.getfqdn() (DNS).
        return SMTP(handler, hostname=args.hostname, data_size_limit=args.max_size)

    server = await loop.create_server(factory, host="127.0.0.1", port=args.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"aiosmtpd: listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True, help="folder for the received messages")
    parser.add_argument("--hostname", default="baseline.local")
    parser.add_argument("--max-size", type=int, default=33554432)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument(
        "--inline-fsync", action="store_true", help="fsync on the event loop (naive handler)"
    )
    args = parser.parse_args(argv)
    runner: Any = asyncio.run
    if args.uvloop:
        import uvloop

        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args))
    sys.exit(0)


if __name__ == "__main__":
    main()
