"""Live capture of probe requests on a monitor-mode Wi-Fi interface.

scapy only opens the raw socket (``conf.L2listen``, Linux PF_PACKET) with a kernel BPF filter
so that nothing but probe requests reaches Python; the raw bytes go to
:class:`~drivers.wifi.probe.ProbeParser` (scapy never dissects a frame). ``iw`` checks and
sets monitor mode and hops channels. Blocking work (the socket, ``iw``) runs in threads; probes
reach the event loop in batches through ``loop.call_soon_threadsafe``.

Errors::

    CaptureError                    the capture cannot start or stopped
    ├── InterfaceMissing            no such network interface (/sys/class/net)
    ├── MonitorModeUnavailable      the adapter cannot be put in monitor mode
    └── CapturePermissionError      (also PermissionError) CAP_NET_RAW / CAP_NET_ADMIN missing
"""

from __future__ import annotations

import asyncio
import logging
import re
import select
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from drivers.wifi.probe import (
    LINKTYPE_IEEE802_11,
    LINKTYPE_IEEE802_11_RADIOTAP,
    ProbeParser,
    ProbeRequest,
)

log = logging.getLogger(__name__)

# Kernel filter: management frames of subtype 4 only (libpcap syntax, 802.11 link types).
PROBE_REQUEST_FILTER = "type mgt subtype probe-req"
SYS_CLASS_NET = Path("/sys/class/net")
_POLL_S = 0.25  # how often the receive thread looks at the stop flag
_MAX_FRAME = 65535
_PRIVILEGE_HINT = (
    "capturing Wi-Fi frames needs CAP_NET_RAW (raw socket) and CAP_NET_ADMIN (monitor mode, "
    "channels): run the agent as root or grant them, e.g. AmbientCapabilities="
    "CAP_NET_RAW CAP_NET_ADMIN in its systemd unit"
)
# scapy's link-layer class of the socket -> pcap link type of the bytes it delivers.
_LINKTYPES = {"RadioTap": LINKTYPE_IEEE802_11_RADIOTAP, "Dot11": LINKTYPE_IEEE802_11}


class CaptureError(Exception):
    """The live capture could not start, or stopped."""


class InterfaceMissing(CaptureError):
    """The configured interface does not exist."""


class MonitorModeUnavailable(CaptureError):
    """The interface's adapter does not support monitor mode, or refused to switch."""


class CapturePermissionError(CaptureError, PermissionError):
    """The process lacks CAP_NET_RAW / CAP_NET_ADMIN."""


Runner = Callable[[Sequence[str]], str]


def run_command(argv: Sequence[str]) -> str:
    """Run ``argv`` (blocking); its stdout, or an error naming the command and its stderr."""
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv of iw/ip, no shell
            list(argv), capture_output=True, text=True, timeout=10, check=False
        )
    except FileNotFoundError as err:
        raise CaptureError(f"{argv[0]} is not installed (needed for: {' '.join(argv)})") from err
    except subprocess.TimeoutExpired as err:
        raise CaptureError(f"{' '.join(argv)} did not answer within 10 s") from err
    if done.returncode:
        message = f"{' '.join(argv)} failed: {done.stderr.strip() or done.returncode}"
        if "Operation not permitted" in done.stderr or done.returncode == -1:
            raise CapturePermissionError(f"{message}; {_PRIVILEGE_HINT}")
        raise CaptureError(message)
    return done.stdout


def monitor_mode_commands(interface: str) -> list[list[str]]:
    """The commands that put ``interface`` in monitor mode (the link must be down meanwhile)."""
    return [
        ["ip", "link", "set", interface, "down"],
        ["iw", "dev", interface, "set", "type", "monitor"],
        ["ip", "link", "set", interface, "up"],
    ]


def set_channel_command(interface: str, channel: int) -> list[str]:
    """The command that tunes ``interface`` to ``channel``."""
    return ["iw", "dev", interface, "set", "channel", str(channel)]


def parse_dev_info(text: str) -> tuple[str | None, int | None]:
    """``(type, wiphy index)`` from the output of ``iw dev X info``."""
    kind = re.search(r"^\s*type (\S+)", text, re.MULTILINE)
    wiphy = re.search(r"^\s*wiphy (\d+)", text, re.MULTILINE)
    return (kind.group(1) if kind else None, int(wiphy.group(1)) if wiphy else None)


def phy_supports_monitor(text: str) -> bool:
    """Whether ``iw phy phyN info`` lists monitor among the supported interface modes."""
    section = re.search(r"Supported interface modes:\n((?:\s+\* .*\n?)+)", text)
    if section is None:
        return False
    return re.search(r"\*\s+monitor\b", section.group(1)) is not None


def compile_probe_filter(linktype: int = LINKTYPE_IEEE802_11_RADIOTAP) -> Any:
    """The kernel BPF program for :data:`PROBE_REQUEST_FILTER` (libpcap, through scapy)."""
    from scapy.arch.common import compile_filter

    return compile_filter(PROBE_REQUEST_FILTER, linktype=linktype)


def ensure_monitor_mode(
    interface: str, run: Runner = run_command, sys_class_net: Path = SYS_CLASS_NET
) -> None:
    """Check ``interface`` exists and is in monitor mode, switching it if needed (blocking)."""
    if not (sys_class_net / interface).exists():
        raise InterfaceMissing(
            f"Wi-Fi interface {interface!r} does not exist (not in {sys_class_net}); "
            "check the [wifi] interface setting and that the adapter is plugged in"
        )
    kind, wiphy = parse_dev_info(run(["iw", "dev", interface, "info"]))
    if kind == "monitor":
        return
    if wiphy is None:
        raise MonitorModeUnavailable(f"{interface!r} is not a wireless interface (iw dev info)")
    if not phy_supports_monitor(run(["iw", "phy", f"phy{wiphy}", "info"])):
        raise MonitorModeUnavailable(
            f"the adapter of {interface!r} (phy{wiphy}) does not support monitor mode"
        )
    log.info("switching %s from %s to monitor mode", interface, kind)
    for argv in monitor_mode_commands(interface):
        run(argv)
    kind, _ = parse_dev_info(run(["iw", "dev", interface, "info"]))
    if kind != "monitor":
        raise MonitorModeUnavailable(f"{interface!r} stayed in {kind} mode after iw set type")


class _Bridge:
    """Hands probes from the receive thread to the event loop, one callback per batch."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_probe: Callable[[ProbeRequest], None]
    ) -> None:
        self._loop = loop
        self._on_probe = on_probe
        self._lock = threading.Lock()
        self._pending: list[ProbeRequest] = []

    def put(self, probe: ProbeRequest) -> None:
        """Queue ``probe`` (any thread); wakes the loop only when the batch was empty."""
        with self._lock:
            self._pending.append(probe)
            wake = len(self._pending) == 1
        if wake:
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        for probe in batch:
            self._on_probe(probe)


class ProbeCapture:
    """Sniffs probe requests on ``interface`` while hopping ``channels``.

    ``on_probe`` is called on the event loop for each probe request, in capture order.
    ``channels`` empty: stay on the current channel. ``manage_interface`` False: leave
    monitor mode and channels to someone else (e.g. a capture already set up by hand).
    """

    def __init__(
        self,
        interface: str,
        channels: Sequence[int],
        dwell_s: float,
        parser: ProbeParser,
        on_probe: Callable[[ProbeRequest], None],
        *,
        manage_interface: bool = True,
        run: Runner = run_command,
    ) -> None:
        if dwell_s <= 0:
            raise ValueError(f"dwell_s must be positive, got {dwell_s}")
        self.interface = interface
        self.channels = list(channels)
        self.dwell_s = dwell_s
        self.parser = parser
        self._on_probe = on_probe
        self._manage = manage_interface
        self._run = run
        self._stop = threading.Event()

    async def run(self) -> None:
        """Capture until cancelled; raises a :class:`CaptureError` if it cannot go on."""
        loop = asyncio.get_running_loop()
        if self._manage:
            await asyncio.to_thread(ensure_monitor_mode, self.interface, self._run)
            if len(self.channels) == 1:
                # Tuned before the socket opens: a refusal must not leave a receive thread behind.
                await asyncio.to_thread(
                    self._run, set_channel_command(self.interface, self.channels[0])
                )
        sock = await asyncio.to_thread(self._open)
        self._stop.clear()
        bridge = _Bridge(loop, self._on_probe)
        # The receive thread owns the socket from here on and closes it when it ends.
        rx = asyncio.create_task(asyncio.to_thread(self._receive, sock, bridge), name="wifi-rx")
        hop: asyncio.Task[None] | None = None
        if self._manage and len(self.channels) > 1:
            hop = asyncio.create_task(asyncio.to_thread(self._hop), name="wifi-hop")
        try:
            await rx  # ends only on an error or stop()
        finally:
            # Cancelling the task cannot interrupt its thread: the flag does, within _POLL_S.
            self._stop.set()
            if hop is not None:
                await asyncio.wait({hop})

    def stop(self) -> None:
        """Ask the capture threads to end (they finish within a quarter of a second)."""
        self._stop.set()

    def _open(self) -> Any:
        """scapy's PF_PACKET listening socket with the probe-request filter attached."""
        import scapy.arch  # noqa: F401 - chooses the platform's sockets, sets conf.L2listen
        from scapy.config import conf
        from scapy.error import Scapy_Exception

        try:
            return conf.L2listen(iface=self.interface, filter=PROBE_REQUEST_FILTER)
        except PermissionError as err:
            raise CapturePermissionError(
                f"cannot open a raw socket on {self.interface!r}: {_PRIVILEGE_HINT}"
            ) from err
        except (OSError, ValueError, Scapy_Exception) as err:
            # scapy raises Scapy_Exception when libpcap cannot compile the 802.11 filter for
            # the interface's link type: the interface is not in monitor mode.
            raise CaptureError(
                f"cannot capture probe requests on {self.interface!r}: {err}"
            ) from err

    def _receive(self, sock: Any, bridge: _Bridge) -> None:
        """The receive thread: raw frames -> parser -> bridge, until stopped."""
        linktype = _LINKTYPES.get(getattr(sock.LL, "__name__", ""))
        if linktype is None:
            sock.close()
            raise CaptureError(
                f"{self.interface!r} delivers {sock.LL.__name__} frames, not 802.11 with "
                "radiotap: is it in monitor mode?"
            )
        try:
            self._pump(sock, bridge, linktype)
        finally:
            sock.close()

    def _pump(self, sock: Any, bridge: _Bridge, linktype: int) -> None:
        parse = self.parser.parse
        stop = self._stop
        while not stop.is_set():
            ready, _, _ = select.select([sock], [], [], _POLL_S)
            if not ready:
                continue
            try:
                _, frame, ts = sock.recv_raw(_MAX_FRAME)
            except OSError as err:
                if stop.is_set():
                    return
                raise CaptureError(f"capture on {self.interface!r} failed: {err}") from err
            if frame is None:
                continue
            probe = parse(frame, int((ts or time.time()) * 1_000_000), linktype)
            if probe is not None:
                bridge.put(probe)

    def _hop(self) -> None:
        """The channel-hopping thread: each channel in turn for ``dwell_s``, until stopped."""
        failed: set[int] = set()
        while not self._stop.is_set():
            for channel in self.channels:
                try:
                    self._run(set_channel_command(self.interface, channel))
                    failed.discard(channel)
                except CaptureError as err:
                    # Logged once per channel until it works again (a regulatory domain may
                    # forbid a channel; the others still count).
                    if channel not in failed:
                        log.warning(
                            "cannot tune %s to channel %d: %s", self.interface, channel, err
                        )
                        failed.add(channel)
                if self._stop.wait(self.dwell_s):
                    return
