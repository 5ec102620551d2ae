"""Checkout through the real local API, to the printer emulator, and back through a QR scan."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agent.qrtoken import InvalidToken, verify_token
from agent.storekey import load_or_create_store_key
from drivers.printer.emulator import EmulatedState, PrinterEmulator
from tests.agent.conftest import RunningAgent, make_config, start_agent
from tests.helpers import make_sale
from tests.qr import decode_qr, native_qr_payloads

COPY_MARK = b"** COPY **"


async def printer_available(agent: RunningAgent, want: bool, limit_s: float = 15.0) -> None:
    """Wait until /v1/status reports the printer (un)available."""
    deadline = time.monotonic() + limit_s
    while True:
        _, status = await agent.request("GET", "/v1/status")
        if status["printers"][0]["available"] is want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"printer availability is not {want}: {status['printers']}")
        await asyncio.sleep(0.05)


def token_of(url: str) -> str:
    return url.rsplit("/r/", 1)[1]


async def test_sale_prints_receipt_whose_qr_verifies(
    agent: RunningAgent, printer: PrinterEmulator
) -> None:
    status, answer = await agent.post_sale(make_sale(staff="A07", member="M-000123"))
    assert status == 201, answer
    assert answer["receipt_no"] == "S001-000001"
    assert answer["receipt_url"].startswith("http://127.0.0.1:9/r/")
    assert answer["print"]["state"] in {"queued", "printing", "done"}

    await printer.wait_for_jobs(1, timeout=10)
    job = printer.jobs[0]
    assert native_qr_payloads(job.data) == [answer["receipt_url"]]
    scanned = await asyncio.to_thread(lambda: decode_qr(job.rendered.image))
    assert scanned == [answer["receipt_url"]]
    assert COPY_MARK not in job.data

    key = await asyncio.to_thread(load_or_create_store_key, agent.config.store.data_dir)
    claims = verify_token(token_of(scanned[0]), key.public_key())
    assert (claims.store_id, claims.receipt_seq, claims.associate_id) == ("S001", 1, "A07")
    assert claims.total == make_sale()["total"] or claims.total > 0

    token = token_of(scanned[0])
    for i in (0, len(token) // 2, len(token) - 1):
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(InvalidToken):
            verify_token(changed, key.public_key())


async def test_same_sale_id_gives_one_receipt_and_one_print(
    agent: RunningAgent, printer: PrinterEmulator
) -> None:
    sale = make_sale()
    first = await agent.post_sale(sale)
    second = await agent.post_sale(sale)
    assert first[0] == 201
    assert second[0] == 200
    assert second[1]["receipt_no"] == first[1]["receipt_no"]
    assert second[1]["receipt_url"] == first[1]["receipt_url"]
    await printer.wait_for_jobs(1, timeout=10)
    await asyncio.sleep(0.5)
    assert len(printer.jobs) == 1
    assert await agent.row_counts() == {"sales": 1, "outbox": 1, "print_jobs": 1}


async def test_receipt_numbers_are_sequential_and_unique(agent: RunningAgent) -> None:
    answers = await asyncio.gather(*(agent.post_sale(make_sale(i)) for i in range(10)))
    numbers = sorted(a[1]["receipt_no"] for a in answers)
    assert numbers == [f"S001-{n:06d}" for n in range(1, 11)]


async def test_reused_sale_id_with_another_sale_is_refused(agent: RunningAgent) -> None:
    sale = make_sale()
    assert (await agent.post_sale(sale))[0] == 201
    other = make_sale(2)
    other["sale_id"] = sale["sale_id"]
    status, answer = await agent.post_sale(other)
    assert status == 409
    assert "already used" in answer["message"]
    assert (await agent.row_counts())["sales"] == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"raw": b"{not json"}, 400, "bad_json"),
        ({"raw": b"\xff\xfe"}, 400, "bad_json"),
        ({"raw": b"[]"}, 422, "invalid_sale"),
        ({"raw": b"x" * 300_000}, 413, "too_large"),
        ({"key": "wrong-key-000000"}, 401, "unauthorized"),
        ({"key": None}, 401, "unauthorized"),
    ],
)
async def test_bad_requests_store_nothing(
    agent: RunningAgent, kwargs: dict[str, object], status: int, code: str
) -> None:
    before = await agent.row_counts()
    got, answer = await agent.request("POST", "/v1/sales", make_sale(), **kwargs)  # type: ignore[arg-type]
    assert got == status
    assert answer["error"] == code
    assert answer["message"]
    assert await agent.row_counts() == before


async def test_invalid_sale_names_fields_and_stores_nothing(agent: RunningAgent) -> None:
    sale = make_sale()
    sale["total"] += 1
    sale["lines"][0]["qty"] = "1"
    status, answer = await agent.post_sale(sale)
    assert status == 422
    fields = {f["field"] for f in answer["fields"]}
    assert "lines[0].qty" in fields
    assert await agent.row_counts() == {"sales": 0, "outbox": 0, "print_jobs": 0}
    sale = make_sale()
    sale["total"] += 1
    status, answer = await agent.post_sale(sale)
    assert status == 422
    assert answer["fields"][0]["field"] == "total"


async def test_paper_out_prints_once_paper_is_back(
    agent: RunningAgent, printer: PrinterEmulator
) -> None:
    printer.state = EmulatedState.PAPER_OUT
    status, answer = await agent.post_sale(make_sale())
    assert status == 201
    await asyncio.sleep(1.0)
    assert printer.jobs == []
    _, detail = await agent.request("GET", f"/v1/sales/{answer['sale_id']}")
    assert detail["print_jobs"][0]["state"] in {"queued", "printing"}
    assert "paper" in (detail["print_jobs"][0]["last_error"] or "").lower()
    printer.state = EmulatedState.ONLINE
    await printer.wait_for_jobs(1, timeout=15)
    await asyncio.sleep(0.5)
    assert len(printer.jobs) == 1
    assert COPY_MARK not in printer.jobs[0].data
    assert native_qr_payloads(printer.jobs[0].data) == [answer["receipt_url"]]


async def test_unreachable_printer_gets_receipt_when_back(
    agent: RunningAgent, printer: PrinterEmulator
) -> None:
    printer.state = EmulatedState.UNREACHABLE
    status, answer = await agent.post_sale(make_sale())
    assert status == 201
    await printer_available(agent, False)
    assert printer.jobs == []
    printer.state = EmulatedState.ONLINE
    await printer.wait_for_jobs(1, timeout=15)
    assert native_qr_payloads(printer.jobs[0].data) == [answer["receipt_url"]]
    await printer_available(agent, True)


async def test_connection_lost_mid_job_reprints_as_copy(
    agent: RunningAgent, printer: PrinterEmulator
) -> None:
    printer.drop_after_bytes = 200
    status, answer = await agent.post_sale(make_sale())
    assert status == 201
    await printer.wait_for_jobs(2, timeout=15)
    await asyncio.sleep(0.3)
    assert len(printer.jobs) == 2
    assert not native_qr_payloads(printer.jobs[0].data), "the cut job should be partial"
    complete = [j for j in printer.jobs if native_qr_payloads(j.data)]
    assert len(complete) == 1
    assert COPY_MARK in complete[0].data
    _, detail = await agent.request("GET", f"/v1/sales/{answer['sale_id']}")
    assert detail["print_jobs"][0]["copy"] is True
    assert detail["print_jobs"][0]["state"] == "done"


async def test_reprint_is_marked_copy(agent: RunningAgent, printer: PrinterEmulator) -> None:
    _, answer = await agent.post_sale(make_sale())
    await printer.wait_for_jobs(1, timeout=10)
    status, reprint = await agent.request("POST", f"/v1/sales/{answer['sale_id']}/reprint")
    assert status == 202
    assert reprint["print"]["copy"] is True
    await printer.wait_for_jobs(2, timeout=10)
    assert COPY_MARK not in printer.jobs[0].data
    assert COPY_MARK in printer.jobs[1].data
    assert native_qr_payloads(printer.jobs[1].data) == [answer["receipt_url"]]
    missing = await agent.request("POST", "/v1/sales/00000000-0000-4000-8000-000000000000/reprint")
    assert missing[0] == 404


async def test_status_sale_lookup_and_metrics(
    agent: RunningAgent, printer: PrinterEmulator
) -> None:
    _, answer = await agent.post_sale(make_sale())
    await printer.wait_for_jobs(1, timeout=10)
    status, detail = await agent.request("GET", f"/v1/sales/{answer['sale_id']}")
    assert status == 200
    assert detail["sale"]["total"] == make_sale()["total"] or detail["sale"]["total"] > 0
    status, st = await agent.request("GET", "/v1/status")
    assert status == 200
    assert st["outbox"]["unsent"] == 1
    assert st["printers"][0]["name"] == "front"
    status, text = await agent.request("GET", "/metrics", key=None)
    assert status == 200
    assert "storelink_agent_outbox_unsent 1.0" in text
    assert 'storelink_agent_sales_total{result="recorded"} 1.0' in text


async def test_serial_printer_over_pty(tmp_path: Path, printer: PrinterEmulator) -> None:
    device = printer.open_pty()
    config = await make_config(tmp_path, f"serial:{device}?baud=115200")
    async with start_agent(config) as running:
        status, answer = await running.post_sale(make_sale())
        assert status == 201
        await printer.wait_for_jobs(1, timeout=15)
    assert native_qr_payloads(printer.jobs[0].data) == [answer["receipt_url"]]
    scanned = await asyncio.to_thread(lambda: decode_qr(printer.jobs[0].rendered.image))
    assert scanned == [answer["receipt_url"]]


async def test_58mm_printer_prints_image_qr_and_chinese(tmp_path: Path) -> None:
    async with PrinterEmulator(host="127.0.0.1", port=0, width_px=384) as narrow:
        config = await make_config(tmp_path, narrow.uri, profile="POS-5890")
        async with start_agent(config) as running:
            status, answer = await running.post_sale(make_sale(name="冲锋衣 防水 Gore-Tex"))
            assert status == 201
            await narrow.wait_for_jobs(1, timeout=15)
        job = narrow.jobs[0]
        assert "冲锋衣".encode("gb18030") in job.data
        rendered = job.rendered
        assert any("冲锋衣" in line for line in rendered.text)
        scanned = await asyncio.to_thread(lambda: decode_qr(rendered.image))
        assert scanned == [answer["receipt_url"]]
