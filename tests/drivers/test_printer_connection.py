"""PrinterConnection and print_job against the emulator (TCP and pty), a file and absent devices."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from escpos.printer import Dummy, Usb

from drivers.printer import (
    PrinterNotReady,
    PrinterStatus,
    PrinterUnreachable,
    PrinterWriteError,
    parse_printer_uri,
    print_job,
)
from drivers.printer.emulator import EmulatedState, PrinterEmulator
from drivers.printer.status import STATUS_QUERY
from tests.drivers.printer_samples import RECEIPT_URL, sample_receipt


@pytest.fixture
async def emulator() -> AsyncIterator[PrinterEmulator]:
    async with PrinterEmulator() as emu:
        yield emu


async def print_to(uri: str, data: bytes, timeout_s: float = 3.0) -> PrinterStatus | None:
    return await asyncio.to_thread(print_job, parse_printer_uri(uri), data, timeout_s)


async def test_print_job_checks_status_sends_and_waits_for_receipt(
    emulator: PrinterEmulator,
) -> None:
    receipt = sample_receipt()
    assert await print_to(emulator.uri, receipt) == PrinterStatus(online=True)
    [job] = await emulator.wait_for_jobs(1)
    # On the wire: the four status queries, the receipt, then one DLE EOT 1 as delivery probe.
    assert job.data == STATUS_QUERY + receipt + b"\x10\x04\x01"
    assert job.rendered.qr_payloads == [RECEIPT_URL]


async def test_paper_near_end_still_prints(emulator: PrinterEmulator) -> None:
    emulator.state = EmulatedState.PAPER_NEAR_END
    status = await print_to(emulator.uri, b"last metres\n")
    assert status == PrinterStatus(online=True, paper_near_end=True)
    [job] = await emulator.wait_for_jobs(1)
    assert job.rendered.text == ["last metres"]


@pytest.mark.parametrize(
    ("state", "described"),
    [(EmulatedState.PAPER_OUT, "paper out"), (EmulatedState.COVER_OPEN, "cover open")],
)
async def test_a_printer_that_cannot_print_gets_nothing(
    emulator: PrinterEmulator, state: EmulatedState, described: str
) -> None:
    emulator.state = state
    with pytest.raises(PrinterNotReady) as caught:
        await print_to(emulator.uri, b"must not be lost\n")
    assert caught.value.status.describe() == described
    assert str(caught.value) == f"printer {emulator.uri} is not ready: {described}"
    emulator.state = EmulatedState.ONLINE
    await print_to(emulator.uri, b"after the fix\n")
    [job] = await emulator.wait_for_jobs(1)
    assert job.number == 1
    assert job.rendered.text == ["after the fix"]
    assert emulator.discarded == []


async def test_unreachable_then_back_on_the_same_port(emulator: PrinterEmulator) -> None:
    emulator.state = EmulatedState.UNREACHABLE
    with pytest.raises(PrinterUnreachable, match=f"cannot reach printer {emulator.uri}"):
        await print_to(emulator.uri, b"refused\n")
    emulator.state = EmulatedState.ONLINE
    assert await print_to(emulator.uri, b"reconnected\n") == PrinterStatus(online=True)
    [job] = await emulator.wait_for_jobs(1)
    assert job.rendered.text == ["reconnected"]


async def test_a_hung_printer_times_out_before_anything_is_sent(
    emulator: PrinterEmulator,
) -> None:
    emulator.state = EmulatedState.HANG
    started = time.perf_counter()
    with pytest.raises(PrinterUnreachable, match="did not answer the status query"):
        await print_to(emulator.uri, b"stuck\n", timeout_s=0.3)
    assert 0.3 <= time.perf_counter() - started < 2
    emulator.state = EmulatedState.ONLINE
    await asyncio.sleep(0.1)
    assert emulator.jobs == []


async def test_connection_lost_mid_job_reports_bytes_sent(emulator: PrinterEmulator) -> None:
    receipt = b"".join(f"line {i:04d} of a long receipt\n".encode() for i in range(800))
    emulator.drop_after_bytes = 1000
    with pytest.raises(PrinterWriteError) as caught:
        await print_to(emulator.uri, receipt)
    assert 0 < caught.value.bytes_sent <= len(receipt)
    [partial] = await emulator.wait_for_jobs(1)
    assert len(partial.data) == 1000  # the printer printed what it got, like a real one
    assert partial.rendered.text[0] == "line 0000 of a long receipt"
    assert emulator.drop_after_bytes is None


async def test_status_patterns_inside_data_are_counted_in_the_delivery_check(
    emulator: PrinterEmulator,
) -> None:
    # Epson printers answer DLE EOT n even inside image data; the probe must not be confused.
    data = b"before\n\x1dv0\x00\x03\x00\x01\x00\x10\x04\x01after\n"
    started = time.perf_counter()
    await print_to(emulator.uri, data)
    assert time.perf_counter() - started < 1
    [job] = await emulator.wait_for_jobs(1)
    assert job.rendered.text == ["before", "after"]


async def test_serial_printer_on_a_pty(emulator: PrinterEmulator) -> None:
    uri = f"serial:{emulator.open_pty()}?baud=19200"
    assert await print_to(uri, sample_receipt()) == PrinterStatus(online=True)
    [job] = await emulator.wait_for_jobs(1)
    assert job.rendered.qr_payloads == [RECEIPT_URL]
    emulator.state = EmulatedState.PAPER_OUT
    with pytest.raises(PrinterNotReady, match="paper out"):
        await print_to(uri, b"no paper\n")


async def test_file_printer_appends_and_cannot_report_status(tmp_path: Path) -> None:
    device = tmp_path / "lp0"
    await asyncio.to_thread(device.write_bytes, b"")
    p = Dummy()
    p.textln("to the file")
    assert await print_to(f"file:{device}", p.output) is None
    assert await print_to(f"file:{device}", p.output) is None
    assert await asyncio.to_thread(device.read_bytes) == p.output * 2


async def test_a_missing_device_file_is_unreachable_and_not_created(tmp_path: Path) -> None:
    device = tmp_path / "lp0"
    with pytest.raises(PrinterUnreachable, match=f"cannot reach printer file:{device}"):
        await print_to(f"file:{device}", b"x\n")
    assert not await asyncio.to_thread(device.exists)


async def test_a_missing_serial_port_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(PrinterUnreachable, match="cannot reach printer serial:"):
        await print_to(f"serial:{tmp_path}/ttyUSB9", b"x\n")


async def test_usb_without_pyusb_says_what_to_install() -> None:
    if Usb.is_usable():
        pytest.skip("pyusb is installed here; the message is for machines without it")
    with pytest.raises(PrinterUnreachable, match=r"needs pyusb \(install storelink\[usb\]\)"):
        await print_to("usb:04b8:0202", b"x\n")
