"""Live capture: what can run without a Wi-Fi adapter.

No monitor-mode adapter exists here, so ``iw`` answers are canned where an adapter would be
needed (the runner is the one external boundary). Real parts: /sys/class/net, libpcap's
filter compiler through scapy, scapy's raw socket on ``lo``, the ``iw`` binary itself, and
the receive thread feeding the event loop through a real datagram socket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from drivers.wifi.capture import (
    PROBE_REQUEST_FILTER,
    CaptureError,
    CapturePermissionError,
    InterfaceMissing,
    MonitorModeUnavailable,
    ProbeCapture,
    _Bridge,
    compile_probe_filter,
    ensure_monitor_mode,
    monitor_mode_commands,
    parse_dev_info,
    phy_supports_monitor,
    run_command,
    set_channel_command,
)
from drivers.wifi.probe import ProbeParser, ProbeRequest
from tests import wifi_pcap as wp

DEV_INFO_MANAGED = """Interface wlan1
\tifindex 5
\twdev 0x100000001
\taddr 00:c0:ca:98:76:54
\ttype managed
\twiphy 1
\ttxpower 20.00 dBm
"""
DEV_INFO_MONITOR = DEV_INFO_MANAGED.replace("type managed", "type monitor")
PHY_INFO = """Wiphy phy1
\tmax # scan SSIDs: 4
\tSupported interface modes:
\t\t * IBSS
\t\t * managed
\t\t * AP
\t\t * monitor
\t\t * mesh point
\tBand 1:
\t\tCapabilities: 0x186e
"""
PHY_INFO_NO_MONITOR = PHY_INFO.replace("\t\t * monitor\n", "")


class CannedIw:
    """Answers iw/ip like an adapter would; records every command."""

    def __init__(self, phy_info: str = PHY_INFO, *, start_in_monitor: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.monitor = start_in_monitor
        self.phy_info = phy_info
        self.failing_channels: set[int] = set()
        self.lock = threading.Lock()

    def __call__(self, argv: Sequence[str]) -> str:
        with self.lock:
            self.calls.append(list(argv))
        if argv[:2] == ["iw", "dev"] and argv[-1] == "info":
            return DEV_INFO_MONITOR if self.monitor else DEV_INFO_MANAGED
        if argv[:2] == ["iw", "phy"]:
            return self.phy_info
        if argv[-2:] == ["type", "monitor"]:
            self.monitor = "monitor" in self.phy_info
            return ""
        if argv[-2] == "channel" and int(argv[-1]) in self.failing_channels:
            raise CaptureError(f"{' '.join(argv)} failed: Invalid argument (-22)")
        return ""


@pytest.fixture
def sys_net(tmp_path: Path) -> Path:
    """A /sys/class/net look-alike holding wlan1."""
    (tmp_path / "wlan1").mkdir()
    return tmp_path


def test_commands() -> None:
    assert monitor_mode_commands("wlan1") == [
        ["ip", "link", "set", "wlan1", "down"],
        ["iw", "dev", "wlan1", "set", "type", "monitor"],
        ["ip", "link", "set", "wlan1", "up"],
    ]
    assert set_channel_command("wlan1", 11) == ["iw", "dev", "wlan1", "set", "channel", "11"]


def test_iw_output_parsing() -> None:
    assert parse_dev_info(DEV_INFO_MANAGED) == ("managed", 1)
    assert parse_dev_info(DEV_INFO_MONITOR) == ("monitor", 1)
    assert parse_dev_info("") == (None, None)
    assert phy_supports_monitor(PHY_INFO)
    assert not phy_supports_monitor(PHY_INFO_NO_MONITOR)
    assert not phy_supports_monitor("Wiphy phy0\n")


def test_switches_to_monitor_mode(sys_net: Path) -> None:
    iw = CannedIw()
    ensure_monitor_mode("wlan1", iw, sys_net)
    assert iw.calls == [
        ["iw", "dev", "wlan1", "info"],
        ["iw", "phy", "phy1", "info"],
        *monitor_mode_commands("wlan1"),
        ["iw", "dev", "wlan1", "info"],
    ]


def test_already_in_monitor_mode_is_left_alone(sys_net: Path) -> None:
    iw = CannedIw(start_in_monitor=True)
    ensure_monitor_mode("wlan1", iw, sys_net)
    assert iw.calls == [["iw", "dev", "wlan1", "info"]]


def test_adapter_without_monitor_mode(sys_net: Path) -> None:
    iw = CannedIw(PHY_INFO_NO_MONITOR)
    with pytest.raises(MonitorModeUnavailable, match=r"'wlan1' \(phy1\) does not support"):
        ensure_monitor_mode("wlan1", iw, sys_net)
    assert ["iw", "dev", "wlan1", "set", "type", "monitor"] not in iw.calls


async def test_missing_interface_is_named() -> None:
    """The real /sys/class/net: no such interface; nothing else is attempted."""
    iw = CannedIw()
    capture = ProbeCapture(
        "wlan-nope7", [1, 6, 11], 0.25, ProbeParser(bytes), lambda p: None, run=iw
    )
    with pytest.raises(InterfaceMissing, match="'wlan-nope7' does not exist"):
        await capture.run()
    assert iw.calls == []


def test_real_iw_error_names_the_command() -> None:
    with pytest.raises(CaptureError, match=r"iw dev wlan-nope7 info failed: .+"):
        run_command(["iw", "dev", "wlan-nope7", "info"])


def test_missing_tool() -> None:
    with pytest.raises(CaptureError, match="not-a-tool-4711 is not installed"):
        run_command(["not-a-tool-4711", "dev"])


def test_permission_error_says_which_capabilities() -> None:
    """iw's own wording when CAP_NET_ADMIN is missing, from a real process."""
    argv = ["sh", "-c", "echo 'command failed: Operation not permitted (-1)' >&2; exit 1"]
    with pytest.raises(CapturePermissionError, match=r"CAP_NET_RAW.+CAP_NET_ADMIN") as caught:
        run_command(argv)
    assert isinstance(caught.value, PermissionError)


@pytest.mark.parametrize("linktype", [127, 105])
def test_probe_filter_compiles_with_libpcap(linktype: int) -> None:
    program = compile_probe_filter(linktype)
    assert program.bf_len > 2


async def test_non_wifi_interface_is_refused_by_the_kernel_filter() -> None:
    """scapy's real raw socket on lo: libpcap cannot compile an 802.11 filter for it."""
    capture = ProbeCapture(
        "lo", [], 0.25, ProbeParser(bytes), lambda p: None, manage_interface=False
    )
    with pytest.raises(CaptureError, match=r"'lo'.+802\.11") as caught:
        await capture.run()
    assert PROBE_REQUEST_FILTER in str(caught.value)


async def test_bridge_delivers_everything_in_order_on_the_loop() -> None:
    loop_thread = threading.get_ident()
    got: list[tuple[int, int]] = []
    bridge = _Bridge(
        asyncio.get_running_loop(), lambda probe: got.append((probe.seq, threading.get_ident()))
    )

    def produce() -> None:
        for i in range(5000):
            bridge.put(ProbeRequest(i, b"d", True, i, -50, 2412, 1, False))

    await asyncio.to_thread(produce)
    for _ in range(200):
        if len(got) == 5000:
            break
        await asyncio.sleep(0.01)
    assert got == [(i, loop_thread) for i in range(5000)]


class DatagramSource:
    """A real datagram socket standing in for scapy's monitor socket: same three calls."""

    LL = type("RadioTap", (), {})

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_raw(self, size: int) -> tuple[type, bytes, float]:
        return self.LL, self.sock.recv(size), 1_717_243_200.5

    def close(self) -> None:
        self.sock.close()


async def test_receive_thread_parses_and_hands_over() -> None:
    rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    got: list[ProbeRequest] = []
    parser = ProbeParser(lambda mac: mac[::-1])
    capture = ProbeCapture("wlan1", [], 0.25, parser, got.append, manage_interface=False)
    bridge = _Bridge(asyncio.get_running_loop(), got.append)
    source = DatagramSource(rx)
    thread = asyncio.create_task(asyncio.to_thread(capture._receive, source, bridge))
    probes = wp.burst(wp.Probe(mac="02:00:00:00:00:09", rssi=-70, freq=2462), 50)

    def send() -> None:
        for p in probes:
            tx.send(wp.probe_frame(p))
        tx.send(wp.beacon_frame("00:11:22:33:44:55"))
        tx.send(b"\x00\x00")

    await asyncio.to_thread(send)
    for _ in range(200):
        if len(got) == 50 and parser.stats.frames == 52:
            break
        await asyncio.sleep(0.01)
    capture.stop()
    await asyncio.wait_for(thread, 5)
    tx.close()
    assert [p.seq for p in got] == list(range(50))
    assert {(p.rssi, p.freq, p.ts_us, p.device) for p in got} == {
        (-70, 2462, 1_717_243_200_500_000, bytes.fromhex("090000000002"))
    }
    assert (parser.stats.not_probe, parser.stats.malformed) == (1, 1)
    assert rx.fileno() == -1  # the thread closed its socket


class DatagramCapture(ProbeCapture):
    """A capture whose monitor socket is a :class:`DatagramSource` (no adapter here)."""

    def __init__(self, source: DatagramSource, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = source
        self.opened = False

    def _open(self) -> DatagramSource:
        self.opened = True
        return self.source


async def test_refused_channel_leaves_no_receive_thread_behind() -> None:
    """One channel the adapter refuses: run() fails and no thread keeps a socket open."""
    rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    iw = CannedIw(start_in_monitor=True)
    iw.failing_channels = {13}
    capture = DatagramCapture(
        DatagramSource(rx), "lo", [13], 0.25, ProbeParser(bytes), lambda p: None, run=iw
    )
    try:
        with pytest.raises(CaptureError, match="set channel 13 failed"):
            await capture.run()
        for _ in range(100):  # a receive thread, if one started, closes its socket on stop
            if not capture.opened or rx.fileno() == -1:
                break
            await asyncio.sleep(0.01)
        assert not capture.opened or rx.fileno() == -1, "a receive thread outlived run()"
    finally:
        capture.stop()
        tx.close()
        rx.close()


async def test_channel_hopping_cycles_and_logs_a_bad_channel_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    iw = CannedIw()
    iw.failing_channels = {13}
    capture = ProbeCapture("wlan1", [1, 6, 13], 0.01, ProbeParser(bytes), lambda p: None, run=iw)
    hop = asyncio.create_task(asyncio.to_thread(capture._hop))
    with caplog.at_level(logging.WARNING, logger="drivers.wifi.capture"):
        for _ in range(300):
            if len(iw.calls) >= 9:
                break
            await asyncio.sleep(0.01)
        capture.stop()
        await asyncio.wait_for(hop, 5)
    channels = [int(c[-1]) for c in iw.calls]
    assert channels[:9] == [1, 6, 13] * 3
    assert [r.getMessage() for r in caplog.records] == [
        "cannot tune wlan1 to channel 13: iw dev wlan1 set channel 13 failed: "
        "Invalid argument (-22)"
    ]
