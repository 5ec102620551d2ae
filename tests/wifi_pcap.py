"""Synthetic 802.11 captures for tests: radiotap + probe requests written as pcap/pcapng.

Build frames, then write them::

    from tests import wifi_pcap as wp

    phone = wp.Probe(mac="da:a1:19:00:00:01", ts_us=wp.T0, seq=100, rssi=-55, freq=2437,
                     ssid=b"HomeNet", ies=wp.IPHONE_IES)
    frames = [(p.ts_us, wp.probe_frame(p)) for p in wp.burst(phone, count=3)]
    frames.append((wp.T0 + 5, wp.beacon_frame("00:11:22:33:44:55")))      # not a probe
    frames.append((wp.T0 + 6, wp.probe_frame(phone)[:30]))                  # truncated
    wp.write_pcap(tmp_path / "cap.pcap", frames)                            # link type 127

``Probe`` describes one probe request (MAC, time, sequence number, signal, frequency, SSID,
the device's other elements); ``probe_frame`` renders it with a radiotap header (optionally
with FCS, a bad-FCS flag, TSFT, extended presence bitmaps or a vendor namespace, so the
parser's radiotap walk is exercised); ``dot11_probe`` renders the bare 802.11 frame (link
type 105). ``write_pcap`` writes classic pcap in either byte order, µs or ns timestamps, and
can cut the last record short; ``write_pcapng`` writes a minimal pcapng. ``IPHONE_IES``,
``ANDROID_IES`` and ``LAPTOP_IES`` are element sets (without SSID and DS Parameter Set) of
three distinct device models. ``random_mac`` draws locally administered (randomised) or
global addresses from a seeded ``random.Random``.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

T0 = 1_717_243_200_000_000  # 2024-06-01T12:00:00Z in µs: a fixed start for test captures
BROADCAST = "ff:ff:ff:ff:ff:ff"

LINKTYPE_RAW = 105
LINKTYPE_RADIOTAP = 127


def mac_bytes(mac: str | bytes) -> bytes:
    """``"aa:bb:cc:dd:ee:ff"`` (or 6 bytes) as 6 bytes."""
    if isinstance(mac, bytes):
        assert len(mac) == 6
        return mac
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    assert len(raw) == 6, mac
    return raw


def random_mac(rng: random.Random, *, local: bool = True) -> str:
    """A unicast MAC: locally administered (a randomised phone address) or global (OUI)."""
    raw = bytearray(rng.randbytes(6))
    raw[0] &= 0xFC  # unicast, global
    if local:
        raw[0] |= 0x02
    return ":".join(f"{b:02x}" for b in raw)


def element(eid: int, body: bytes) -> bytes:
    """One information element: id, length, body."""
    assert len(body) <= 255
    return bytes((eid, len(body))) + body


def freq_to_channel(freq: int) -> int:
    """The channel number of a 2.4 or 5 GHz centre frequency in MHz."""
    if freq == 2484:
        return 14
    if freq < 3000:
        return (freq - 2407) // 5
    return (freq - 5000) // 5


# Element sets of three device models, without SSID (0) and DS Parameter Set (3).
IPHONE_IES = b"".join(
    (
        element(1, bytes.fromhex("02040b16")),
        element(50, bytes.fromhex("0c1218243048606c")),
        element(45, bytes.fromhex("2d401bff") + bytes(22)),
        element(127, bytes.fromhex("0000080400000040")),
        element(255, bytes.fromhex("23010808180080203002000d009f08000000fdfffdff391cc7711c07")),
        element(221, bytes.fromhex("0017f20a000103040000000b00")),  # Apple, varying tail
    )
)
ANDROID_IES = b"".join(
    (
        element(1, bytes.fromhex("82848b96")),
        element(50, bytes.fromhex("0c1218243048606c")),
        element(45, bytes.fromhex("ef0917ffff000000") + bytes(18)),
        element(191, bytes.fromhex("b259820ffaff0000faff0000")),
        element(127, bytes.fromhex("000008800040")),
        element(221, bytes.fromhex("0050f208002d00")),  # Microsoft WMM/WME
        element(255, bytes.fromhex("2301780c8a04")),
    )
)
LAPTOP_IES = b"".join(
    (
        element(1, bytes.fromhex("02040b160c121824")),
        element(50, bytes.fromhex("3048606c")),
        element(45, bytes.fromhex("6e0117ff000000") + bytes(19)),
        element(127, bytes.fromhex("0400080000000040")),
    )
)


@dataclass(frozen=True)
class Probe:
    """One synthetic probe request and the radiotap fields that come with it."""

    mac: str | bytes
    ts_us: int = T0
    seq: int = 0
    rssi: int | None = -60
    freq: int | None = 2412
    ssid: bytes = b""  # non-empty: a directed probe
    ies: bytes = IPHONE_IES  # elements after SSID and DS Parameter Set
    ds_channel: bool = True  # include a DS Parameter Set with the channel of ``freq``
    fcs: bool = False  # append a 4-byte FCS and set the radiotap FCS flag
    bad_fcs: bool = False  # set the radiotap "failed FCS check" flag
    tsft: int | None = None  # add a radiotap TSFT field (exercises 8-byte alignment)
    extra_antennas: int = 0  # per-antenna signal fields in extended presence bitmaps
    vendor_ns: bytes = b""  # vendor-namespace data inside the radiotap header
    htc: bool = False  # set the Order bit: a 4-byte HT Control field follows the header


def burst(probe: Probe, count: int, *, gap_us: int = 20_000) -> list[Probe]:
    """``count`` probes of one device in a row: sequence numbers and times advancing."""
    return [
        replace(probe, ts_us=probe.ts_us + i * gap_us, seq=(probe.seq + i) & 0xFFF)
        for i in range(count)
    ]


def _align(buf: bytearray, align: int) -> None:
    while len(buf) % align:
        buf.append(0)


def radiotap(probe: Probe) -> bytes:
    """A radiotap header with the fields ``probe`` asks for (little-endian, aligned)."""
    words = [0]
    flags = (0x10 if probe.fcs else 0) | (0x40 if probe.bad_fcs else 0)
    if probe.tsft is not None:
        words[0] |= 1 << 0
    if flags:
        words[0] |= 1 << 1
    words[0] |= 1 << 2  # Rate, one byte: puts Channel on an odd offset to be padded
    if probe.freq is not None:
        words[0] |= 1 << 3
    if probe.rssi is not None:
        words[0] |= 1 << 5
    if probe.extra_antennas:
        words[0] |= 1 << 29 | 1 << 31
        for i in range(probe.extra_antennas):
            more = i + 1 < probe.extra_antennas
            words.append(1 << 5 | 1 << 11 | (1 << 29 | 1 << 31 if more else 0))
    if probe.vendor_ns:
        words[-1] |= 1 << 30 | 1 << 31
        words.append(1 << 0)  # a vendor field, skipped by length
    buf = bytearray(struct.pack("<BxH", 0, 0))
    for word in words:
        buf += struct.pack("<I", word)
    if probe.tsft is not None:
        _align(buf, 8)
        buf += struct.pack("<Q", probe.tsft)
    if flags:
        buf.append(flags)
    buf.append(0x02)  # 1 Mb/s
    if probe.freq is not None:
        _align(buf, 2)
        buf += struct.pack("<HH", probe.freq, 0x00A0 if probe.freq < 3000 else 0x0140)
    if probe.rssi is not None:
        buf += struct.pack("<b", probe.rssi)
    for i in range(probe.extra_antennas):
        buf += struct.pack("<bB", (probe.rssi or -90) - 3 - i, i)
    if probe.vendor_ns:
        _align(buf, 2)
        buf += bytes.fromhex("001122") + bytes((1,)) + struct.pack("<H", len(probe.vendor_ns))
        buf += probe.vendor_ns
    struct.pack_into("<H", buf, 2, len(buf))
    return bytes(buf)


def dot11_probe(probe: Probe) -> bytes:
    """The bare 802.11 probe request frame (no radiotap, no FCS)."""
    header = struct.pack(
        "<BBH6s6s6sH",
        0x40,
        0x80 if probe.htc else 0,
        0,
        mac_bytes(BROADCAST),
        mac_bytes(probe.mac),
        mac_bytes(BROADCAST),
        (probe.seq & 0xFFF) << 4,
    )
    if probe.htc:
        header += bytes.fromhex("0300ffff")
    body = element(0, probe.ssid)
    ies = probe.ies
    if probe.ds_channel and probe.freq is not None:
        # DS Parameter Set after the rate elements, where real stacks put it.
        ds = element(3, bytes((freq_to_channel(probe.freq),)))
        split = _after_rates(ies)
        ies = ies[:split] + ds + ies[split:]
    return header + body + ies


def _after_rates(ies: bytes) -> int:
    pos = 0
    while pos + 2 <= len(ies) and ies[pos] in (1, 50):
        pos += 2 + ies[pos + 1]
    return pos


def probe_frame(probe: Probe) -> bytes:
    """Radiotap header + 802.11 probe request (+ FCS when ``probe.fcs``): link type 127."""
    dot11 = dot11_probe(probe)
    if probe.fcs:
        dot11 += struct.pack("<I", zlib.crc32(dot11))  # the parser strips it unchecked
    return radiotap(probe) + dot11


def _plain_radiotap() -> bytes:
    return radiotap(Probe(mac=BROADCAST))


def beacon_frame(bssid: str, *, ssid: bytes = b"ShopWiFi") -> bytes:
    """A radiotap + beacon frame (management, subtype 8): not a probe request."""
    header = struct.pack(
        "<BBH6s6s6sH", 0x80, 0, 0, mac_bytes(BROADCAST), mac_bytes(bssid), mac_bytes(bssid), 0
    )
    fixed = struct.pack("<QHH", 0, 100, 0x0401)
    return _plain_radiotap() + header + fixed + element(0, ssid) + element(1, b"\x82\x84")


def probe_response_frame(bssid: str, dst: str) -> bytes:
    """A radiotap + probe response (management, subtype 5): not a probe request."""
    header = struct.pack(
        "<BBH6s6s6sH", 0x50, 0, 0, mac_bytes(dst), mac_bytes(bssid), mac_bytes(bssid), 0
    )
    return _plain_radiotap() + header + struct.pack("<QHH", 0, 100, 0x0401) + element(0, b"x")


def ack_frame(dst: str) -> bytes:
    """A radiotap + ACK control frame (10 bytes of 802.11): not a probe request."""
    return _plain_radiotap() + struct.pack("<BBH6s", 0xD4, 0, 0, mac_bytes(dst))


def data_frame(src: str, dst: str) -> bytes:
    """A radiotap + data frame: not a probe request."""
    header = struct.pack(
        "<BBH6s6s6sH", 0x08, 0x01, 0, mac_bytes(dst), mac_bytes(src), mac_bytes(dst), 0
    )
    return _plain_radiotap() + header + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + bytes(20)


def write_pcap(
    path: Path,
    frames: Iterable[tuple[int, bytes]],
    *,
    linktype: int = LINKTYPE_RADIOTAP,
    byteorder: str = "<",
    nanoseconds: bool = False,
    truncate_last: int = 0,
) -> Path:
    """Write ``(ts_us, frame)`` records as a classic pcap; returns ``path``.

    ``byteorder`` is ``"<"`` or ``">"``; ``nanoseconds`` selects the ns-resolution magic;
    ``truncate_last`` cuts that many bytes off the end of the file (a capture killed while
    writing).
    """
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = bytearray(struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype))
    for ts_us, frame in frames:
        sec, usec = divmod(ts_us, 1_000_000)
        frac = usec * 1000 if nanoseconds else usec
        out += struct.pack(byteorder + "IIII", sec, frac, len(frame), len(frame)) + frame
    if truncate_last:
        del out[-truncate_last:]
    path.write_bytes(bytes(out))
    return path


def write_pcapng(
    path: Path, frames: Sequence[tuple[int, bytes]], *, linktype: int = LINKTYPE_RADIOTAP
) -> Path:
    """Write ``(ts_us, frame)`` records as a little-endian pcapng (one interface, µs)."""

    def block(btype: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        length = len(body) + 12
        return struct.pack("<II", btype, length) + body + struct.pack("<I", length)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack("<HHB3x", 9, 1, 6) + struct.pack("<HH", 0, 0)
    out += block(1, struct.pack("<HHI", linktype, 0, 65535) + tsresol)
    for ts_us, frame in frames:
        body = struct.pack("<IIIII", 0, ts_us >> 32, ts_us & 0xFFFFFFFF, len(frame), len(frame))
        out += block(6, body + frame)
    path.write_bytes(out)
    return path
