"""Checkout latency: POST /v1/sales → last receipt byte at the printer, p50 and p99.

The agent runs as its own process (``storelink-agent run``), started the way a store starts
it, printing to the printer emulator in this process. The baseline prints the same receipt
with bare python-escpos — the same python-escpos calls build it, then a ``Network`` printer
connects, sends and closes — to the same emulator, interleaved with the agent's sales.

    .venv/bin/python bench/checkout_latency.py [--sales 200]

Last line: {"metric": "checkout_p50_ratio", "value": ..., "target": "<=1.2"}
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from escpos.printer import Network

from agent.printing import receipt_from_sale
from agent.receipt import PaperProfile, Receipt, paper_profile, render_receipt
from agent.sale import parse_sale
from config.receipt_token import receipt_url
from drivers.printer.emulator import PrinterEmulator
from tests.helpers import POS_KEY, agent_toml, free_port, make_sale


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def bare_print(port: int, receipt: Receipt, profile: PaperProfile) -> None:
    """A POS printing with bare python-escpos: build the receipt, connect, send, close."""
    # A fresh token of the real length each time, as each sale has: a raster QR's cost
    # depends on its content (a constant token would be cheaper than any real one).
    token = base64.urlsafe_b64encode(secrets.token_bytes(89)).decode().rstrip("=")
    receipt = dataclasses.replace(receipt, qr_url=receipt.qr_url.rsplit("/", 1)[0] + "/" + token)
    data = render_receipt(receipt, profile)
    printer = Network("127.0.0.1", port, timeout=5)
    printer.open()
    printer._raw(data)
    printer.close()


def baseline_receipt(config_path: Path, sale: dict[str, Any]) -> tuple[Receipt, PaperProfile]:
    """The same receipt the agent prints, laid out by the same python-escpos calls."""
    from agent.config import load_config

    config = load_config(config_path)
    body = parse_sale(sale).model_dump(mode="json")
    url = receipt_url(config.cloud.url, "A" * 119)  # replaced by a fresh token at each print
    receipt = receipt_from_sale(config, body, "S001-000001", url)
    return receipt, paper_profile(config.printers[0].profile)


async def wait_jobs(emulator: PrinterEmulator, count: int) -> None:
    await emulator.wait_for_jobs(count, timeout=30)


async def run(sales: int, profile_name: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        width = paper_profile(profile_name).width_px
        async with PrinterEmulator(host="127.0.0.1", port=0, width_px=width) as emulator:
            api_port = free_port()
            config = work / "agent.toml"
            await asyncio.to_thread(
                config.write_text,
                agent_toml(work / "data", api_port, emulator.uri, profile=profile_name),
            )
            log = await asyncio.to_thread(open, os.environ.get("AGENT_LOG", os.devnull), "ab")
            proc = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "storelink-agent"),
                "run",
                "--config",
                str(config),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
            base = f"http://127.0.0.1:{api_port}"
            headers = {"Authorization": f"Bearer {POS_KEY}"}
            agent_ms: list[float] = []
            bare_ms: list[float] = []
            try:
                async with aiohttp.ClientSession(headers=headers) as session:
                    for _ in range(200):
                        try:
                            async with session.get(f"{base}/v1/status") as resp:
                                if resp.status == 200:
                                    break
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(0.05)
                    receipt, profile = await asyncio.to_thread(
                        baseline_receipt, config, make_sale(0)
                    )
                    # Warm-up: first connections, imports, caches on both paths.
                    for i in range(5):
                        expected = len(emulator.jobs) + 2
                        async with session.post(f"{base}/v1/sales", json=make_sale(i)) as resp:
                            assert resp.status == 201, await resp.text()
                        await asyncio.to_thread(bare_print, emulator.port, receipt, profile)
                        await wait_jobs(emulator, expected)
                    for i in range(sales):
                        sale = make_sale(i)
                        expected = len(emulator.jobs) + 1
                        started = time.perf_counter()
                        async with session.post(f"{base}/v1/sales", json=sale) as resp:
                            assert resp.status == 201, await resp.text()
                        await wait_jobs(emulator, expected)
                        agent_ms.append((emulator.jobs[-1].last_byte_at - started) * 1000)

                        expected = len(emulator.jobs) + 1
                        started = time.perf_counter()
                        await asyncio.to_thread(bare_print, emulator.port, receipt, profile)
                        await wait_jobs(emulator, expected)
                        bare_ms.append((emulator.jobs[-1].last_byte_at - started) * 1000)
            finally:
                proc.terminate()
                await proc.wait()
    return {
        "agent_p50_ms": percentile(agent_ms, 50),
        "agent_p99_ms": percentile(agent_ms, 99),
        "bare_p50_ms": percentile(bare_ms, 50),
        "bare_p99_ms": percentile(bare_ms, 99),
        "agent_mean_ms": statistics.fmean(agent_ms),
        "bare_mean_ms": statistics.fmean(bare_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=200)
    parser.add_argument(
        "--profile",
        default="TM-T88V",
        help="printer profile: TM-T88V (80 mm, native QR) or e.g. POS-5890 (58 mm, image QR)",
    )
    args = parser.parse_args()
    figures = asyncio.run(run(args.sales, args.profile))
    print(
        f"profile {args.profile}: {args.sales} sales through the agent, "
        f"{args.sales} bare python-escpos prints"
    )
    print(
        f"agent  POST -> last byte: p50 {figures['agent_p50_ms']:.2f} ms, "
        f"p99 {figures['agent_p99_ms']:.2f} ms"
    )
    print(
        f"bare python-escpos print: p50 {figures['bare_p50_ms']:.2f} ms, "
        f"p99 {figures['bare_p99_ms']:.2f} ms"
    )
    ratio = figures["agent_p50_ms"] / figures["bare_p50_ms"]
    print(json.dumps({"metric": "checkout_p50_ratio", "value": round(ratio, 3), "target": "<=1.2"}))


if __name__ == "__main__":
    os.environ.setdefault("TZ", "UTC")
    _ = datetime.now(UTC)
    main()
