"""mDNS discovery on 127.0.0.1 only: `discover` finds an advertised printer and reader, the agent
advertises itself, and a printer configured by its advertised name is followed to a new port.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

import pytest
from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo

from agent.config import parse_config
from agent.discovery import (
    AGENT_SERVICE,
    LLRP_READER,
    PRINTER_RAW,
    Found,
    config_lines,
    open_async_zeroconf,
)
from drivers.printer.emulator import PrinterEmulator
from drivers.printer.errors import InvalidPrinterURI
from drivers.printer.uri import parse_printer_uri
from tests.agent.conftest import start_agent
from tests.helpers import agent_toml, free_port, make_sale
from tests.ops_lan.conftest import Advertiser, run_cli, unique


def _block(lines: list[str], header: str, marker: str) -> str:
    """The TOML table starting at ``header`` whose lines contain ``marker``."""
    text = "\n".join(lines)
    for block in text.split("\n\n"):
        if header in block and marker in block:
            return block
    raise AssertionError(f"no {header} block with {marker!r} in:\n{text}")


async def test_discover_prints_paste_ready_printer_and_reader_lines(
    tmp_path: Path, advertiser: Advertiser, mdns_loopback: str
) -> None:
    async with PrinterEmulator(host="127.0.0.1", port=0) as emulator:
        printer = unique("TM-T88VI front")
        reader = unique("SpeedwayR-11-22-33")
        await asyncio.gather(
            advertiser.publish(PRINTER_RAW, printer, emulator.port),
            advertiser.publish(LLRP_READER, reader, 15084),
        )
        code, out, err = await run_cli("discover", "--seconds", "2", "--interface", mdns_loopback)
    assert code == 0, err
    lines = out.splitlines()
    quoted = printer.replace(" ", "%20")
    printer_block = _block(lines, "[[printers]]", quoted)
    assert f'uri = "dnssd://{quoted}._pdl-datastream._tcp.local"' in printer_block
    assert f'# or by address: uri = "socket://127.0.0.1:{emulator.port}"' in printer_block
    reader_block = _block(lines, "[[rfid.readers]]", 'host = "127.0.0.1:15084"')
    # Pasted as printed, both blocks make a valid agent config.
    base = agent_toml(tmp_path / "data", free_port(), None)
    config = await asyncio.to_thread(
        parse_config, tomllib.loads(f"{base}\n{printer_block}\n{reader_block}\n")
    )
    assert config.printers[0].parsed_uri.service_name == f"{printer}.{PRINTER_RAW}"
    assert config.rfid.readers[0].address == ("127.0.0.1", 15084)


def test_config_lines_for_lpd_only_printer_and_other_agents() -> None:
    lines = config_lines(
        [
            Found("_printer._tcp.local.", "Back office", "192.0.2.7", 515),
            Found(
                AGENT_SERVICE, "storelink S002", "192.0.2.8", 8380, {"store": "S002", "api": "1"}
            ),
        ]
    )
    assert '# on port 9100: [[printers]] name = "back-office" uri = "socket://192.0.2.7:9100"' in (
        lines
    )
    assert "# storelink agent of store S002 at http://192.0.2.8:8380 (API v1)" in lines
    assert config_lines([]) == [
        "# nothing answered: check that devices are on this LAN and powered on"
    ]


async def test_agent_advertisement_is_found_by_a_browser(
    tmp_path: Path, mdns_loopback: str
) -> None:
    store = f"T{free_port()}"
    text = agent_toml(tmp_path / "data", free_port(), None).replace(
        'id = "S001"', f'id = "{store}"'
    )
    config = await asyncio.to_thread(parse_config, tomllib.loads(text))
    seen: dict[str, ServiceStateChange] = {}
    changed = asyncio.Event()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        seen[name] = state_change
        changed.set()

    ours = f"storelink {store}.{AGENT_SERVICE}"

    async def wait_for(state: ServiceStateChange) -> None:
        async with asyncio.timeout(15):
            while seen.get(ours) is not state:
                changed.clear()
                await changed.wait()

    async with open_async_zeroconf([mdns_loopback]) as zc:
        browser = AsyncServiceBrowser(zc.zeroconf, [AGENT_SERVICE], handlers=[on_change])
        try:
            async with start_agent(config):
                await wait_for(ServiceStateChange.Added)
                info = AsyncServiceInfo(AGENT_SERVICE, ours)
                assert await info.async_request(zc.zeroconf, 3000)
                assert info.port == int(config.api.listen.rsplit(":", 1)[1])
                assert info.parsed_addresses() == ["127.0.0.1"]
                assert info.decoded_properties == {"store": store, "api": "1"}
            # Stopping sends goodbyes: browsers drop the agent at once, not after the TTL.
            await wait_for(ServiceStateChange.Removed)
        finally:
            await browser.async_cancel()


async def test_printer_named_by_dnssd_is_followed_to_its_new_port(
    tmp_path: Path, advertiser: Advertiser, mdns_loopback: str
) -> None:
    name = unique("Front TM")
    uri = f"dnssd://{name.replace(' ', '%20')}._pdl-datastream._tcp.local"
    extra = f'[discovery]\nadvertise = false\ninterfaces = ["{mdns_loopback}"]\n'
    text = agent_toml(tmp_path / "data", free_port(), uri, extra=extra)
    config = await asyncio.to_thread(parse_config, tomllib.loads(text))
    first = await PrinterEmulator(host="127.0.0.1", port=0).__aenter__()
    first_open = True
    try:
        info = await advertiser.publish(PRINTER_RAW, name, first.port)
        async with start_agent(config) as agent:
            status, answer = await agent.post_sale(make_sale(1))
            assert status == 201, answer
            assert len(await first.wait_for_jobs(1, timeout=15)) == 1
            # The printer comes back on another port (a new DHCP lease, a new print server):
            # it says goodbye, and announces itself again under the same name.
            await advertiser.withdraw(info)
            await first.__aexit__(None, None, None)
            first_open = False
            async with PrinterEmulator(host="127.0.0.1", port=0) as second:
                assert second.port != first.port
                await advertiser.publish(PRINTER_RAW, name, second.port)
                status, answer = await agent.post_sale(make_sale(2))
                assert status == 201, answer
                assert len(await second.wait_for_jobs(1, timeout=30)) == 1
            assert len(first.jobs) == 1  # nothing went to the old port meanwhile
    finally:
        if first_open:
            await first.__aexit__(None, None, None)


async def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    await asyncio.to_thread(path.write_text, text)
    return path


@pytest.mark.parametrize(
    ("uri", "instance"),
    [
        ("dnssd://Front%20TM-T88._pdl-datastream._tcp.local", "Front TM-T88"),
        ("mdns://EPSON.TM-m30._pdl-datastream._tcp.local./", "EPSON.TM-m30"),
    ],
)
def test_dnssd_printer_uri_names_a_service(uri: str, instance: str) -> None:
    parsed = parse_printer_uri(uri)
    assert (parsed.scheme, parsed.instance) == ("dnssd", instance)
    assert parsed.service_name == f"{instance}.{PRINTER_RAW}"
    assert parse_printer_uri(str(parsed)) == parsed
    assert str(parsed.at("192.0.2.9", 9100)) == "socket://192.0.2.9:9100"


@pytest.mark.parametrize(
    "uri",
    ["dnssd://", "dnssd://front", "dnssd://a._pdl-datastream._tcp.local/x", "dnssd://a.local"],
)
def test_dnssd_printer_uri_without_a_service_name_is_refused(uri: str) -> None:
    with pytest.raises(InvalidPrinterURI, match=re.escape("dnssd://NAME._pdl-datastream._tcp")):
        parse_printer_uri(uri)


def test_loopback_mdns_listens_on_no_other_address(mdns_loopback: str) -> None:
    import psutil  # type: ignore[import-untyped]

    from agent.discovery import open_zeroconf

    zc = open_zeroconf([mdns_loopback])
    try:
        bound = {
            c.laddr.ip
            for c in psutil.Process().net_connections(kind="udp")
            if c.laddr and c.laddr.port == 5353
        }
    finally:
        zc.close()
    assert bound == {"127.0.0.1", "224.0.0.251"}
