"""sd_notify: readiness, stopping and watchdog pings from the real agent, and the hang test.

systemd is not PID 1 here: each test binds the AF_UNIX datagram socket systemd would, and
hands it to the process as ``NOTIFY_SOCKET``, exactly as systemd does for a Type=notify unit.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster

from agent.sdnotify import Notifier, pinging
from tests.helpers import agent_toml, free_port

AGENT = Path(sys.executable).parent / "storelink-agent"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound, non-blocking datagram socket in the filesystem, and its path."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield sock, path
    finally:
        sock.close()


async def _next_message(sock: socket.socket, proc: asyncio.subprocess.Process) -> str:
    loop = asyncio.get_running_loop()
    receive = asyncio.ensure_future(loop.sock_recv(sock, 4096))
    exited = asyncio.ensure_future(proc.wait())
    done, _ = await asyncio.wait({receive, exited}, timeout=30, return_when="FIRST_COMPLETED")
    exited.cancel()
    if receive not in done:
        receive.cancel()
        raise AssertionError(f"no notify message (agent exit code {proc.returncode})")
    return receive.result().decode()


async def test_the_agent_notifies_ready_pings_the_watchdog_and_says_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    api_port = free_port()
    config = tmp_path / "agent.toml"
    await asyncio.to_thread(config.write_text, agent_toml(tmp_path / "data", api_port, None))
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
    env.pop("WATCHDOG_PID", None)
    log = await asyncio.to_thread((tmp_path / "agent.log").open, "wb")
    try:
        proc = await asyncio.create_subprocess_exec(
            str(AGENT), "run", "--config", str(config), env=env, stdout=log, stderr=log
        )
    finally:
        await asyncio.to_thread(log.close)
    try:
        # Watchdog pings start before readiness: opening the database may take a while.
        ready = await _next_message(sock, proc)
        while ready == "WATCHDOG=1":
            ready = await _next_message(sock, proc)
        assert ready.splitlines()[0] == "READY=1"
        assert f"STATUS=store S001: POS API on 127.0.0.1:{api_port}" in ready.splitlines()
        # READY comes only once the API listens.
        _, writer = await asyncio.open_connection("127.0.0.1", api_port)
        writer.close()
        started = time.monotonic()
        pings = [await _next_message(sock, proc) for _ in range(5)]
        assert pings == ["WATCHDOG=1"] * 5
        # Half of WATCHDOG_USEC: five pings take about 0.4 s (the first is immediate).
        assert 0.3 < time.monotonic() - started < 2.0
        proc.send_signal(signal.SIGTERM)
        message = await _next_message(sock, proc)
        while message == "WATCHDOG=1":
            message = await _next_message(sock, proc)
        assert message.splitlines() == ["STOPPING=1", "STATUS=stopping"]
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _receive_until(sock: socket.socket, stop: threading.Event, arrivals: list[float]) -> None:
    sock.settimeout(0.05)
    while not stop.is_set():
        try:
            if sock.recv(64) == b"WATCHDOG=1":
                arrivals.append(time.monotonic())
        except TimeoutError:
            continue


async def test_a_hung_event_loop_stops_the_watchdog_pings(blockbuster: BlockBuster) -> None:
    # Abstract namespace ("@..."), as systemd sometimes passes it; no file to clean up.
    name = f"@storelink-test-{uuid.uuid4().hex}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name[1:])
    arrivals: list[float] = []
    stop = threading.Event()
    thread = threading.Thread(target=_receive_until, args=(receiver, stop, arrivals))
    thread.start()
    notifier = Notifier(name, watchdog_usec=100_000)  # a ping every 50 ms
    try:
        async with pinging(notifier):
            await asyncio.sleep(0.5)
            # The hang: a blocking call on the loop, which blockbuster would rightly refuse.
            blockbuster.functions["time.sleep"].deactivate()
            hang_start = time.monotonic()
            time.sleep(1.0)  # noqa: ASYNC251 - the point of the test
            hang_end = time.monotonic()
            blockbuster.functions["time.sleep"].activate()
            await asyncio.sleep(0.5)
    finally:
        notifier.close()
        stop.set()
        await asyncio.to_thread(thread.join, 5)
        receiver.close()
    before = [t for t in arrivals if t < hang_start]
    during = [t for t in arrivals if hang_start + 0.02 < t < hang_end]
    after = [t for t in arrivals if t > hang_end]
    assert len(before) >= 5
    assert during == []
    # The first ping after the hang comes as soon as the loop runs again, then on schedule.
    assert len(after) >= 5
    assert after[0] - hang_end < 0.1
    # Outside the hang the gaps stay well under the 100 ms watchdog timeout.
    gaps = [b - a for a, b in itertools.pairwise(before)]
    assert max(gaps) < 0.1


def test_without_systemd_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    notifier.ready("up")
    notifier.watchdog()


def test_the_watchdog_interval_is_half_the_timeout_and_only_for_the_named_pid() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_environ(env).watchdog_interval_s == 15.0
    mine = {**env, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environ(mine).watchdog_interval_s == 15.0
    # A child that inherited its parent's environment must not ping for the parent.
    other = {**env, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environ(other).watchdog_interval_s is None
    assert Notifier.from_environ({"WATCHDOG_USEC": "30000000"}).watchdog_interval_s is None


async def test_a_missing_notify_socket_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "absent.sock"), watchdog_usec=100_000)
    try:
        for _ in range(3):
            notifier.watchdog()
    finally:
        notifier.close()
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1
