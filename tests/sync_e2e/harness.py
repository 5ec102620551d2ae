"""A store and a cloud as real processes on 127.0.0.1, started the way store IT starts them.

``storelink-cloud run``, ``storelink-agent run`` and ``storelink-sync run`` run as
subprocesses of the test; the sync daemon reaches the cloud through a :class:`FaultProxy`
owned by the test, so the test decides what the uplink does to each connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from tests.faultproxy import FaultProxy
from tests.helpers import POS_KEY, free_port

BIN = Path(sys.executable).parent


async def run_cli(*args: str) -> str:
    """Run one of our console scripts to completion; its stdout, or AssertionError."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN / args[0]),
        *args[1:],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args[:3])} failed: {err.decode()[-2000:]}")
    return out.decode()


@dataclass
class Service:
    """One long-running process of ours, restartable, killable."""

    name: str
    args: list[str]
    log: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        handle = await asyncio.to_thread(self.log.open, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                str(BIN / self.args[0]),
                *self.args[1:],
                stdout=handle,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            await asyncio.to_thread(handle.close)

    async def kill(self) -> None:
        """kill -9, as a crash or a power cut would."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        """SIGTERM and wait, as systemd stops a service."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                await self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


@dataclass
class Deployment:
    """A cloud, an HQ user, and one enrolled store whose uplink is a fault proxy."""

    work: Path
    store_id: str = "S001"
    region: str = "east"
    printer_uri: str | None = None
    cloud_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    hq_token: str = ""
    proxy: FaultProxy | None = None
    cloud: Service | None = None
    agent: Service | None = None
    sync: Service | None = None

    @property
    def cloud_url(self) -> str:
        return f"http://127.0.0.1:{self.cloud_port}"

    @property
    def uplink_url(self) -> str:
        """The cloud as the store reaches it: through the fault proxy."""
        assert self.proxy is not None
        return f"http://127.0.0.1:{self.proxy.port}"

    @property
    def cloud_config(self) -> Path:
        return self.work / "cloud.toml"

    @property
    def agent_config(self) -> Path:
        return self.work / "agent.toml"

    @property
    def agent_db(self) -> Path:
        return self.work / "store" / "agent.db"

    async def __aenter__(self) -> Deployment:
        try:
            await self._start()
        except BaseException:
            # Never leave a cloud or agent process behind a failed start.
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        await asyncio.to_thread(self._write_configs)
        self.cloud = Service(
            "cloud",
            ["storelink-cloud", "run", "--config", str(self.cloud_config)],
            self.work / "cloud.log",
        )
        await self.cloud.start()
        await self.wait_cloud()
        token = (
            (
                await run_cli(
                    "storelink-cloud",
                    "stores",
                    "add",
                    "--config",
                    str(self.cloud_config),
                    "--id",
                    self.store_id,
                    "--name",
                    "E2E Store",
                    "--region",
                    self.region,
                )
            )
            .strip()
            .splitlines()[-1]
        )
        self.hq_token = (
            (
                await run_cli(
                    "storelink-cloud",
                    "users",
                    "add",
                    "--config",
                    str(self.cloud_config),
                    "--name",
                    "hq",
                    "--role",
                    "hq",
                )
            )
            .strip()
            .splitlines()[-1]
        )
        self.proxy = await FaultProxy(self.cloud_port).__aenter__()
        await asyncio.to_thread(self._write_agent_config)
        await run_cli(
            "storelink-agent",
            "enroll",
            "--config",
            str(self.agent_config),
            "--cloud",
            self.uplink_url,
            "--token",
            token,
        )
        self.agent = Service(
            "agent",
            ["storelink-agent", "run", "--config", str(self.agent_config)],
            self.work / "agent.log",
        )
        self.sync = Service(
            "sync",
            ["storelink-sync", "run", "--config", str(self.agent_config)],
            self.work / "sync.log",
        )
        await self.agent.start()
        await self.wait_agent()
        await self.sync.start()

    async def __aexit__(self, *exc: object) -> None:
        for service in (self.sync, self.agent, self.cloud):
            if service is not None:
                await service.stop()
        if self.proxy is not None:
            await self.proxy.__aexit__(None, None, None)

    def _write_configs(self) -> None:
        (self.work / "cloud").mkdir(parents=True, exist_ok=True)
        self.cloud_config.write_text(
            f'[server]\nlisten = "127.0.0.1:{self.cloud_port}"\n'
            f'public_url = "{self.cloud_url}"\ndata_dir = "{self.work / "cloud"}"\n'
        )

    def _write_agent_config(self) -> None:
        assert self.proxy is not None
        text = (
            f'[store]\nid = "{self.store_id}"\ndata_dir = "{self.work / "store"}"\n'
            f'[api]\nlisten = "127.0.0.1:{self.api_port}"\nkey = "{POS_KEY}"\n'
            f'[cloud]\nurl = "{self.uplink_url}"\n'
            '[sync]\nmetrics_listen = ""\n'
        )
        if self.printer_uri is not None:
            text += f'[[printers]]\nname = "front"\nuri = "{self.printer_uri}"\n'
        self.agent_config.write_text(text)

    async def wait_cloud(self) -> None:
        await wait_http_ok(f"{self.cloud_url}/v1/sync-status", self.cloud)

    async def wait_agent(self) -> None:
        await wait_http_ok(f"http://127.0.0.1:{self.api_port}/v1/status", self.agent, POS_KEY)

    async def post_sale(self, session: aiohttp.ClientSession, sale: dict[str, Any]) -> int:
        """POST a sale to the agent; the HTTP status."""
        async with session.post(
            f"http://127.0.0.1:{self.api_port}/v1/sales",
            json=sale,
            headers={"Authorization": f"Bearer {POS_KEY}"},
        ) as resp:
            await resp.read()
            return resp.status

    async def cloud_sales(self) -> list[str]:
        """sale_id of every sale the cloud holds, from the HQ export (repeats kept)."""
        out = await run_cli(
            "storelink-cloud",
            "export",
            "sales",
            "--config",
            str(self.cloud_config),
            "--format",
            "ndjson",
            "--out",
            "-",
        )
        return [json.loads(line)["sale_id"] for line in out.splitlines() if line.strip()]

    async def sync_status(self) -> dict[str, Any]:
        """``storelink-sync status --json``."""
        out = await run_cli(
            "storelink-sync", "status", "--config", str(self.agent_config), "--json"
        )
        result: dict[str, Any] = json.loads(out)
        return result


async def wait_http_ok(url: str, service: Service | None, token: str | None = None) -> None:
    """Wait until ``url`` answers below 500, failing early if ``service`` exits."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        for _ in range(400):
            if service is not None and not service.running:
                raise AssertionError(f"{service.name} exited; see {service.log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url, headers=headers) as resp:
                    if resp.status < 500:
                        return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


def sale_body(i: int, *, at: datetime | None = None, member: str | None = None) -> dict[str, Any]:
    """A valid sale for the POS API."""
    price = 10_000 + i
    body: dict[str, Any] = {
        "sale_id": str(uuid.uuid4()),
        "register_id": f"R{i % 3 + 1}",
        "staff_id": f"A{i % 5:02d}",
        "lines": [{"sku": f"SKU-{i % 50}", "name": "Trail socks", "qty": 1, "unit_price": price}],
        "payments": [{"method": "card", "amount": price}],
        "total": price,
        "currency": "CNY",
        "occurred_at": (at or datetime.now(UTC)).isoformat(),
    }
    if member is not None:
        body["member_id"] = member
    return body
