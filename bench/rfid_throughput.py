"""RFID throughput: 4 simulated LLRP readers at 1,100 reads/s each into a running agent process.

The simulators (drivers/rfid/simulator.py, the "throughput" scenario) run in this process; the
agent is ``storelink-agent run --config ...`` as a subprocess, reading them through the real
sllurp client. Reads lost = reads the scenarios generated minus reads the agent stored (its
per-second ``rfid_reads`` sums, after it stopped cleanly); must be 0. CPU is the agent
process's user + system time over the wall time while reads flow, as a fraction of one core.

    .venv/bin/python bench/rfid_throughput.py [--seconds 60] [--readers 4] [--rate 1100]

Last line: {"metric": "rfid_cpu_fraction", "value": ..., "target": "<=0.25", "lost": ...}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs installed here

from drivers.rfid.scenarios import throughput
from drivers.rfid.simulator import ReaderSimulator
from tests.helpers import agent_toml, free_port

BIN = Path(sys.executable).parent
LEAD_S = 8.0  # reads start this long after the simulators listen: the agent connects first
ANTENNAS = 4


def agent_config(data_dir: Path, ports: list[int]) -> str:
    """An agent config: no printer, one [[rfid.readers]] per simulator, 4 rooms each."""
    text = "[rfid]\n"
    for i, port in enumerate(ports, 1):
        rooms = ", ".join(f'"{a}" = "r{i}-room-{a}"' for a in range(1, ANTENNAS + 1))
        text += (
            f'[[rfid.readers]]\nname = "reader-{i}"\nhost = "127.0.0.1:{port}"\n'
            f"rooms = {{{rooms}}}\n"
        )
    return agent_toml(data_dir, free_port(), None, extra=text)


def stored_reads(db: Path) -> int:
    """Reads the agent has committed to its raw-read table."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (count,) = conn.execute("SELECT coalesce(sum(reads), 0) FROM rfid_reads").fetchone()
    finally:
        conn.close()
    return int(count)


async def wait_stored(db: Path, expected: int, timeout_s: float) -> int:
    """Poll the agent's database until it holds ``expected`` reads or stops growing."""
    deadline = time.monotonic() + timeout_s
    last, still = -1, 0
    while time.monotonic() < deadline:
        count = await asyncio.to_thread(stored_reads, db)
        if count >= expected:
            return count
        still = still + 1 if count == last else 0
        if still >= 10:  # 5 s without progress
            return count
        last = count
        await asyncio.sleep(0.5)
    return last


async def run(seconds: float, readers: int, rate: int, workdir: Path) -> dict[str, float | int]:
    """One run; the figures."""
    origin = time.time_ns() // 1000 + round(LEAD_S * 1e6)
    scenarios = [
        throughput(seed=i + 1, start_us=origin, duration_s=seconds, reads_per_s=rate)
        for i in range(readers)
    ]
    generated = readers * int(rate * seconds)
    async with contextlib.AsyncExitStack() as stack:
        sims = [
            await stack.enter_async_context(
                ReaderSimulator(port=free_port(), reads=sc.iter_reads())
            )
            for sc in scenarios
        ]
        data_dir = workdir / "data"
        config = workdir / "agent.toml"
        await asyncio.to_thread(config.write_text, agent_config(data_dir, [s.port for s in sims]))
        log = await asyncio.to_thread((workdir / "agent.log").open, "wb")
        stack.callback(log.close)
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "storelink-agent"),
            "run",
            "--config",
            str(config),
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        agent = psutil.Process(proc.pid)
        try:
            await asyncio.gather(*(sim.wait_inventorying(LEAD_S) for sim in sims))
            await asyncio.sleep(max(0.0, origin / 1e6 - time.time()))
            cpu0, wall0 = sum(agent.cpu_times()[:2]), time.monotonic()
            await asyncio.sleep(seconds)
            cpu1, wall1 = sum(agent.cpu_times()[:2]), time.monotonic()
            rss_mb = agent.memory_info().rss / 2**20
            # The last reports leave within a report interval; then wait for them to be stored.
            deadline = time.monotonic() + 10
            while sum(s.reads_sent + s.reads_dropped for s in sims) < generated:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            await wait_stored(data_dir / "agent.db", generated, 30)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        sent = sum(s.reads_sent for s in sims)
        dropped = sum(s.reads_dropped for s in sims)
    stored = await asyncio.to_thread(stored_reads, data_dir / "agent.db")
    return {
        "generated": generated,
        "sent": sent,
        "dropped_by_simulators": dropped,
        "stored": stored,
        "lost": generated - stored,
        "cpu_s": cpu1 - cpu0,
        "wall_s": wall1 - wall0,
        "rss_mb": rss_mb,
        "exit_code": proc.returncode if proc.returncode is not None else -1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of reads (>= 60)")
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--rate", type=int, default=1100, help="reads/s per reader")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(run(args.seconds, args.readers, args.rate, Path(tmp)))
        if figures["lost"]:
            print((Path(tmp) / "agent.log").read_text()[-3000:], file=sys.stderr)
    fraction = figures["cpu_s"] / figures["wall_s"]
    print(
        f"{args.readers} readers x {args.rate} reads/s for {figures['wall_s']:.1f} s: "
        f"generated {figures['generated']:,}, sent {figures['sent']:,}, "
        f"dropped by simulators {figures['dropped_by_simulators']:,}, "
        f"stored by the agent {figures['stored']:,}"
    )
    print(
        f"agent CPU {figures['cpu_s']:.2f} s over {figures['wall_s']:.1f} s = "
        f"{fraction:.3f} of one core; RSS {figures['rss_mb']:.0f} MB; "
        f"agent exit code {figures['exit_code']}"
    )
    print(
        json.dumps(
            {
                "metric": "rfid_cpu_fraction",
                "value": round(fraction, 3),
                "target": "<=0.25",
                "lost": figures["lost"],
            }
        )
    )


if __name__ == "__main__":
    main()
