"""An RFID reader configured by its advertised mDNS name (``dnssd://NAME._llrp._tcp.local``):
config, the driver's look-up before each connect, and the agent following a reader that moved.

mDNS runs on 127.0.0.1 only (the ``advertiser`` and ``mdns_loopback`` fixtures); readers are the
LLRP simulator, spoken to by the real sllurp client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from pydantic import ValidationError

from agent.config import parse_config
from agent.db import DB_FILE
from agent.discovery import LLRP_READER, Found, NotFound, config_lines, reader_address
from agent.rfid.config import ReaderConfig
from drivers.rfid.reader import LlrpReader
from drivers.rfid.simulator import ReaderSimulator
from tests.agent.conftest import start_agent
from tests.helpers import agent_toml, free_port
from tests.ops_lan.conftest import Advertiser, unique
from tests.rfid.streams import DRESS, JACKET, stream

ROOMS = {"1": "room-1"}


def reader(host: str) -> ReaderConfig:
    return ReaderConfig.model_validate({"name": "fr", "host": host, "rooms": ROOMS})


@pytest.mark.parametrize(
    "host",
    [
        "dnssd://Speedway R420 12-34-56._llrp._tcp.local",
        "dnssd://Speedway%20R420%2012-34-56._llrp._tcp.local.",
        "DNSSD://Speedway R420 12-34-56._llrp._tcp.local.",
    ],
)
def test_dnssd_reader_host_names_an_llrp_service(host: str) -> None:
    config = reader(host)
    assert config.service_name == "Speedway R420 12-34-56._llrp._tcp.local."
    with pytest.raises(ValueError, match="looked up over mDNS"):
        _ = config.address
    assert reader("192.0.2.5").service_name is None
    assert reader("192.0.2.5").address == ("192.0.2.5", 5084)


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("dnssd://Front._pdl-datastream._tcp.local", "expected dnssd://NAME._llrp._tcp.local"),
        ("dnssd://._llrp._tcp.local", "expected dnssd://NAME._llrp._tcp.local"),
        ("dnssd://reader-1", "expected dnssd://NAME._llrp._tcp.local"),
        ("dnssd://", "expected dnssd://NAME._llrp._tcp.local"),
        (f"dnssd://{'x' * 64}._llrp._tcp.local", "longer than 63 bytes"),
    ],
)
def test_bad_dnssd_reader_host_is_an_error_naming_host(host: str, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        reader(host)
    text = str(caught.value)
    assert "host" in text
    assert problem in text


def test_discover_lines_name_a_reader_by_its_advertised_name() -> None:
    with_address = Found(LLRP_READER, "Speedway R420 12-34-56", "192.0.2.7", 5084)
    without = Found(LLRP_READER, "FX9600 aa", None, None)
    lines = config_lines([with_address, without])
    dnssd = "dnssd://Speedway%20R420%2012-34-56._llrp._tcp.local"
    assert 'host = "192.0.2.7:5084"' in lines
    assert f'# or by advertised name, followed to a new address: host = "{dnssd}"' in lines
    # No address came back: the name is the only way to reach it (not an invalid "?").
    assert 'host = "dnssd://FX9600%20aa._llrp._tcp.local"' in lines
    # The commented name, uncommented, is a valid reader.
    pasted = reader(dnssd)
    assert pasted.service_name == "Speedway R420 12-34-56._llrp._tcp.local."


async def test_reader_address_looks_up_a_dnssd_reader(
    advertiser: Advertiser, mdns_loopback: str
) -> None:
    name = unique("Speedway R420")
    port = free_port()
    await advertiser.publish(LLRP_READER, name, port)
    found = await asyncio.to_thread(
        reader_address, reader(f"dnssd://{name}._llrp._tcp.local"), [mdns_loopback]
    )
    assert found == ("127.0.0.1", port)
    assert await asyncio.to_thread(reader_address, reader("192.0.2.5:15084")) == (
        "192.0.2.5",
        15084,
    )
    with pytest.raises(NotFound):
        await asyncio.to_thread(
            reader_address, reader("dnssd://nobody here._llrp._tcp.local"), [mdns_loopback], 0.5
        )


@contextlib.asynccontextmanager
async def running(driver: LlrpReader) -> AsyncIterator[None]:
    task = asyncio.create_task(driver.run(), name=f"reader-{driver.name}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(cond: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < deadline, f"not within {within_s} s"
        await asyncio.sleep(0.02)


async def test_failed_lookup_is_a_failed_connect_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    states: list[tuple[bool, str]] = []
    lookups: list[float] = []

    async with ReaderSimulator() as sim:

        async def resolve() -> tuple[str, int]:
            lookups.append(time.monotonic())
            if len(lookups) <= 3:
                raise NotFound("no answer for 'fr._llrp._tcp.local.' within 3 s")
            return "127.0.0.1", sim.port

        driver = LlrpReader(
            "fr",
            "fr._llrp._tcp.local.",
            keepalive_s=0.4,
            reconnect_min_s=0.1,
            reconnect_max_s=0.4,
            on_reads=lambda _reads: None,
            on_state=lambda up, why: states.append((up, why)),
            resolve=resolve,
        )
        with caplog.at_level(logging.DEBUG, logger="drivers.rfid.reader"):
            async with running(driver):
                await sim.wait_inventorying(10)
                await until(lambda: driver.available, 5)
    assert states[0] == (
        False,
        "cannot find the reader: no answer for 'fr._llrp._tcp.local.' within 3 s",
    )
    assert [up for up, _ in states] == [False, True]
    assert states[1][1] == f"inventorying on 127.0.0.1:{sim.port}"
    # Three failed look-ups, each followed by the reader's backoff, then the connect.
    assert len(lookups) == 4
    gaps = [b - a for a, b in itertools.pairwise(lookups)]
    assert all(gap >= 0.09 for gap in gaps), gaps
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "RFID reader fr unavailable: cannot find the reader: no answer for "
        "'fr._llrp._tcp.local.' within 3 s"
    ]


async def _rows(db_path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with aiosqlite.connect(db_path) as conn:
        return [tuple(row) for row in await conn.execute_fetchall(sql, args)]


async def _wait_rows(db_path: Path, sql: str, *args: Any, within_s: float) -> list[tuple[Any, ...]]:
    """Poll a query on the agent's database until it returns rows."""
    deadline = time.monotonic() + within_s
    while True:
        rows = await _rows(db_path, sql, *args)
        if rows or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)


def _play(sim: ReaderSimulator, epc: bytes) -> None:
    """Three seconds of one garment on antenna 1, from now."""
    now = time.time_ns() // 1000
    sim.play(stream("fr", epc, 0.1, 3.0, origin_us=now), now)


async def test_reader_named_by_dnssd_is_followed_to_its_new_port(
    tmp_path: Path,
    advertiser: Advertiser,
    mdns_loopback: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = unique("Speedway R420")
    extra = (
        f'[discovery]\nadvertise = false\ninterfaces = ["{mdns_loopback}"]\n'
        "resolve_timeout_s = 1.0\n"
        "[rfid]\n"
        f'[[rfid.readers]]\nname = "fr"\nhost = "dnssd://{name}._llrp._tcp.local"\n'
        'rooms = { "1" = "room-1" }\nkeepalive_s = 1.0\n'
    )
    text = agent_toml(tmp_path / "data", free_port(), None, extra=extra)
    config = await asyncio.to_thread(parse_config, tomllib.loads(text))
    db_path = config.store.data_dir / DB_FILE
    status = "SELECT available, detail FROM device_status WHERE kind = 'rfid' AND name = 'fr'"
    reads_of = "SELECT sum(reads) FROM rfid_reads WHERE reader = 'fr' AND epc = ? HAVING sum(reads)"
    first = await ReaderSimulator(port=free_port()).__aenter__()
    first_open = True
    try:
        info = await advertiser.publish(LLRP_READER, name, first.port)
        with caplog.at_level(logging.INFO):
            async with start_agent(config):
                await first.wait_inventorying(10)
                _play(first, JACKET)
                assert await _wait_rows(db_path, reads_of, JACKET.hex().upper(), within_s=8)
                assert await _rows(db_path, status) == [
                    (1, f"inventorying on 127.0.0.1:{first.port}")
                ]
                # The reader comes back on another port (a new DHCP lease, a restart): it says
                # goodbye, and announces itself again under the same name.
                moved_at = time.monotonic()
                await advertiser.withdraw(info)
                await first.close()
                first_open = False
                async with ReaderSimulator(port=free_port()) as second:
                    await advertiser.publish(LLRP_READER, name, second.port)
                    await second.wait_inventorying(15)
                    back_s = time.monotonic() - moved_at
                    _play(second, DRESS)
                    assert await _wait_rows(db_path, reads_of, DRESS.hex().upper(), within_s=8)
                    assert await _rows(db_path, status) == [
                        (1, f"inventorying on 127.0.0.1:{second.port}")
                    ]
                    assert second.connections == 1
        assert first.connections == 1
    finally:
        if first_open:
            await first.close()
    assert back_s < 15
    reader_logs = [r.getMessage() for r in caplog.records if r.name == "drivers.rfid.reader"]
    # One line per event: up at A, the drop, the move, up at B (look-ups that failed while the
    # name was re-announced, and connects refused at A, went to DEBUG).
    assert len(reader_logs) == 4, reader_logs
    assert reader_logs[0] == f"RFID reader fr available: inventorying on 127.0.0.1:{first.port}"
    assert reader_logs[1].startswith("RFID reader fr unavailable: ")
    assert reader_logs[2:] == [
        f"RFID reader fr moved from 127.0.0.1:{first.port} to 127.0.0.1:{second.port}",
        f"RFID reader fr available: inventorying on 127.0.0.1:{second.port}",
    ]
