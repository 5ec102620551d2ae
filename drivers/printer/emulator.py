"""A receipt-printer emulator for tests and the demo: ESC/POS over TCP, and serial over a pty.

It behaves like a networked TM-T88: one TCP connection that carries printable bytes is one job;
``DLE EOT n`` is answered as soon as it arrives, wherever it appears in the stream (as Epson
printers do, even inside image data). On a pty a job is a burst of bytes: it ends once the line
has been idle for ``PTY_IDLE_S`` (a cut does not end it). A job is in ``emu.jobs`` as soon
as its connection ends; a worker thread then renders it (and saves it to ``out_dir``), and
``wait_for_jobs`` waits for that too, so ``job.rendered`` is free to read afterwards.

States (``emu.state``): ONLINE and PAPER_NEAR_END print; PAPER_OUT and COVER_OPEN answer status
but discard printable bytes into ``emu.discarded``; HANG stops reading (nothing is answered
until the state changes); UNREACHABLE closes the listener, so connections are refused, and
drops open ones; leaving it listens again on the same port. ``emu.drop_after_bytes = N`` cuts
the next TCP connection once it has carried N bytes (once).

Run alone for the demo::

    python -m drivers.printer.emulator --listen 127.0.0.1:9100 --out DIR [--width 512] [--pty]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import functools
import logging
import os
import signal
import socket
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from drivers.printer.render import RenderedJob, render_job
from drivers.printer.status import REALTIME_STATUS, PrinterStatus, encode_status

_LOGGER = logging.getLogger(__name__)

PTY_IDLE_S = 0.15


class EmulatedState(enum.Enum):
    """What the emulated printer is doing."""

    ONLINE = "online"
    PAPER_NEAR_END = "paper near end"
    PAPER_OUT = "paper out"
    COVER_OPEN = "cover open"
    UNREACHABLE = "unreachable"
    HANG = "hang"


_STATUS = {
    EmulatedState.PAPER_NEAR_END: PrinterStatus(online=True, paper_near_end=True),
    EmulatedState.PAPER_OUT: PrinterStatus(online=False, paper_out=True, paper_near_end=True),
    EmulatedState.COVER_OPEN: PrinterStatus(online=False, cover_open=True),
}
_NOT_READING = (EmulatedState.HANG, EmulatedState.UNREACHABLE)


@dataclass(frozen=True)
class PrintedJob:
    """One job the emulated printer printed."""

    number: int
    data: bytes  # every byte received, status queries included
    started: float  # time.perf_counter() of the first byte
    last_byte_at: float  # time.perf_counter() of the last byte
    width_px: int = 512

    @functools.cached_property
    def rendered(self) -> RenderedJob:
        """The job as printed; rendered on first use (tens of ms), cached afterwards."""
        return render_job(self.data, self.width_px)


@dataclass
class _Session:
    """Bytes of one connection, or one pty burst, as they arrive."""

    job: bytearray = field(default_factory=bytearray)
    discarded: bytearray = field(default_factory=bytearray)
    received: int = 0
    started: float = 0.0
    last_byte_at: float = 0.0
    tail: bytes = b""  # the start of a DLE EOT split across reads


class _Connection(asyncio.Protocol):
    def __init__(self, emulator: PrinterEmulator) -> None:
        self._emulator = emulator
        self._session = _Session()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._emulator._connections.add(self)
        self.set_reading(self._emulator.state not in _NOT_READING)

    def set_reading(self, reading: bool) -> None:
        assert self.transport is not None
        if reading and not self.transport.is_reading():
            self.transport.resume_reading()
        elif not reading and self.transport.is_reading():
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        limit = self._emulator.drop_after_bytes
        if limit is not None and self._session.received + len(data) >= limit:
            self._emulator.drop_after_bytes = None
            self._emulator._receive(self._session, data[: max(limit - self._session.received, 0)])
            self.transport.abort()
            return
        replies = self._emulator._receive(self._session, data)
        if replies:
            self.transport.write(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self._emulator._connections.discard(self)
        self._emulator._finish(self._session)


@dataclass
class _Pty:
    master: int
    slave: int
    path: str
    session: _Session = field(default_factory=_Session)
    idle: asyncio.TimerHandle | None = None


class PrinterEmulator:
    """An ESC/POS printer on a TCP port (and optional ptys); use as an async context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        width_px: int = 512,
        out_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.width_px = width_px
        self.out_dir = out_dir
        self.drop_after_bytes: int | None = None
        self.jobs: list[PrintedJob] = []
        self.discarded: list[bytes] = []
        self._state = EmulatedState.ONLINE
        self._connections: set[_Connection] = set()
        self._ptys: list[_Pty] = []
        self._sock: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[PrintedJob] = asyncio.Queue()
        self._renderer: asyncio.Task[None] | None = None
        self._jobs_rendered = asyncio.Condition()
        self._rendered = 0

    @property
    def uri(self) -> str:
        """The printer URI clients use, e.g. ``socket://127.0.0.1:9100``."""
        return f"socket://{self.host}:{self.port}"

    @property
    def state(self) -> EmulatedState:
        """What the printer is doing now; set it to inject a fault."""
        return self._state

    @state.setter
    def state(self, state: EmulatedState) -> None:
        previous, self._state = self._state, state
        if self._renderer is None:
            return  # not started: __aenter__ applies it
        if state is EmulatedState.UNREACHABLE and previous is not EmulatedState.UNREACHABLE:
            self._stop_listening()
        elif previous is EmulatedState.UNREACHABLE and state is not EmulatedState.UNREACHABLE:
            self._listen()
        reading = state not in _NOT_READING
        for connection in list(self._connections):
            connection.set_reading(reading)
        for pty in self._ptys:
            self._watch_pty(pty, reading)

    async def __aenter__(self) -> PrinterEmulator:
        if self._state is not EmulatedState.UNREACHABLE:
            self._listen()
            assert self._serving is not None
            try:
                await self._serving
            except BaseException:
                self._stop_listening()
                raise
        self._renderer = asyncio.create_task(self._render_jobs(), name="printer-emulator-render")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_listening()
        for pty in self._ptys:
            self._watch_pty(pty, reading=False)
            self._end_pty_job(pty)
            os.close(pty.master)
            os.close(pty.slave)
        self._ptys.clear()
        await asyncio.sleep(0)  # let aborted connections report connection_lost
        if self.out_dir is not None:
            await self._queue.join()  # every job's files are written before we return
        assert self._renderer is not None
        self._renderer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renderer

    # The timeout is a parameter so that expiry can say how many jobs did arrive.
    async def wait_for_jobs(self, count: int, timeout: float = 5.0) -> list[PrintedJob]:  # noqa: ASYNC109
        """Wait until ``count`` jobs have been printed and rendered; TimeoutError otherwise."""
        try:
            async with asyncio.timeout(timeout), self._jobs_rendered:
                await self._jobs_rendered.wait_for(lambda: self._rendered >= count)
        except TimeoutError:
            raise TimeoutError(
                f"printer emulator got {len(self.jobs)} of {count} jobs within {timeout} s"
            ) from None
        return list(self.jobs)

    def open_pty(self) -> str:
        """Serve a serial line on a new pty pair; returns the device path for ``serial:``."""
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        # The emulator keeps the slave open too, so clients closing it do not hang up the line.
        pty = _Pty(master, slave, os.ttyname(slave))
        self._ptys.append(pty)
        self._watch_pty(pty, self._state not in _NOT_READING)
        return pty.path

    def _listen(self) -> None:
        # Bound and listening before this returns, so a client connecting right after a state
        # change is queued by the kernel rather than refused.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._serving = asyncio.create_task(self._serve(sock), name="printer-emulator-listen")

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self), sock=sock, start_serving=False)
        self._server = server
        await server.start_serving()

    def _stop_listening(self) -> None:
        if self._serving is not None:
            self._serving.cancel()
        if self._server is not None:
            self._server.close()
        if self._sock is not None:
            self._sock.close()
        self._serving, self._server, self._sock = None, None, None
        for connection in list(self._connections):
            assert connection.transport is not None
            connection.transport.abort()

    def _watch_pty(self, pty: _Pty, reading: bool) -> None:
        loop = asyncio.get_running_loop()
        if reading:
            loop.add_reader(pty.master, self._read_pty, pty)
        else:
            loop.remove_reader(pty.master)

    def _read_pty(self, pty: _Pty) -> None:
        try:
            data = os.read(pty.master, 65536)
        except (BlockingIOError, InterruptedError):
            return
        replies = self._receive(pty.session, data)
        if replies:
            os.write(pty.master, replies)
        if pty.idle is not None:
            pty.idle.cancel()
        pty.idle = asyncio.get_running_loop().call_later(PTY_IDLE_S, self._end_pty_job, pty)

    def _end_pty_job(self, pty: _Pty) -> None:
        if pty.idle is not None:
            pty.idle.cancel()
        self._finish(pty.session)
        pty.session, pty.idle = _Session(), None

    def _receive(self, session: _Session, data: bytes) -> bytes:
        """Take bytes from a client; returns the answers to the status queries among them."""
        if not data:
            return b""
        now = time.perf_counter()
        session.started = session.started or now
        session.last_byte_at = now
        session.received += len(data)
        stream = session.tail + data
        status = encode_status(_STATUS.get(self._state, PrinterStatus(online=True)))
        replies = bytes(status[match.group()[2]] for match in REALTIME_STATUS.finditer(stream))
        session.tail = next((t for t in (b"\x10\x04", b"\x10") if stream.endswith(t)), b"")
        printable = REALTIME_STATUS.sub(b"", data)
        if printable and self._state in (EmulatedState.PAPER_OUT, EmulatedState.COVER_OPEN):
            session.discarded += data
        else:
            session.job += data
        return replies

    def _finish(self, session: _Session) -> None:
        if session.discarded:
            self.discarded.append(bytes(session.discarded))
            _LOGGER.info(
                "discarded %d bytes: printer is %s", len(session.discarded), self._state.value
            )
        data = bytes(session.job)
        if REALTIME_STATUS.sub(b"", data):
            number = len(self.jobs) + 1
            job = PrintedJob(number, data, session.started, session.last_byte_at, self.width_px)
            self.jobs.append(job)
            self._queue.put_nowait(job)

    async def _render_jobs(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                rendered = await asyncio.to_thread(self._render, job)
                payloads = rendered.qr_payloads
                _LOGGER.info(
                    "job %d: %d bytes, %d QR%s",
                    job.number,
                    len(job.data),
                    len(payloads),
                    f": {', '.join(payloads)}" if payloads else "",
                )
            except Exception:
                # One job the renderer chokes on must not stop the printer recording the next.
                _LOGGER.exception("printer emulator could not render job %d", job.number)
            finally:
                async with self._jobs_rendered:
                    self._rendered += 1
                    self._jobs_rendered.notify_all()
                self._queue.task_done()

    def _render(self, job: PrintedJob) -> RenderedJob:
        rendered = job.rendered
        if self.out_dir is not None:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                rendered.image.save(self.out_dir / f"job-{job.number:04d}.png")
                (self.out_dir / f"job-{job.number:04d}.bin").write_bytes(job.data)
            except OSError as err:
                _LOGGER.warning("printer emulator could not save job %d: %s", job.number, err)
        return rendered


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


async def _serve_until_signal(args: argparse.Namespace) -> None:
    host, port = args.listen
    async with PrinterEmulator(host, port, args.width, args.out) as emulator:
        _LOGGER.info("printer emulator at %s, receipts in %s", emulator.uri, args.out or "memory")
        if args.pty:
            _LOGGER.info("serial printer at serial:%s", emulator.open_pty())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    _LOGGER.info("printer emulator stopped after %d jobs", len(emulator.jobs))


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGINT or SIGTERM, logging one line per job."""
    parser = argparse.ArgumentParser(
        prog="python -m drivers.printer.emulator",
        description="ESC/POS receipt-printer emulator: records, renders and logs each job.",
    )
    parser.add_argument("--listen", type=_host_port, default=("127.0.0.1", 9100))
    parser.add_argument("--out", type=Path, help="write job-NNNN.png and job-NNNN.bin here")
    parser.add_argument("--width", type=int, default=512, help="paper width in dots")
    parser.add_argument("--pty", action="store_true", help="also serve a serial line on a pty")
    args = parser.parse_args(argv)
    # force: the root logger may have a handler already (importing python-escpos adds one).
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    try:
        asyncio.run(_serve_until_signal(args))
    except OSError as err:
        parser.exit(1, f"printer emulator: {err}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
