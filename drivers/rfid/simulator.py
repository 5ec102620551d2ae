"""An LLRP reader simulator (Impinj R420-like) for tests, benches and the demo.

It speaks LLRP 1.0.1 over TCP to a real client (sllurp): on connect a READER_EVENT_NOTIFICATION
(ConnectionAttemptEvent success; a second client while one is connected gets "client connection
already exists" and is closed), then GET_READER_CAPABILITIES / GET_READER_CONFIG /
SET_READER_CONFIG (its KeepaliveSpec starts periodic KEEPALIVEs), the ROSpec lifecycle (ADD,
ENABLE - an Immediate start trigger starts it - START, STOP, DISABLE, DELETE), DELETE_ACCESSSPEC,
KEEPALIVE_ACK, CLOSE_CONNECTION and Impinj's IMPINJ_ENABLE_EXTENSIONS. Anything else gets an
ERROR_MESSAGE. A frame it cannot parse is logged; a bad parameter is answered with an error
status, a bad header (the stream cannot be resynchronised) with ERROR_MESSAGE and a close.

Reads come from a time-ordered ``Iterable[TagRead]`` (a scenario) whose timestamps are scenario
time. Clock: scenario time ``start_us`` is mapped to the moment the simulator starts (or to
the moment ``play(reads, start_us)`` is called, which tests do once the client inventories), and
scenario time runs ``speed`` times faster than the wall clock; a read is reported once its
scenario time has passed, batched into one RO_ACCESS_REPORT per ``report_interval_s`` (at most
``max_reads_per_report`` reads each). The reported timestamps are the scenario's (so a
60x-speed hour carries an hour of timestamps). Reads that fall due while no client is
inventorying are dropped and counted in ``reads_dropped`` - a real reader not inventorying
reads nothing. Keepalives use the wall clock.

Knobs for tests: ``silent = True`` (keeps the TCP connection but sends nothing: no keepalives,
reports or answers), ``drop_connection()``, ``reboot(down_s)`` (drop, refuse connections for
``down_s``, forget ROSpecs, listen again on the same port), ``send_malformed_report()`` and
``send_truncated_report()``, ``inject(reads)`` (report these at the next tick).

Run alone (``storelink-agent rfid simulate`` shares its options and ``run``)::

    python -m drivers.rfid.simulator --listen 127.0.0.1:5084 --scenario fitting-rooms
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from drivers.rfid import llrp
from drivers.rfid.llrp import Frame, LlrpFrameError, Msg, Status
from drivers.rfid.reads import TagRead
from drivers.rfid.scenarios import SCENARIOS

_LOGGER = logging.getLogger(__name__)

_SCRIPTED_REBOOT = "llrp-sim-scripted-reboot"
_REPLIED_WITH_STATUS = {
    Msg.DELETE_ACCESSSPEC,
    Msg.ENABLE_ACCESSSPEC,
    Msg.DISABLE_ACCESSSPEC,
}


@dataclass(slots=True)
class _RoSpec:
    info: llrp.RoSpecInfo
    enabled: bool = False
    active: bool = False


class _Connection(asyncio.Protocol):
    """One client connection; frames go to the simulator, which answers through ``send``."""

    def __init__(self, sim: ReaderSimulator) -> None:
        self._sim = sim
        self._splitter = llrp.FrameSplitter()
        self.transport: asyncio.Transport | None = None
        self.keepalive_task: asyncio.Task[None] | None = None
        self.rejected = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._sim._on_connect(self)

    def data_received(self, data: bytes) -> None:
        if self.rejected:
            return
        try:
            frames = self._splitter.feed(data)
        except LlrpFrameError as err:
            _LOGGER.warning("LLRP simulator: unparseable frame from the client (%s); closing", err)
            self._sim.errors.append(str(err))
            self.send(llrp.encode_error_message(0, Status.FIELD_ERROR, str(err)), force=True)
            self.close()
            return
        for frame in frames:
            self._sim._on_frame(self, frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._splitter.pending:
            message = f"client connection ended inside a frame ({self._splitter.pending} bytes)"
            _LOGGER.warning("LLRP simulator: %s", message)
            self._sim.errors.append(message)
        if self.keepalive_task is not None:
            self.keepalive_task.cancel()
        self._sim._on_disconnect(self)

    def send(self, data: bytes, *, force: bool = False) -> None:
        """Write to the client unless the simulator is silent (``force`` ignores silence)."""
        if self.transport is None or self.transport.is_closing():
            return
        if self._sim.silent and not force:
            return
        self.transport.write(data)

    def close(self) -> None:
        """Close after flushing what is buffered."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once (RST), as a crashing reader would."""
        if self.transport is not None:
            self.transport.abort()


class ReaderSimulator:
    """An LLRP reader on ``host:port`` (port 0 = pick a free one) reporting reads from ``reads``.

    Use as ``async with ReaderSimulator(...) as sim:``; ``sim.port`` is the bound port.
    ``reboots`` are (scenario seconds, down seconds) pairs run on the scenario clock.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reads: Iterable[TagRead] | None = None,
        start_us: int | None = None,
        speed: float = 1.0,
        reboots: Sequence[tuple[float, float]] = (),
        model: llrp.ReaderModel | None = None,
        report_interval_s: float = 0.05,
        max_reads_per_report: int = 256,
        epc_data: bool = False,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.host = host
        self._port = port
        self.model = model or llrp.ReaderModel()
        self.speed = speed
        self.report_interval_s = report_interval_s
        self.max_reads_per_report = max_reads_per_report
        self.epc_data = epc_data
        self._reads: Iterator[TagRead] = iter(reads or ())
        self._next_read: TagRead | None = None
        self.start_us = start_us if start_us is not None else time.time_ns() // 1000
        self._reboots = tuple(reboots)
        self._origin = time.monotonic()
        self._server: asyncio.Server | None = None
        self._client: _Connection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pump_task: asyncio.Task[None] | None = None
        self._rospecs: dict[int, _RoSpec] = {}
        self._injected: collections.deque[TagRead] = collections.deque()
        self._msg_id = 0
        self._inventorying = asyncio.Event()
        self._up = asyncio.Event()
        # knobs
        self.silent = False
        # observations for tests
        self.connections = 0
        self.keepalives_sent = 0
        self.keepalive_acks = 0
        self.keepalive_ms = 0
        self.reads_sent = 0
        self.reads_dropped = 0
        self.reports_sent = 0
        self.errors: collections.deque[str] = collections.deque(maxlen=100)
        self.received: collections.deque[str] = collections.deque(maxlen=1000)  # message names
        self.last_rospec: llrp.RoSpecInfo | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the simulator listens on."""
        return self._port

    @property
    def inventorying(self) -> bool:
        """Whether a client is connected and an ROSpec is active."""
        return self._inventorying.is_set()

    def scenario_now_us(self) -> int:
        """The scenario clock now (µs since the Unix epoch, in scenario time)."""
        return self.start_us + int((time.monotonic() - self._origin) * self.speed * 1e6)

    async def __aenter__(self) -> ReaderSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen, and start the scenario clock if reads were given."""
        await self._listen()
        self._pump_task = asyncio.create_task(self._pump(), name=f"llrp-sim-pump-{self._port}")
        self.play(self._reads, self.start_us, self._reboots)

    def play(
        self,
        reads: Iterable[TagRead],
        start_us: int,
        reboots: Sequence[tuple[float, float]] = (),
        *,
        speed: float | None = None,
    ) -> None:
        """Play ``reads`` from now on: scenario time ``start_us`` is now (restarts the clock).

        Tests call this once the client is inventorying, so that no read falls due before.
        ``speed`` replaces the simulator's speed if given.
        """
        if speed is not None:
            if speed <= 0:
                raise ValueError(f"speed must be > 0, got {speed}")
            self.speed = speed
        for task in [t for t in self._tasks if t.get_name() == _SCRIPTED_REBOOT]:
            task.cancel()
        self._reads = iter(reads)
        self._next_read = None
        self.start_us = start_us
        self._origin = time.monotonic()
        for at_s, down_s in sorted(reboots):
            self._spawn(self._scripted_reboot(at_s, down_s), _SCRIPTED_REBOOT)

    async def close(self) -> None:
        """Stop everything; the port is free afterwards."""
        tasks = [*self._tasks, *([self._pump_task] if self._pump_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._pump_task = None
        await self._stop_listening()

    async def wait_inventorying(self, within_s: float = 10.0) -> None:
        """Wait until a client has an active ROSpec (TimeoutError after ``within_s``)."""
        await asyncio.wait_for(self._inventorying.wait(), within_s)

    async def wait_up(self, within_s: float = 30.0) -> None:
        """Wait until the simulator listens again after a reboot."""
        await asyncio.wait_for(self._up.wait(), within_s)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._up.set()

    async def _stop_listening(self) -> None:
        self._up.clear()
        if self._client is not None:
            self._client.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- knobs -----------------------------------------------------------------------------

    def drop_connection(self) -> None:
        """Reset the current client connection (the reader keeps its ROSpecs)."""
        if self._client is not None:
            _LOGGER.info("LLRP simulator: dropping the client connection")
            self._client.abort()

    async def reboot(self, down_s: float) -> None:
        """Drop the client, refuse connections for ``down_s``, come back with no ROSpecs."""
        _LOGGER.info("LLRP simulator: rebooting, down for %.1f s", down_s)
        await self._stop_listening()
        self._rospecs.clear()
        self._update_inventorying()
        await asyncio.sleep(down_s)
        await self._listen()
        _LOGGER.info("LLRP simulator: back up on port %d", self._port)

    async def _scripted_reboot(self, at_s: float, down_s: float) -> None:
        delay = at_s / self.speed - (time.monotonic() - self._origin)
        await asyncio.sleep(max(0.0, delay))
        await self.reboot(down_s / self.speed)

    def inject(self, reads: Iterable[TagRead]) -> None:
        """Report these reads at the next tick (dropped if nobody is inventorying then)."""
        self._injected.extend(reads)

    def send_malformed_report(self) -> None:
        """An RO_ACCESS_REPORT whose last TagReportData ends inside a TV field."""
        good = llrp.encode_tag_report_data(
            TagRead("", 1, bytes(12), -50.0, self.scenario_now_us(), 1), llrp.ContentSelector(), 1
        )
        bad_body = llrp.tlv(llrp.Par.EPC_DATA, b"\x00\x60" + bytes(12)) + b"\x81\x00"
        bad = llrp.tlv(llrp.Par.TAG_REPORT_DATA, bad_body)
        self._send_now(llrp.encode_frame(Msg.RO_ACCESS_REPORT, self._next_id(), good + bad))

    def send_truncated_report(self) -> None:
        """An RO_ACCESS_REPORT whose header promises more bytes than are sent."""
        frame = llrp.encode_ro_access_report(
            self._next_id(),
            [TagRead("", 1, bytes(12), -50.0, self.scenario_now_us(), 1)] * 4,
            llrp.ContentSelector(),
            1,
        )
        self._send_now(frame[: len(frame) // 2])

    def _send_now(self, data: bytes) -> None:
        if self._client is not None:
            self._client.send(data, force=True)

    # --- protocol --------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._msg_id = (self._msg_id + 1) & 0xFFFFFFFF
        return self._msg_id

    def _on_connect(self, conn: _Connection) -> None:
        now_us = time.time_ns() // 1000
        if self._client is not None:
            _LOGGER.warning("LLRP simulator: refusing a second client connection")
            conn.rejected = True
            conn.send(llrp.encode_connection_event(self._next_id(), now_us, status=2), force=True)
            conn.close()
            return
        self._client = conn
        self.connections += 1
        _LOGGER.info("LLRP simulator: client connected (connection %d)", self.connections)
        conn.send(llrp.encode_connection_event(self._next_id(), now_us))

    def _on_disconnect(self, conn: _Connection) -> None:
        if self._client is conn:
            self._client = None
            _LOGGER.info("LLRP simulator: client disconnected")
            self._update_inventorying()

    def _update_inventorying(self) -> None:
        active = self._client is not None and any(r.active for r in self._rospecs.values())
        if active:
            self._inventorying.set()
        else:
            self._inventorying.clear()

    def _on_frame(self, conn: _Connection, frame: Frame) -> None:
        self.received.append(frame.name)
        if frame.version != llrp.VERSION:
            conn.send(
                llrp.encode_error_message(
                    frame.message_id,
                    Status.UNSUPPORTED_VERSION,
                    f"LLRP version {frame.version} is not supported (only 1)",
                )
            )
            return
        try:
            self._dispatch(conn, frame)
        except LlrpFrameError as err:
            _LOGGER.warning("LLRP simulator: bad %s from the client: %s", frame.name, err)
            self.errors.append(f"{frame.name}: {err}")
            response = llrp.RESPONSE_TO.get(frame.msg_type)
            if response is None:
                conn.send(
                    llrp.encode_error_message(frame.message_id, Status.PARAMETER_ERROR, str(err))
                )
            else:
                conn.send(
                    llrp.encode_status_response(
                        response, frame.message_id, Status.PARAMETER_ERROR, str(err)
                    )
                )
        self._update_inventorying()

    def _dispatch(self, conn: _Connection, frame: Frame) -> None:
        mid = frame.message_id
        t = frame.msg_type
        if t == Msg.KEEPALIVE_ACK:
            self.keepalive_acks += 1
        elif t == Msg.GET_READER_CAPABILITIES:
            conn.send(llrp.encode_capabilities_response(mid, self.model))
        elif t == Msg.GET_READER_CONFIG:
            conn.send(llrp.encode_reader_config_response(mid, self.model, self.keepalive_ms))
        elif t == Msg.SET_READER_CONFIG:
            keepalive_ms = llrp.parse_keepalive_ms(frame.body)
            if keepalive_ms is not None:
                self._set_keepalive(conn, keepalive_ms)
            conn.send(llrp.encode_status_response(Msg.SET_READER_CONFIG_RESPONSE, mid))
        elif t == Msg.ENABLE_EVENTS_AND_REPORTS:
            pass  # no response defined; events and reports already flow
        elif t == Msg.ADD_ROSPEC:
            info = llrp.parse_add_rospec(frame.body)
            if info.rospec_id == 0 or info.rospec_id in self._rospecs:
                conn.send(
                    llrp.encode_status_response(
                        Msg.ADD_ROSPEC_RESPONSE,
                        mid,
                        Status.A_INVALID,
                        f"ROSpecID {info.rospec_id} is 0 or already exists",
                    )
                )
                return
            self._rospecs[info.rospec_id] = _RoSpec(info)
            self.last_rospec = info
            conn.send(llrp.encode_status_response(Msg.ADD_ROSPEC_RESPONSE, mid))
        elif t in (
            Msg.ENABLE_ROSPEC,
            Msg.START_ROSPEC,
            Msg.STOP_ROSPEC,
            Msg.DISABLE_ROSPEC,
            Msg.DELETE_ROSPEC,
        ):
            self._rospec_op(conn, frame)
        elif t in _REPLIED_WITH_STATUS:
            conn.send(llrp.encode_status_response(llrp.RESPONSE_TO[t], mid))
        elif t == Msg.CLOSE_CONNECTION:
            conn.send(llrp.encode_status_response(Msg.CLOSE_CONNECTION_RESPONSE, mid))
            conn.close()
        elif (
            t == Msg.CUSTOM_MESSAGE
            and frame.vendor_id == llrp.VENDOR_IMPINJ
            and frame.subtype == 21
        ):
            conn.send(
                llrp.encode_frame(
                    Msg.CUSTOM_MESSAGE,
                    mid,
                    llrp.llrp_status(),
                    vendor_id=llrp.VENDOR_IMPINJ,
                    subtype=22,
                )
            )
        else:
            _LOGGER.warning("LLRP simulator: unsupported message %s", frame.name)
            conn.send(
                llrp.encode_error_message(
                    mid, Status.UNSUPPORTED_MESSAGE, f"message {frame.name} is not supported"
                )
            )

    def _rospec_op(self, conn: _Connection, frame: Frame) -> None:
        t = Msg(frame.msg_type)
        rospec_id = llrp.parse_rospec_id(frame.body, t.name)
        response = llrp.RESPONSE_TO[t]
        if rospec_id == 0:
            targets = list(self._rospecs.values())
        elif rospec_id in self._rospecs:
            targets = [self._rospecs[rospec_id]]
        else:
            conn.send(
                llrp.encode_status_response(
                    response, frame.message_id, Status.A_INVALID, f"no ROSpec {rospec_id}"
                )
            )
            return
        for spec in targets:
            if t == Msg.ENABLE_ROSPEC:
                spec.enabled = True
                spec.active = spec.active or spec.info.start_immediate
            elif t == Msg.START_ROSPEC:
                spec.enabled = spec.active = True
            elif t == Msg.STOP_ROSPEC:
                spec.active = False
            elif t == Msg.DISABLE_ROSPEC:
                spec.enabled = spec.active = False
        if t == Msg.DELETE_ROSPEC:
            for spec in targets:
                del self._rospecs[spec.info.rospec_id]
        conn.send(llrp.encode_status_response(response, frame.message_id))

    def _set_keepalive(self, conn: _Connection, keepalive_ms: int) -> None:
        self.keepalive_ms = keepalive_ms
        if conn.keepalive_task is not None:
            conn.keepalive_task.cancel()
            conn.keepalive_task = None
        if keepalive_ms > 0:
            conn.keepalive_task = asyncio.create_task(
                self._keepalives(conn, keepalive_ms / 1000), name="llrp-sim-keepalive"
            )

    async def _keepalives(self, conn: _Connection, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if not self.silent:
                self.keepalives_sent += 1
                conn.send(llrp.encode_keepalive(self._next_id()))

    # --- reports ---------------------------------------------------------------------------

    def _due_reads(self, now_us: int) -> list[TagRead]:
        due: list[TagRead] = []
        nxt = self._next_read
        if nxt is None:
            nxt = next(self._reads, None)
        while nxt is not None and nxt.seen_at_us <= now_us:
            due.append(nxt)
            nxt = next(self._reads, None)
        self._next_read = nxt
        return due

    async def _pump(self) -> None:
        while True:
            await asyncio.sleep(self.report_interval_s)
            due = self._due_reads(self.scenario_now_us())
            if self._injected:
                due.extend(self._injected)
                self._injected.clear()
            if not due:
                continue
            conn = self._client
            spec = next((r for r in self._rospecs.values() if r.active), None)
            if conn is None or spec is None or self.silent:
                self.reads_dropped += len(due)
                continue
            antennas = spec.info.antennas
            if antennas:
                kept = [r for r in due if r.antenna in antennas]
                self.reads_dropped += len(due) - len(kept)
                due = kept
            step = self.max_reads_per_report
            for i in range(0, len(due), step):
                chunk = due[i : i + step]
                conn.send(
                    llrp.encode_ro_access_report(
                        self._next_id(),
                        chunk,
                        spec.info.selector,
                        spec.info.rospec_id,
                        epc_data=self.epc_data,
                    )
                )
                self.reports_sent += 1
            self.reads_sent += len(due)


# --- command line ----------------------------------------------------------------------------


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen must be HOST:PORT, got {value!r}")
    return host, int(port)


DESCRIPTION = "Run an LLRP reader simulator playing a scripted scenario."


def add_arguments(parser: argparse.ArgumentParser, *, listen_required: bool = False) -> None:
    """The simulator's options (also ``storelink-agent rfid simulate``'s, where --listen is
    required)."""
    parser.add_argument(
        "--listen",
        type=_parse_listen,
        required=listen_required,
        default=("127.0.0.1", 5084),
        help="HOST:PORT to listen on" + ("" if listen_required else " (default 127.0.0.1:5084)"),
    )
    parser.add_argument(
        "--scenario",
        choices=sorted(SCENARIOS),
        default="fitting-rooms",
        help="scripted scenario to play (default fitting-rooms)",
    )
    parser.add_argument(
        "--reader", default=None, help="which of the scenario's readers to play (default the first)"
    )
    parser.add_argument("--seed", type=int, default=1, help="scenario random seed")
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="scenario seconds per wall-clock second (default 1)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many wall-clock seconds (default: until Ctrl-C)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The simulator's command line when run alone."""
    parser = argparse.ArgumentParser(
        prog="python -m drivers.rfid.simulator", description=DESCRIPTION
    )
    add_arguments(parser)
    return parser


async def _run(args: argparse.Namespace) -> None:
    host, port = args.listen
    # endless, with timestamps from now: a demo or bench runs it for as long as it likes
    scenario = SCENARIOS[args.scenario](
        seed=args.seed, start_us=time.time_ns() // 1000, duration_s=None
    )
    reader = args.reader or scenario.readers[0]
    if reader not in scenario.readers:
        raise SystemExit(f"--reader {reader!r} is not one of {', '.join(scenario.readers)}")
    sim = ReaderSimulator(
        host,
        port,
        reads=scenario.reads_for(reader),
        start_us=scenario.start_us,
        speed=args.speed,
        reboots=scenario.reboots_for(reader),
    )
    async with sim:
        print(
            f"LLRP reader simulator '{reader}' listening on {host}:{sim.port} "
            f"(scenario {args.scenario}, seed {args.seed}, speed {args.speed}x)",
            flush=True,
        )
        if args.duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(args.duration)


def run(args: argparse.Namespace) -> int:
    """Run the simulator the parsed options describe until Ctrl-C (or --duration); exit 0."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m drivers.rfid.simulator``; returns the exit status."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
