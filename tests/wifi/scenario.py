"""A two-hour shop-front capture with known devices, written with tests/wifi_pcap.py.

First ten minutes (window 1, T0 .. T0+600 s):

- ``iphone``: randomising, two fresh addresses per burst (as iOS does), a burst every 40 s,
  random sequence numbers, -55 dBm: one visitor;
- ``android``: randomising, one fresh address per burst, sequence number continuing, -60 dBm:
  one visitor;
- ``laptop``: a global address every 30 s at -50 dBm: one visitor;
- ``passer``: a global address, one burst at -85 dBm: a passer-by;
- ``ghost``: randomising with the iPhone's elements, one burst at -88 dBm: a passer-by;
- three truncated probe requests (malformed) and two beacons (not probes).

All two hours: ``printer``, a global address probing every 60 s (a fixed store device).
Directed probes carry SSIDs (``SSIDS``) that must never be stored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from tests import wifi_pcap as wp

SSIDS = (b"SmithFamilyHome", b"Office-5G-Guest", b"iPhone de Marie")
HOURS = 2


@dataclass
class Scenario:
    """The capture's frames and every address it contains."""

    frames: list[tuple[int, bytes]] = field(default_factory=list)
    macs: set[str] = field(default_factory=set)
    probes_in_first_window: int = 0

    def add(self, probe: wp.Probe) -> None:
        self.frames.append((probe.ts_us, wp.probe_frame(probe)))
        self.macs.add(str(probe.mac))
        if probe.ts_us < wp.T0 + 600_000_000:
            self.probes_in_first_window += 1

    def write(self, path: Path) -> Path:
        self.frames.sort(key=lambda f: f[0])
        return wp.write_pcap(path, self.frames)


def s(seconds: float) -> int:
    """T0 + seconds, in µs."""
    return wp.T0 + int(seconds * 1_000_000)


def build() -> Scenario:
    """The scenario of the module docstring."""
    rng = random.Random(5)
    sc = Scenario()
    for k in range(15):  # iphone: t = 10, 50, ... 570
        for a in range(2):
            probe = wp.Probe(
                mac=wp.random_mac(rng),
                ts_us=s(10 + 40 * k + 0.3 * a),
                seq=rng.randrange(0, 2000),
                rssi=-55,
                ssid=SSIDS[2] if a == 0 else b"",
                ies=wp.IPHONE_IES,
            )
            for p in wp.burst(probe, 2):
                sc.add(p)
    seq = 100
    for k in range(15):  # android: t = 20, 60, ... 580
        probe = wp.Probe(
            mac=wp.random_mac(rng),
            ts_us=s(20 + 40 * k),
            seq=seq,
            rssi=-60,
            ies=wp.ANDROID_IES,
            freq=2437,
            ssid=SSIDS[1] if k % 2 else b"",
        )
        for p in wp.burst(probe, 3):
            sc.add(p)
        seq += 3
    laptop = wp.random_mac(rng, local=False)
    for k in range(20):  # laptop: t = 5, 35, ... 575
        sc.add(
            wp.Probe(
                mac=laptop,
                ts_us=s(5 + 30 * k),
                seq=10 + k,
                rssi=-50,
                ies=wp.LAPTOP_IES,
                ssid=SSIDS[0],
            )
        )
    for p in wp.burst(
        wp.Probe(
            mac=wp.random_mac(rng, local=False), ts_us=s(300), seq=7, rssi=-85, ies=wp.ANDROID_IES
        ),
        2,
    ):
        sc.add(p)
    for p in wp.burst(
        wp.Probe(mac=wp.random_mac(rng), ts_us=s(325), seq=3000, rssi=-88, ies=wp.IPHONE_IES), 2
    ):
        sc.add(p)
    printer = wp.random_mac(rng, local=False)
    for k in range(HOURS * 60):  # printer: t = 30, 90, ... every minute for two hours
        sc.add(wp.Probe(mac=printer, ts_us=s(30 + 60 * k), seq=k, rssi=-45, ies=wp.LAPTOP_IES[:10]))
    truncated = wp.probe_frame(wp.Probe(mac=wp.random_mac(rng), ts_us=s(100)))
    for i, cut in enumerate((3, 7, 11)):  # cut inside the last element
        sc.frames.append((s(100 + i), truncated[:-cut]))
    for i in range(2):
        sc.frames.append((s(200 + i), wp.beacon_frame("00:11:22:33:44:55")))
    return sc
