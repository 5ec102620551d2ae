"""Fixtures of the LAN-facing ops tests: mDNS on loopback only, an advertised printer."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from zeroconf import ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from agent.discovery import open_async_zeroconf, open_zeroconf

# The in-process agent and printer emulator of the agent tests (used by the metrics tests).
from tests.agent.conftest import agent, printer  # noqa: F401

LOOPBACK = "127.0.0.1"
BIN = Path(sys.executable).parent
PRINTER_TYPE = "_pdl-datastream._tcp.local."


def _loopback_mdns_works() -> bool:
    """Whether an mDNS answer sent on 127.0.0.1 reaches another responder there."""
    name = f"probe-{uuid.uuid4().hex[:8]}.{PRINTER_TYPE}"
    info = ServiceInfo(PRINTER_TYPE, name, port=9, parsed_addresses=[LOOPBACK])
    a, b = open_zeroconf([LOOPBACK]), open_zeroconf([LOOPBACK])
    try:
        a.register_service(info)
        probe = ServiceInfo(PRINTER_TYPE, name)
        return probe.request(b, 3000) and probe.port == 9
    finally:
        a.close()
        b.close()


@pytest.fixture(scope="session")
def mdns_loopback() -> str:
    """127.0.0.1 once mDNS works on it; turns on lo's MULTICAST flag if needed, else skips."""
    if _loopback_mdns_works():
        return LOOPBACK
    ip = shutil.which("ip")
    if ip is not None:
        subprocess.run(
            [ip, "link", "set", "lo", "multicast", "on"], check=False, capture_output=True
        )
        if _loopback_mdns_works():
            return LOOPBACK
    pytest.skip("mDNS on 127.0.0.1 does not work here, and `ip link set lo multicast on` failed")


@dataclass
class Advertiser:
    """An mDNS responder on loopback that the test drives (the 'device' side)."""

    zc: AsyncZeroconf
    announcing: list[asyncio.Future[object]] = field(default_factory=list)

    async def publish(self, service_type: str, instance: str, port: int) -> ServiceInfo:
        info = ServiceInfo(
            service_type,
            f"{instance}.{service_type}",
            port=port,
            parsed_addresses=[LOOPBACK],
            server=f"dev-{uuid.uuid4().hex[:8]}.local.",
        )
        # Registered (probed, answering queries) once this returns; the three unsolicited
        # announcements go on for two more seconds, which nothing here needs to wait for.
        self.announcing.append(asyncio.ensure_future(await self.zc.async_register_service(info)))
        return info

    async def withdraw(self, info: ServiceInfo) -> None:
        await (await self.zc.async_unregister_service(info))


@pytest.fixture
async def advertiser(mdns_loopback: str) -> AsyncIterator[Advertiser]:
    async with open_async_zeroconf([mdns_loopback]) as zc:
        advertiser = Advertiser(zc)
        yield advertiser
        for announcing in advertiser.announcing:
            announcing.cancel()
        await asyncio.gather(*advertiser.announcing, return_exceptions=True)


def unique(prefix: str) -> str:
    """An instance name no parallel test uses."""
    return f"{prefix} {uuid.uuid4().hex[:6]}"


async def run_cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:  # noqa: ASYNC109
    """Run ``storelink-agent ARGS``; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "storelink-agent"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
