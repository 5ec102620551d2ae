"""`storelink-agent doctor` on a broken store and on a healthy one (real cloud, printer, reader)."""

from __future__ import annotations

import asyncio
import json
import tomllib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.config import parse_config
from agent.doctor import Verdict, check_cloud, check_llrp_reader, check_store_key
from agent.enroll import enroll
from agent.storekey import KEY_FILE, StoreKeyError, load_or_create_store_key
from drivers.printer.emulator import PrinterEmulator
from drivers.rfid.simulator import ReaderSimulator
from tests.helpers import agent_toml, free_port
from tests.ops_lan.conftest import run_cli
from tests.sync.conftest import running_cloud

# A directory nobody may create files in, root included: sysfs refuses new files.
UNWRITABLE = Path("/sys/kernel")


def _devices(printer_port: int, reader_port: int, wifi: str, camera: str) -> str:
    return (
        f'[[rfid.readers]]\nname = "room-a"\nhost = "127.0.0.1:{reader_port}"\n'
        'rooms = { "1" = "room-1" }\n'
        f'[wifi]\ninterface = "{wifi}"\n'
        f"[camera]\nsource = {camera}\nline = [0, 240, 640, 240]\n"
    )


async def doctor(tmp_path: Path, text: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    path = tmp_path / "agent.toml"
    await asyncio.to_thread(path.write_text, text)
    code, out, err = await run_cli("doctor", "--config", str(path), "--json", timeout=90)
    assert out, err
    return code, {check["check"]: check for check in json.loads(out)}, err


@pytest.mark.skipif(not UNWRITABLE.is_dir(), reason="needs sysfs (Linux)")
async def test_doctor_reports_each_broken_item_and_exits_1(tmp_path: Path) -> None:
    text = agent_toml(
        UNWRITABLE,
        free_port(),
        f"socket://127.0.0.1:{free_port()}",
        cloud_url=f"http://127.0.0.1:{free_port()}",
        # No /dev/video9 here: OpenCV cannot open it.
        extra=_devices(0, free_port(), "wlxnothere0", "9"),
    )
    code, checks, _ = await doctor(tmp_path, text)
    assert code == 1
    verdicts = {name: check["verdict"] for name, check in checks.items()}
    assert verdicts == {
        "config": "ok",
        "data directory": "fail",
        "database": "fail",
        "store key": "fail",
        "CJK font": verdicts["CJK font"],  # depends on the machine's fonts
        "enrolled": "fail",
        "cloud reachable": "fail",
        "clock": "skip",
        "signature": "skip",
        "printer front": "fail",
        "RFID reader room-a": "fail",
        "Wi-Fi sniffer front": "fail",
        "camera entrance": "fail",
    }
    assert "is not writable" in checks["data directory"]["detail"]
    assert "has not enrolled" in checks["enrolled"]["detail"]
    assert "storelink-agent enroll" in checks["enrolled"]["hint"]
    assert "did not answer" in checks["cloud reachable"]["detail"]
    assert "cannot reach printer" in checks["printer front"]["detail"]
    assert "cannot connect to 127.0.0.1:" in checks["RFID reader room-a"]["detail"]
    assert "'wlxnothere0' does not exist" in checks["Wi-Fi sniffer front"]["detail"]
    assert "cannot open device 9" in checks["camera entrance"]["detail"]
    for name, check in checks.items():
        if check["verdict"] == "fail":
            assert check["hint"], f"{name} failed without a fix hint"


async def test_doctor_passes_a_healthy_store_and_catches_a_replaced_key(tmp_path: Path) -> None:
    async with (
        running_cloud(tmp_path / "cloud") as cloud,
        PrinterEmulator(host="127.0.0.1", port=0) as printer,
        ReaderSimulator() as reader,
    ):
        extra = (
            f'[[rfid.readers]]\nname = "room-a"\nhost = "127.0.0.1:{reader.port}"\n'
            'rooms = { "1" = "room-1" }\n'
        )
        text = agent_toml(
            tmp_path / "store", free_port(), printer.uri, cloud_url=cloud.url, extra=extra
        )
        config = await asyncio.to_thread(parse_config, tomllib.loads(text))
        await enroll(config, cloud.url, await cloud.token())
        code, checks, err = await doctor(tmp_path, text)
        assert code == 0, (checks, err)
        assert {c["verdict"] for c in checks.values()} == {"ok"}
        assert checks["signature"]["detail"].startswith("signed request accepted")
        assert "answers LLRP" in checks["RFID reader room-a"]["detail"]
        assert "clock" in checks
        # Another key in data_dir (a restored backup of another PC, say): the cloud says no.
        key = config.store.data_dir / KEY_FILE
        await asyncio.to_thread(key.unlink)
        await asyncio.to_thread(_new_key, config.store.data_dir)
        code, checks, _ = await doctor(tmp_path, text)
    assert code == 1
    assert checks["signature"]["verdict"] == "fail"
    assert "refused a signed request" in checks["signature"]["detail"]
    assert "enroll again" in checks["signature"]["hint"]


async def test_doctor_on_an_invalid_config_names_the_key_and_exits_2(tmp_path: Path) -> None:
    text = agent_toml(
        tmp_path / "store",
        free_port(),
        "socket://127.0.0.1:9100",
        extra="[discovery]\nadvertize = true\n",
    )
    path = tmp_path / "agent.toml"
    await asyncio.to_thread(path.write_text, text)
    code, out, _ = await run_cli("doctor", "--config", str(path))
    assert code == 2
    assert out.startswith("[FAIL] config: ")
    assert "discovery.advertize: unknown key" in out


def _new_key(data_dir: Path) -> None:
    from agent.storekey import load_or_create_store_key

    load_or_create_store_key(data_dir)


async def test_clock_off_by_five_minutes_fails_with_a_hint(tmp_path: Path) -> None:
    async def answer(request: web.Request) -> web.Response:
        skewed = datetime.now(UTC) - timedelta(minutes=5)
        return web.json_response({}, status=401, headers={"Date": format_datetime(skewed, True)})

    app = web.Application()
    app.router.add_get("/v1/sync-status", answer)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        text = agent_toml(tmp_path / "store", free_port(), None, cloud_url=url)
        config = await asyncio.to_thread(parse_config, tomllib.loads(text))
        reachable, clock, signature = await check_cloud(config, None)
    finally:
        await server.close()
    assert reachable.verdict is Verdict.OK
    assert clock.verdict is Verdict.FAIL
    assert "ahead of the cloud's" in clock.detail
    assert 295 <= float(clock.detail.split()[4]) <= 305
    assert "timedatectl set-ntp true" in clock.hint
    assert signature.verdict is Verdict.SKIP


async def test_llrp_check_tells_a_reader_from_another_service() -> None:
    async with ReaderSimulator() as reader:
        ok = await asyncio.to_thread(check_llrp_reader, "a", "127.0.0.1", reader.port, 5.0)
    assert ok.verdict is Verdict.OK, ok

    async def not_llrp(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_llrp, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        wrong = await asyncio.to_thread(check_llrp_reader, "b", "127.0.0.1", port, 5.0)
    assert wrong.verdict is Verdict.FAIL
    assert "not an LLRP reader's greeting" in wrong.detail


def test_store_key_check_refuses_what_the_agent_refuses(tmp_path: Path) -> None:
    store = tmp_path / "store"
    config = parse_config(tomllib.loads(agent_toml(store, free_port(), None)))
    assert check_store_key(config).verdict is Verdict.FAIL  # no key yet
    load_or_create_store_key(store)
    assert check_store_key(config).verdict is Verdict.OK
    # A key behind a symlink (mode 0600 at its target): the agent will not load it.
    key = store / KEY_FILE
    moved = tmp_path / "elsewhere.pem"
    key.rename(moved)
    key.symlink_to(moved)
    with pytest.raises(StoreKeyError):
        load_or_create_store_key(store)
    refused = check_store_key(config)
    assert refused.verdict is Verdict.FAIL, refused
    assert str(key) in refused.detail


async def test_a_reader_named_by_dnssd_that_nobody_advertises_fails_plainly(
    tmp_path: Path, mdns_loopback: str
) -> None:
    text = agent_toml(
        tmp_path / "data",
        free_port(),
        None,
        extra=(
            f'[discovery]\ninterfaces = ["{mdns_loopback}"]\nresolve_timeout_s = 1.0\n'
            '[[rfid.readers]]\nname = "fr"\nhost = "dnssd://nobody._llrp._tcp.local"\n'
            'rooms = { "1" = "room-1" }\n'
        ),
    )
    code, checks, err = await doctor(tmp_path, text)
    assert code == 1
    reader = checks["RFID reader fr"]
    assert reader["verdict"] == "fail"
    assert "dnssd://nobody._llrp._tcp.local" in reader["detail"]
    assert "Traceback" not in err
