"""``LlrpReader``: one fitting-room reader through sllurp's LLRP client, bridged into asyncio.

sllurp's ``LLRPReaderClient`` owns a blocking socket and a thread of its own that decodes frames
and calls back from that thread. This module keeps all of that off the event loop:

- connecting (a blocking TCP connect) and disconnecting (which joins sllurp's thread) run in
  ``asyncio.to_thread``;
- sllurp's tag-report callback turns each RO_ACCESS_REPORT into one ``list[TagRead]`` on
  sllurp's thread and hands it to the loop with ``call_soon_threadsafe`` - one ``on_reads``
  call per report, so 4 readers x 1,100 reads/s costs a few dozen loop callbacks a second;
- a watchdog on the loop notices what sllurp does not: a reader that goes silent (no KEEPALIVE
  or report for ``2.5 x keepalive_s``), a session that never reaches inventory, and sllurp's
  thread dying on a frame it cannot decode (sllurp catches only its own ``LLRPError``; a
  ``struct.error`` from a truncated field ends its thread without any callback).

A fresh sllurp client is made for every connection (sllurp's own reconnect is off: its retry
delay is a fixed 60 s and it does not re-run the session setup we rely on). A reader that is
known by an advertised name rather than an address gets a ``resolve`` function: it is asked
for the current host and port before every connection attempt, so a reader that moved (a new
DHCP lease) is followed; a failed look-up counts as a failed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sllurp.llrp import LLRPReaderClient, LLRPReaderConfig, LLRPReaderState
from sllurp.llrp_errors import ReaderConfigurationError

from drivers.rfid.reads import TagRead

_LOGGER = logging.getLogger(__name__)

__all__ = ["LlrpReader", "TagRead"]

# sllurp's LLRPReaderConfig defaults leave AntennaID and PeakRSSI out of tag reports; we need
# every field (the ROSpec's TagReportContentSelector is built from this).
_CONTENT_SELECTOR = {
    "EnableROSpecID": True,
    "EnableSpecIndex": False,
    "EnableInventoryParameterSpecID": False,
    "EnableAntennaID": True,
    "EnableChannelIndex": False,
    "EnablePeakRSSI": True,
    "EnableFirstSeenTimestamp": True,
    "EnableLastSeenTimestamp": True,
    "EnableTagSeenCount": True,
    "EnableAccessSpecID": False,
}
_MISSING_RSSI_DBM = -128.0  # the weakest value LLRP's PeakRSSI can carry
_KEEPALIVE_MISSES = 2.5  # silence longer than this many keepalive periods = reader gone
_CONNECT_TIMEOUT_S = 5.0
_POLITE_STOP_S = 1.0
_JOIN_S = 3.0


class _SllurpClient(LLRPReaderClient):  # type: ignore[misc]
    """sllurp's client with its connect fixed.

    sllurp 3.0.5's ``_connect_socket`` drops the socket without closing it when the connect
    fails (a ResourceWarning per attempt while a reader is down) and only knows IPv4.
    ``socket.create_connection`` closes on failure and resolves names; the rest is sllurp's.
    """

    _socket: socket.socket | None
    _host: str
    _port: int
    _socktimeout: float

    def _connect_socket(self) -> bool:
        if self._socket is not None:
            raise ReaderConfigurationError("Already connected")
        sock = socket.create_connection((self._host, self._port), timeout=self._socktimeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket = sock
        return True


def tag_reads_from_report(
    reader: str, tags: Sequence[dict[str, Any]], now_us: int
) -> tuple[list[TagRead], int]:
    """sllurp's decoded TagReportData dicts as TagReads, and how many had no usable EPC."""
    reads: list[TagRead] = []
    bad = 0
    for tag in tags:
        try:
            epc_hex = tag.get("EPC") or tag["EPC-96"]
            seen = tag.get("LastSeenTimestampUTC") or tag.get("FirstSeenTimestampUTC") or now_us
            reads.append(
                TagRead(
                    reader=reader,
                    antenna=int(tag.get("AntennaID", 0)),
                    epc=bytes.fromhex(epc_hex.decode("ascii")),
                    rssi=float(tag.get("PeakRSSI", _MISSING_RSSI_DBM)),
                    seen_at_us=int(seen),
                    count=int(tag.get("TagSeenCount", 1)),
                )
            )
        except (KeyError, ValueError, TypeError, AttributeError):
            bad += 1
    return reads, bad


def nearest_power_index(table: Sequence[float], dbm: float) -> int | None:
    """The 1-based index of the power table entry nearest ``dbm`` (the lower one on a tie).

    ``table`` is sllurp's ``tx_power_table``: ``[0, dBm of index 1, dBm of index 2, ...]``.
    None if the reader announced no power table.
    """
    if len(table) < 2:
        return None
    return min(range(1, len(table)), key=lambda i: (abs(table[i] - dbm), table[i]))


class LlrpReader:
    """One LLRP reader: connect, inventory, reconnect with capped jittered backoff.

    ``on_reads`` gets one list per RO_ACCESS_REPORT and ``on_state(available, why)`` each time
    availability changes (the first failed connection counts as a change to unavailable), both
    on the event loop thread. Power in dBm is mapped to the index of the nearest entry of the
    power table the reader announces in its capabilities (None: the table's maximum).
    ``search_mode`` is Impinj's inventory search mode (2 = dual target); None leaves Impinj
    extensions off, for non-Impinj readers. ``resolve``, when given, returns the reader's
    current ``(host, port)`` before each connection attempt and replaces ``host``/``port``;
    it must bound its own time (it is awaited as it is) and any exception it raises counts
    as a failed connection.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int = 5084,
        *,
        antennas: Sequence[int] = (1,),
        tx_power_dbm: float | None = None,
        session: int = 2,
        search_mode: int | None = 2,
        tag_population: int = 16,
        keepalive_s: float = 5.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        on_reads: Callable[[list[TagRead]], None],
        on_state: Callable[[bool, str], None],
        resolve: Callable[[], Awaitable[tuple[str, int]]] | None = None,
    ) -> None:
        if not antennas or any(a < 1 for a in antennas):
            raise ValueError(f"reader {name!r}: antennas must be 1-based ids, got {antennas!r}")
        if keepalive_s <= 0:
            raise ValueError(f"reader {name!r}: keepalive_s must be > 0, got {keepalive_s}")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ValueError(
                f"reader {name!r}: need 0 < reconnect_min_s <= reconnect_max_s, "
                f"got {reconnect_min_s} and {reconnect_max_s}"
            )
        self.name = name
        self.host = host
        self.port = port
        self.antennas = tuple(antennas)
        self.tx_power_dbm = tx_power_dbm
        self.session = session
        self.search_mode = search_mode
        self.tag_population = tag_population
        self.keepalive_s = keepalive_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self._on_reads = on_reads
        self._on_state = on_state
        self._resolve = resolve
        self._resolved = False  # whether resolve has answered once (later answers may move it)
        self._available: bool | None = None
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not security
        # Written by sllurp's thread, read by the loop (single attribute stores under the GIL).
        self._last_rx = 0.0
        self._inventorying = False

    @property
    def available(self) -> bool:
        """Whether the reader is connected and inventorying."""
        return self._available is True

    def _set_available(self, available: bool, why: str) -> None:
        if self._available == available:
            _LOGGER.debug("reader %s still %s: %s", self.name, "up" if available else "down", why)
            return
        self._available = available
        if available:
            _LOGGER.info("RFID reader %s available: %s", self.name, why)
        else:
            _LOGGER.warning("RFID reader %s unavailable: %s", self.name, why)
        try:
            self._on_state(available, why)
        except Exception:
            _LOGGER.exception("RFID reader %s: on_state callback failed", self.name)

    def _config(self) -> LLRPReaderConfig:
        settings: dict[str, Any] = {
            "antennas": list(self.antennas),
            "tx_power": 0,  # 0 = the table's maximum, unless tx_power_dbm picks an entry
            "session": self.session,
            "tag_population": self.tag_population,
            "report_every_n_tags": 1,
            "tag_content_selector": dict(_CONTENT_SELECTOR),
            "impinj_search_mode": self.search_mode,
            "keepalive_interval": max(1, round(self.keepalive_s * 1000)),
            "reconnect": False,
            "start_inventory": True,
            "reset_on_connect": True,
        }
        # tx_power_dbm is not handed to sllurp: its mapping takes the entry below the request
        # and, below the table's minimum, silently falls back to index 0 = maximum power.
        return LLRPReaderConfig(settings)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.reconnect_max_s, self.reconnect_min_s * 2**attempt)
        return self._rng.uniform(max(self.reconnect_min_s, ceiling / 2), ceiling)

    async def run(self) -> None:
        """Connect, inventory, reconnect with capped jittered backoff; until cancelled."""
        attempt = 0
        while True:
            why = await self._session()
            self._set_available(False, why)
            attempt = 0 if self._inventorying else attempt + 1
            delay = self._backoff(attempt)
            _LOGGER.debug("reader %s: reconnecting in %.2f s", self.name, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> str:
        """One connection from connect to loss; returns why it ended."""
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[str] = loop.create_future()  # why the connection ended
        self._inventorying = False
        if self._resolve is not None:
            try:
                await self._follow(self._resolve)
            except Exception as err:  # whatever the look-up raises: not found, mDNS down, ...
                return f"cannot find the reader: {err}"
        self._last_rx = time.monotonic()
        client = _SllurpClient(self.host, self.port, self._config(), timeout=_CONNECT_TIMEOUT_S)

        def on_report(_client: LLRPReaderClient, tags: list[dict[str, Any]]) -> None:
            # sllurp's thread
            self._last_rx = time.monotonic()
            reads, bad = tag_reads_from_report(self.name, tags, time.time_ns() // 1000)
            if reads or bad:
                loop.call_soon_threadsafe(self._deliver, reads, bad)

        def on_keepalive(_client: LLRPReaderClient, _msg: object) -> None:
            self._last_rx = time.monotonic()

        def on_capabilities(_client: LLRPReaderClient, _state: int) -> None:
            # sllurp's thread, after it parsed the capabilities, before it builds the ROSpec
            if self.tx_power_dbm is None:
                return
            index = nearest_power_index(client.llrp.tx_power_table, self.tx_power_dbm)
            if index is not None:
                for antenna in self.antennas:
                    client.config.tx_power[antenna] = index

        def on_inventorying(_client: LLRPReaderClient, _state: int) -> None:
            self._last_rx = time.monotonic()
            loop.call_soon_threadsafe(self._inventory_started)

        def on_disconnected(_client: LLRPReaderClient) -> None:
            why = (
                "connection closed"
                if self._inventorying
                else "session setup failed (sllurp rejected the reader's capabilities or "
                "answers, e.g. an antenna the reader does not have; see sllurp's log)"
            )
            loop.call_soon_threadsafe(_mark_lost, why)

        def _mark_lost(why: str) -> None:
            if not lost.done():
                lost.set_result(why)

        client.add_tag_report_callback(on_report)
        client.add_message_callback("KEEPALIVE", on_keepalive)
        client.add_state_callback(LLRPReaderState.STATE_SENT_GET_CONFIG, on_capabilities)
        client.add_state_callback(LLRPReaderState.STATE_INVENTORYING, on_inventorying)
        client.add_disconnected_callback(on_disconnected)

        connecting = asyncio.ensure_future(asyncio.to_thread(client.connect))
        try:
            await asyncio.shield(connecting)
        except asyncio.CancelledError:
            # The connect thread cannot be interrupted: let it finish, then shut down.
            with contextlib.suppress(Exception):
                await connecting
            await asyncio.to_thread(self._close_client, client, False)
            raise
        except Exception as err:  # sllurp raises plain socket errors (OSError) here
            await asyncio.to_thread(self._close_client, client, False)
            return f"cannot connect to {self.host}:{self.port}: {err}"

        polite = True
        try:
            why = await self._watch(client, lost)
            polite = False
            return why
        finally:
            await asyncio.to_thread(self._close_client, client, polite)

    async def _follow(self, resolve: Callable[[], Awaitable[tuple[str, int]]]) -> None:
        """Ask ``resolve`` where the reader is now, and connect there from now on."""
        host, port = await resolve()
        if not self._resolved:
            _LOGGER.debug("reader %s is at %s:%d", self.name, host, port)
        elif (host, port) != (self.host, self.port):
            _LOGGER.info(
                "RFID reader %s moved from %s:%d to %s:%d",
                self.name,
                self.host,
                self.port,
                host,
                port,
            )
        self._resolved = True
        self.host, self.port = host, port

    async def _watch(self, client: LLRPReaderClient, lost: asyncio.Future[str]) -> str:
        started = time.monotonic()
        silence_s = _KEEPALIVE_MISSES * self.keepalive_s
        setup_s = max(10.0, silence_s)
        tick = min(0.5, self.keepalive_s / 4)
        while True:
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(lost), tick)
            if not client.is_alive():
                return "sllurp's connection thread ended (undecodable frame from the reader?)"
            now = time.monotonic()
            if self._inventorying:
                if now - self._last_rx > silence_s:
                    return f"no keepalive or report for {now - self._last_rx:.1f} s"
            elif now - started > setup_s:
                return f"reader did not start inventory within {setup_s:.0f} s"

    def _inventory_started(self) -> None:
        self._inventorying = True
        self._set_available(True, f"inventorying on {self.host}:{self.port}")

    def _deliver(self, reads: list[TagRead], bad: int) -> None:
        if bad:
            _LOGGER.debug("reader %s: %d tag reports without a usable EPC", self.name, bad)
        if not reads:
            return
        try:
            self._on_reads(reads)
        except Exception:
            _LOGGER.exception("RFID reader %s: on_reads callback failed", self.name)

    @staticmethod
    def _close_client(client: LLRPReaderClient, polite: bool) -> None:
        """Stop sllurp's thread and close its socket (blocking; runs in a worker thread)."""
        if polite and client.is_alive():
            # DELETE_ACCESSSPEC + DELETE_ROSPEC, then sllurp closes from its own thread.
            with contextlib.suppress(Exception):
                client.disconnect(timeout=_POLITE_STOP_S)
        client.hard_disconnect()  # a no-op when sllurp already closed
        client.join(_JOIN_S)
