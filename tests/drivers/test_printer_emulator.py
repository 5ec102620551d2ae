"""The printer emulator, driven by the real python-escpos Network printer (in a thread)."""

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from escpos.printer import Network
from PIL import Image

from drivers.printer import PrinterConnection, PrinterStatus, parse_printer_uri
from drivers.printer.emulator import EmulatedState, PrinterEmulator
from tests.drivers.printer_samples import RECEIPT_URL, sample_receipt
from tests.qr import decode_qr

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def emulator() -> AsyncIterator[PrinterEmulator]:
    async with PrinterEmulator() as emu:
        yield emu


def escpos_print(port: int, data: bytes) -> None:
    """Print the way a plain python-escpos integration does."""
    printer = Network("127.0.0.1", port, timeout=5)
    try:
        printer._raw(data)
    finally:
        printer.close()


def connect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def query_status(uri: str) -> PrinterStatus | None:
    with PrinterConnection(parse_printer_uri(uri), timeout=2) as connection:
        return connection.query_status()


def send_to(uri: str, *parts: bytes) -> None:
    """Send on one connection; send() returns once the printer has read each part."""
    with PrinterConnection(parse_printer_uri(uri), timeout=2) as connection:
        for data in parts:
            connection.send(data)


def load_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.copy()


async def test_a_python_escpos_job_is_recorded_and_rendered(emulator: PrinterEmulator) -> None:
    data = sample_receipt()
    await asyncio.to_thread(escpos_print, emulator.port, data)
    [job] = await emulator.wait_for_jobs(1)
    assert job.number == 1
    assert job.data == data
    assert job.started <= job.last_byte_at
    assert job.rendered.qr_payloads == [RECEIPT_URL]
    assert decode_qr(job.rendered.image) == [RECEIPT_URL]
    assert job.rendered.text[0] == "STORELINK OUTDOOR"


async def test_status_is_answered_in_every_state_and_is_not_a_job(
    emulator: PrinterEmulator,
) -> None:
    expected = {
        EmulatedState.ONLINE: PrinterStatus(online=True),
        EmulatedState.PAPER_NEAR_END: PrinterStatus(online=True, paper_near_end=True),
        EmulatedState.PAPER_OUT: PrinterStatus(online=False, paper_out=True, paper_near_end=True),
        EmulatedState.COVER_OPEN: PrinterStatus(online=False, cover_open=True),
    }
    for state, status in expected.items():
        emulator.state = state
        assert await asyncio.to_thread(query_status, emulator.uri) == status
    emulator.state = EmulatedState.ONLINE
    await asyncio.to_thread(escpos_print, emulator.port, b"after the queries\n")
    [job] = await emulator.wait_for_jobs(1)
    assert job.number == 1  # none of the status-only connections became a job
    assert job.rendered.text == ["after the queries"]


async def test_paper_out_discards_what_is_sent(emulator: PrinterEmulator) -> None:
    emulator.state = EmulatedState.PAPER_OUT
    # Sent without asking for status first, as a careless client would.
    await asyncio.to_thread(send_to, emulator.uri, b"lost receipt\n")
    emulator.state = EmulatedState.ONLINE
    await asyncio.to_thread(escpos_print, emulator.port, b"printed receipt\n")
    [job] = await emulator.wait_for_jobs(1)
    assert job.data == b"printed receipt\n"
    [discarded] = emulator.discarded
    assert discarded.startswith(b"lost receipt\n")


async def test_unreachable_refuses_then_listens_again_on_the_same_port(
    emulator: PrinterEmulator,
) -> None:
    port = emulator.port
    emulator.state = EmulatedState.UNREACHABLE
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(connect, port)
    emulator.state = EmulatedState.ONLINE
    await asyncio.to_thread(escpos_print, port, b"back online\n")
    [job] = await emulator.wait_for_jobs(1)
    assert emulator.port == port
    assert job.rendered.text == ["back online"]


async def test_hang_answers_nothing_until_it_recovers(emulator: PrinterEmulator) -> None:
    emulator.state = EmulatedState.HANG
    reply = asyncio.create_task(asyncio.to_thread(query_status, emulator.uri))
    await asyncio.sleep(0.3)
    assert not reply.done()
    emulator.state = EmulatedState.ONLINE
    assert await reply == PrinterStatus(online=True)


async def test_jobs_are_saved_as_png_and_bytes(tmp_path: Path) -> None:
    async with PrinterEmulator(out_dir=tmp_path / "receipts") as emulator:
        data = sample_receipt(native_qr=False)
        await asyncio.to_thread(escpos_print, emulator.port, data)
        await emulator.wait_for_jobs(1)
    png = tmp_path / "receipts" / "job-0001.png"
    saved = await asyncio.to_thread((tmp_path / "receipts" / "job-0001.bin").read_bytes)
    assert saved == data
    image = await asyncio.to_thread(load_image, png)
    assert decode_qr(image) == [RECEIPT_URL]


async def test_on_a_pty_a_job_ends_when_the_line_goes_idle(emulator: PrinterEmulator) -> None:
    uri = f"serial:{emulator.open_pty()}?baud=19200"
    assert await asyncio.to_thread(query_status, uri) == PrinterStatus(online=True)
    await asyncio.to_thread(send_to, uri, b"first ", b"job\n", b"second job\n")
    await asyncio.to_thread(time.sleep, 0.3)
    await asyncio.to_thread(send_to, uri, sample_receipt())
    first, second = await emulator.wait_for_jobs(2)
    assert first.rendered.text == ["first job", "second job"]
    assert second.rendered.qr_payloads == [RECEIPT_URL]


async def test_wait_for_jobs_says_how_many_arrived(emulator: PrinterEmulator) -> None:
    with pytest.raises(TimeoutError, match=r"got 0 of 1 jobs within 0\.1 s"):
        await emulator.wait_for_jobs(1, timeout=0.1)


async def test_command_line_emulator_logs_each_job_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "drivers.printer.emulator",
        "--listen",
        "127.0.0.1:0",
        "--out",
        str(tmp_path),
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(20):
            started = (await process.stderr.readline()).decode()
            uri = started.split(" at ", 1)[1].split(",", 1)[0]
            port = parse_printer_uri(uri).port
            assert port
            await asyncio.to_thread(escpos_print, port, sample_receipt())
            logged = (await process.stderr.readline()).decode()
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert logged.rstrip().endswith(f"job 1: {len(sample_receipt())} bytes, 1 QR: {RECEIPT_URL}")
    assert await asyncio.to_thread((tmp_path / "job-0001.png").is_file)
