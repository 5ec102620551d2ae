"""The parser on the real captures in ../shared/data/wifi (skipped when that data is absent)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from itertools import islice
from pathlib import Path

import pytest
from scapy.layers.dot11 import Dot11, RadioTap

from drivers.wifi.batch import BatchParser
from drivers.wifi.probe import ProbeParser, iter_probes, read_pcap, read_pcap_bytes

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "wifi"
LAB = DATA / "lab-occupancy-dev"
LABELLED = DATA / "device-labelled"
KEY = bytes(range(32))

pytestmark = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"shared Wi-Fi captures not present at {DATA}"
)


def hasher(mac: bytes) -> bytes:
    return hashlib.blake2b(mac, key=KEY, digest_size=16).digest()


def all_pcaps() -> list[Path]:
    return sorted(DATA.glob("*/*.pcap")) if DATA.is_dir() else []


def test_every_capture_parses() -> None:
    paths = all_pcaps()
    assert len(paths) >= 30
    for path in paths:
        parser = ProbeParser(hasher)
        probes = sum(1 for _ in iter_probes(path, parser))
        stats = parser.stats
        assert probes == stats.probes > 0, path.name
        assert stats.frames == stats.probes + stats.not_probe + stats.malformed, path.name
        # The sniffers keep probe requests only, and whole frames.
        assert stats.malformed <= stats.frames // 100, (path.name, stats)
        assert stats.truncated_records == 0, path.name


@pytest.mark.parametrize(
    "path",
    [
        LAB / "sc6-61_2024-02-08_anonymized.pcap",  # ESP32: Channel, signal, antenna
        LABELLED / "OppoFindX3Neo-A_anonymized.pcap",  # Flags with FCS, rate, channel, signal
    ],
    ids=lambda p: p.name,
)
def test_fields_match_scapy(path: Path) -> None:
    parser = ProbeParser(hasher)
    compared = 0
    for ts_us, frame, linktype in islice(read_pcap(path), 500):
        ours = parser.parse(frame, ts_us, linktype)
        theirs = RadioTap(bytes(frame))
        dot11 = theirs[Dot11]
        assert ours is not None
        assert ours.rssi == theirs.dBm_AntSignal
        assert ours.freq == theirs.ChannelFrequency
        assert ours.seq == dot11.SC >> 4
        mac = bytes.fromhex(dot11.addr2.replace(":", ""))
        assert ours.device == hasher(mac)
        assert ours.local_admin == bool(mac[0] & 2)
        assert ours.ts_us == ts_us
        compared += 1
    assert compared == 500


def test_labelled_phones_have_few_fingerprints() -> None:
    """One phone per file: its many randomised MACs collapse to a handful of fingerprints."""
    for path in sorted(LABELLED.glob("*.pcap")):
        macs: set[bytes] = set()
        per_fingerprint: defaultdict[int, int] = defaultdict(int)
        for probe in iter_probes(path, ProbeParser(hasher)):
            macs.add(probe.device)
            per_fingerprint[probe.fingerprint] += 1
        # The most common fingerprint covers most of the phone's probes.
        assert max(per_fingerprint.values()) >= 0.7 * sum(per_fingerprint.values()), path.name
        assert len(per_fingerprint) <= 3, path.name


def test_batch_parser_matches_per_frame_parser() -> None:
    """Every frame of every shared capture: the same probe requests, counts and order."""
    for path in all_pcaps():
        data = path.read_bytes()
        single = ProbeParser(hasher)
        expected = [
            probe
            for ts_us, frame, linktype in read_pcap_bytes(data, path, single.stats)
            if (probe := single.parse(frame, ts_us, linktype)) is not None
        ]
        batch = BatchParser(ProbeParser(hasher))
        got = [probe for columns in batch.parse_capture(data, path) for probe in columns.probes()]
        assert got == expected, path.name
        assert batch.stats == single.stats, path.name
