"""LlrpReader through the real sllurp client against the LLRP reader simulator on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from drivers.rfid.reader import LlrpReader, TagRead, nearest_power_index
from drivers.rfid.scenarios import fitting_rooms, throughput
from drivers.rfid.sgtin import encode_sgtin96
from drivers.rfid.simulator import ReaderSimulator

EPC = encode_sgtin96("80614141123458", 6789, company_prefix_length=7)


@dataclass
class Sink:
    """What the reader handed to the agent, and on which thread."""

    reads: list[TagRead] = field(default_factory=list)
    states: list[tuple[bool, str]] = field(default_factory=list)
    batches: int = 0
    threads: set[int] = field(default_factory=set)

    def on_reads(self, reads: list[TagRead]) -> None:
        self.batches += 1
        self.threads.add(threading.get_ident())
        self.reads.extend(reads)

    def on_state(self, available: bool, why: str) -> None:
        self.threads.add(threading.get_ident())
        self.states.append((available, why))


async def until(cond: Callable[[], bool], within_s: float = 10.0) -> None:
    """Wait until ``cond()`` holds (polling); fail the test after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within_s} s")
        await asyncio.sleep(0.02)


def sllurp_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sllurp-reader")]


@contextlib.asynccontextmanager
async def running(reader: LlrpReader) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(reader.run(), name=f"reader-{reader.name}")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not sllurp_threads(), "sllurp's thread outlived run()"


def make_reader(sim: ReaderSimulator, sink: Sink, **kw: Any) -> LlrpReader:
    settings: dict[str, Any] = {
        "antennas": (1, 2, 3, 4),
        "keepalive_s": 0.4,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
    }
    settings.update(kw)
    return LlrpReader(
        "fr-1",
        "127.0.0.1",
        sim.port,
        on_reads=sink.on_reads,
        on_state=sink.on_state,
        **settings,
    )


async def test_reads_flow_with_their_fields_on_the_loop_thread() -> None:
    sink = Sink()
    async with ReaderSimulator() as sim:
        reader = make_reader(sim, sink, tx_power_dbm=20.1)
        async with running(reader):
            await sim.wait_inventorying()
            await until(lambda: reader.available)
            now = time.time_ns() // 1000
            sent = [
                TagRead("ignored", 3, EPC, -47.0, now, 3),
                TagRead("ignored", 1, bytes(range(8)), -71.0, now + 1500, 1),
            ]
            sim.inject(sent)
            await until(lambda: len(sink.reads) == 2)
    assert sink.reads == [
        TagRead("fr-1", 3, EPC, -47.0, now, 3),
        TagRead("fr-1", 1, bytes(range(8)), -71.0, now + 1500, 1),
    ]
    assert sink.threads == {threading.get_ident()}
    assert sink.states[0][0] is True
    # 20.1 dBm is mapped to the nearest table entry: 20.00 dBm, index 41.
    assert sim.last_rospec is not None
    assert sim.last_rospec.tx_power_index == {1: 41, 2: 41, 3: 41, 4: 41}
    assert sim.model.power_dbm(41) == 20.0
    assert sim.last_rospec.session == 2
    assert sim.last_rospec.search_mode == 2
    assert sim.last_rospec.antennas == (1, 2, 3, 4)


@pytest.mark.parametrize(("dbm", "index"), [(5.0, 1), (20.2, 42), (40.0, 91), (None, 91)])
async def test_power_in_dbm_maps_to_the_readers_table(dbm: float | None, index: int) -> None:
    sink = Sink()
    async with ReaderSimulator() as sim:
        reader = make_reader(sim, sink, tx_power_dbm=dbm, antennas=(1, 2))
        async with running(reader):
            await sim.wait_inventorying()
    assert sim.last_rospec is not None
    assert sim.last_rospec.tx_power_index == {1: index, 2: index}


def test_nearest_power_index() -> None:
    table = [0, 10.0, 10.25, 10.5]
    assert nearest_power_index(table, 10.3) == 2
    assert nearest_power_index(table, 10.375) == 2  # a tie goes to the lower power
    assert nearest_power_index(table, -3) == 1
    assert nearest_power_index([0], 20.0) is None


async def test_without_impinj_extensions_and_with_epc_data_parameters() -> None:
    sink = Sink()
    async with ReaderSimulator(epc_data=True) as sim:
        reader = make_reader(sim, sink, search_mode=None, antennas=(2,), session=1)
        async with running(reader):
            await sim.wait_inventorying()
            sim.inject([TagRead("", 2, EPC, -50.0, 1_767_603_600_000_000, 1)])
            await until(lambda: len(sink.reads) == 1)
    assert sink.reads[0].epc == EPC
    assert "CUSTOM_MESSAGE" not in sim.received
    assert sim.last_rospec is not None
    assert sim.last_rospec.session == 1


async def test_silent_reader_is_unavailable_then_back() -> None:
    sink = Sink()
    async with ReaderSimulator() as sim:
        reader = make_reader(sim, sink)
        async with running(reader):
            await until(lambda: reader.available)
            assert sim.keepalive_ms == 400
            await until(lambda: sim.keepalive_acks >= 2)
            sim.silent = True
            await until(lambda: not reader.available, within_s=5)
            assert sink.states[-1][0] is False
            assert "keepalive" in sink.states[-1][1]
            sim.silent = False
            await until(lambda: reader.available, within_s=10)
            sim.inject([TagRead("", 1, EPC, -44.0, time.time_ns() // 1000, 1)])
            await until(lambda: len(sink.reads) == 1)
    assert [s[0] for s in sink.states] == [True, False, True]
    assert sim.connections >= 2


async def test_reboot_mid_inventory_reconnects_by_itself() -> None:
    sink = Sink()
    scenario = fitting_rooms(seed=5, duration_s=3600)
    async with ReaderSimulator() as sim:
        reader = make_reader(sim, sink)
        async with running(reader):
            await sim.wait_inventorying()
            sim.play(scenario.reads_for("reader-1"), scenario.start_us, speed=60.0)
            await until(lambda: len(sink.reads) > 20)
            await sim.reboot(0.8)
            assert not reader.available
            before = len(sink.reads)
            await until(lambda: reader.available, within_s=10)
            await until(lambda: len(sink.reads) > before + 20)
    assert [s[0] for s in sink.states] == [True, False, True]
    assert sim.connections == 2
    times = [r.seen_at_us for r in sink.reads]
    assert times == sorted(times)


async def test_dropped_connection_reconnects() -> None:
    sink = Sink()
    async with ReaderSimulator() as sim:
        reader = make_reader(sim, sink)
        async with running(reader):
            await until(lambda: reader.available)
            sim.drop_connection()
            await until(lambda: sim.connections == 2 and reader.available)
            sim.inject([TagRead("", 4, EPC, -40.0, time.time_ns() // 1000, 2)])
            await until(lambda: len(sink.reads) == 1)
    assert sink.reads[0].antenna == 4
    assert sink.reads[0].count == 2
    assert [s[0] for s in sink.states] == [True, False, True]


@pytest.mark.parametrize("fault", ["malformed", "truncated"])
async def test_bad_report_from_the_reader_is_survived(fault: str) -> None:
    sink = Sink()
    async with ReaderSimulator() as sim:
        reader = make_reader(sim, sink)
        async with running(reader):
            await until(lambda: reader.available)
            if fault == "malformed":
                sim.send_malformed_report()
            else:
                sim.send_truncated_report()
            # Either sllurp survives the frame or the watchdog reconnects; reads flow again.
            await asyncio.sleep(1.5)
            await until(lambda: reader.available, within_s=10)
            marker = encode_sgtin96("80614141123458", 99, company_prefix_length=7)

            def got_marker() -> bool:
                if not any(r.epc == marker for r in sink.reads):
                    sim.inject([TagRead("", 2, marker, -45.0, time.time_ns() // 1000, 1)])
                    return False
                return True

            await until(got_marker, within_s=10)
    good = [r for r in sink.reads if r.epc == marker]
    assert good
    assert good[0].antenna == 2
    assert good[0].rssi == -45.0


async def test_unreachable_reader_is_reported_once_and_retried() -> None:
    sink = Sink()
    async with ReaderSimulator() as sim:
        port = sim.port
    reader = LlrpReader(
        "gone",
        "127.0.0.1",
        port,
        keepalive_s=0.4,
        reconnect_min_s=0.05,
        reconnect_max_s=0.1,
        on_reads=sink.on_reads,
        on_state=sink.on_state,
    )
    async with running(reader):
        await until(lambda: bool(sink.states))
        await asyncio.sleep(0.5)  # several more failed attempts
    assert len(sink.states) == 1
    assert sink.states[0][0] is False
    assert "cannot connect" in sink.states[0][1]
    assert not reader.available


async def test_throughput_1100_reads_per_second_arrive_complete() -> None:
    seconds = 3
    scenario = throughput(duration_s=seconds)
    expected = list(scenario.iter_reads())
    assert len(expected) == 1100 * seconds
    sink = Sink()
    async with ReaderSimulator() as sim:
        reader = make_reader(sim, sink, keepalive_s=1.0)
        async with running(reader):
            await sim.wait_inventorying()
            started = time.monotonic()
            sim.play(scenario.reads_for("reader-1"), scenario.start_us)
            await until(lambda: len(sink.reads) >= len(expected), within_s=seconds + 5)
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.2)
    assert [(r.epc, r.antenna, r.rssi, r.seen_at_us) for r in sink.reads] == [
        (r.epc, r.antenna, r.rssi, r.seen_at_us) for r in expected
    ]
    assert sim.reads_dropped == 0
    assert sink.batches < len(expected) / 20  # batched: one call per report, not per read
    assert elapsed < seconds + 1.0
    print(f"throughput: {len(sink.reads)} reads in {elapsed:.2f} s, {sink.batches} batches")


async def test_network_path_carries_the_scenario_reads() -> None:
    scenario = fitting_rooms(seed=11, duration_s=900)
    expected = [r for r in scenario.iter_reads() if r.reader == "reader-1"]
    sink = Sink()
    async with ReaderSimulator(speed=600.0) as sim:
        reader = make_reader(sim, sink)
        async with running(reader):
            await sim.wait_inventorying()
            sim.play(scenario.reads_for("reader-1"), scenario.start_us)
            await until(lambda: len(sink.reads) >= len(expected), within_s=15)
    got = [(r.epc, r.antenna, r.rssi, r.seen_at_us, r.count) for r in sink.reads]
    assert got == [(r.epc, r.antenna, r.rssi, r.seen_at_us, r.count) for r in expected]


@pytest.mark.parametrize("ticks", [0, 1, 3, 10])
async def test_cancel_while_connecting_leaves_no_thread(ticks: int) -> None:
    sink = Sink()
    async with ReaderSimulator() as sim:
        reader = make_reader(sim, sink)
        task = asyncio.create_task(reader.run())
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()
        assert not sllurp_threads()


async def test_cancel_while_the_reader_is_silent_leaves_no_thread() -> None:
    sink = Sink()
    async with ReaderSimulator() as sim:
        reader = make_reader(sim, sink, keepalive_s=5.0)
        async with running(reader):
            await until(lambda: reader.available)
            sim.silent = True  # the polite stop gets no answer and times out
        assert sim.received.count("DELETE_ACCESSSPEC") == 2  # on connect, then on stop


async def test_a_failing_on_reads_callback_does_not_stop_the_reader() -> None:
    calls: list[int] = []

    def explode(reads: list[TagRead]) -> None:
        calls.append(len(reads))
        raise RuntimeError("agent bug")

    async with ReaderSimulator() as sim:
        reader = LlrpReader(
            "fr-1",
            "127.0.0.1",
            sim.port,
            keepalive_s=0.4,
            on_reads=explode,
            on_state=lambda _a, _w: None,
        )
        async with running(reader):
            await sim.wait_inventorying()
            sim.inject([TagRead("", 1, EPC, -44.0, time.time_ns() // 1000, 1)])
            await until(lambda: len(calls) == 1)
            sim.inject([TagRead("", 1, EPC, -44.0, time.time_ns() // 1000, 1)] * 2)
            await until(lambda: len(calls) == 2)
            assert reader.available
    assert calls == [1, 2]
