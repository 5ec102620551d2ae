"""Probe requests from raw frames: radiotap + 802.11 decoded by hand, pcap files read.

scapy's full dissection manages about a thousand frames a second; a shop-front sniffer on a
busy street sees more, so this module decodes only what the analytics needs, with
precompiled ``struct`` formats on memoryviews and cached radiotap layouts.

Privacy by construction: the source MAC is handed to the caller's ``hasher`` inside
:meth:`ProbeParser.parse` and only the digest leaves it; the SSID is reduced to one bit
(``directed``). Neither appears in results, stats, logs or exceptions.

Errors::

    PcapError           (also a ValueError) the file is not a pcap/pcapng capture, or its
                        link type is not 802.11
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from drivers.wifi.fingerprint import fingerprint

log = logging.getLogger(__name__)

LINKTYPE_IEEE802_11 = 105
LINKTYPE_IEEE802_11_RADIOTAP = 127
SUPPORTED_LINKTYPES = frozenset({LINKTYPE_IEEE802_11, LINKTYPE_IEEE802_11_RADIOTAP})


class PcapError(ValueError):
    """A capture file that cannot be read as a pcap/pcapng of 802.11 frames."""


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """One probe request, reduced to what the analytics needs and nothing identifying."""

    ts_us: int  # capture time, µs since the Unix epoch (pcap record / live)
    device: bytes  # keyed hash of the source MAC (from `hasher`); the MAC never leaves
    local_admin: bool  # locally administered bit of the source MAC (randomised address)
    seq: int  # 802.11 sequence number (12 bits)
    rssi: int | None  # dBm (radiotap antenna signal), None if absent
    freq: int | None  # MHz (radiotap channel), None if absent
    fingerprint: int  # 64-bit digest of the device's stable IEs (drivers/wifi/fingerprint.py)
    directed: bool  # SSID element non-empty (a directed probe); the SSID itself is dropped


# A frozen dataclass's __init__ goes through object.__setattr__ per field, about half of the
# per-frame cost of the parser; setting the slots through their descriptors is twice as fast.
# tests/drivers/test_wifi_probe.py compares the result with ProbeRequest(...) field for field.
def _slot_setter(name: str) -> Callable[[ProbeRequest, object], None]:
    setter: Callable[[ProbeRequest, object], None] = vars(ProbeRequest)[name].__set__
    return setter


_new = object.__new__
_set_ts_us = _slot_setter("ts_us")
_set_device = _slot_setter("device")
_set_local_admin = _slot_setter("local_admin")
_set_seq = _slot_setter("seq")
_set_rssi = _slot_setter("rssi")
_set_freq = _slot_setter("freq")
_set_fingerprint = _slot_setter("fingerprint")
_set_directed = _slot_setter("directed")


@dataclass(slots=True)
class ParseStats:
    """Counters of what the parser and the pcap reader saw (no per-frame data)."""

    frames: int = 0  # frames given to parse()
    probes: int = 0  # probe requests returned
    not_probe: int = 0  # well-formed frames of another type/subtype
    malformed: int = 0  # truncated radiotap / 802.11 header / IEs, or a bad FCS
    truncated_records: int = 0  # pcap records cut short at the end of a file


# --- radiotap -------------------------------------------------------------------------------

_RT_HEADER = struct.Struct("<BxHI")  # version, pad, length, first presence word
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

_RT_FLAGS_FCS = 0x10  # the frame ends with a 4-byte FCS
_RT_FLAGS_BAD_FCS = 0x40  # the FCS check failed: addresses may be corrupt
_BIT_TLV = 28
_BIT_RADIOTAP_NS = 29
_BIT_VENDOR_NS = 30
_BIT_EXT = 31
_MORE_BITMAPS = 1 << _BIT_EXT
_FIELD_BITS = (1 << _BIT_RADIOTAP_NS) - 1  # bits 0-28: fields, not namespace control
# (alignment, size) of each radiotap-namespace field, by presence bit (radiotap.org).
_RT_FIELDS: dict[int, tuple[int, int]] = {
    0: (8, 8),  # TSFT
    1: (1, 1),  # Flags
    2: (1, 1),  # Rate
    3: (2, 4),  # Channel: frequency u16, flags u16
    4: (1, 2),  # FHSS
    5: (1, 1),  # dBm Antenna Signal
    6: (1, 1),  # dBm Antenna Noise
    7: (2, 2),  # Lock Quality
    8: (2, 2),  # TX Attenuation
    9: (2, 2),  # dB TX Attenuation
    10: (1, 1),  # dBm TX Power
    11: (1, 1),  # Antenna
    12: (1, 1),  # dB Antenna Signal
    13: (1, 1),  # dB Antenna Noise
    14: (2, 2),  # RX Flags
    15: (2, 2),  # TX Flags
    16: (1, 1),  # RTS retries
    17: (1, 1),  # data retries
    18: (4, 8),  # XChannel: flags u32, frequency u16, channel u8, max power u8
    19: (1, 3),  # MCS
    20: (4, 8),  # A-MPDU status
    21: (2, 12),  # VHT
    22: (8, 12),  # timestamp
    23: (2, 12),  # HE
    24: (2, 12),  # HE-MU
    25: (2, 6),  # HE-MU-other-user
    26: (1, 1),  # 0-length PSDU
    27: (2, 4),  # L-SIG
}
_BIT_FLAGS, _BIT_CHANNEL, _BIT_SIGNAL, _BIT_XCHANNEL = 1, 3, 5, 18
_XCHANNEL_FREQ_OFFSET = 4


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the radiotap fields we read are, for one set of presence bitmaps.

    ``fields`` unpacks them in one call from the start of the frame, in offset order;
    the ``*_at`` attributes index its result (-1 when the header lacks the field).
    """

    fields: struct.Struct
    flags_at: int
    freq_at: int
    signal_at: int

    @classmethod
    def build(cls, flags: int, freq: int, signal: int) -> _Layout:
        """The layout for fields at these absolute offsets (-1 when absent)."""
        codes = {flags: "B", freq: "H", signal: "b"}
        located = sorted(offset for offset in (flags, freq, signal) if offset >= 0)
        fmt, pos = "<", 0
        for offset in located:
            fmt += f"{offset - pos}x{codes[offset]}"
            pos = offset + struct.calcsize("<" + codes[offset])
        return cls(
            struct.Struct(fmt),
            located.index(flags) if flags >= 0 else -1,
            located.index(freq) if freq >= 0 else -1,
            located.index(signal) if signal >= 0 else -1,
        )


class _RadiotapError(Exception):
    """A radiotap header whose presence words or fields run past its length."""


def _radiotap_offsets(frame: bytes | memoryview, it_len: int) -> tuple[int, int, int, bool]:
    """Offsets of Flags, the frequency and the dBm signal in a radiotap header (-1: absent).

    The fourth value says whether they hold for every header with the same presence bitmaps
    (False when a vendor namespace's length, read from this frame, moved them). Raises
    ``_RadiotapError`` when the bitmaps or the fields run past ``it_len``.
    """
    words: list[int] = []
    pos = 4
    while True:
        if pos + 4 > it_len:
            raise _RadiotapError
        (word,) = _U32.unpack_from(frame, pos)
        words.append(word)
        pos += 4
        if not word & (1 << _BIT_EXT):
            break
    cacheable = True
    flags = freq = signal = -1
    radiotap_ns = True
    index = 0  # which presence word of the current radiotap namespace this is
    known = True  # False once a field of unknown size makes later offsets unknowable
    for word in words:
        if radiotap_ns and known and index:
            # Fields beyond bit 31 of the radiotap namespace are undefined: sizes unknown.
            known = not word & _FIELD_BITS
        elif radiotap_ns and known:
            for bit in range(_BIT_TLV):
                if not word & (1 << bit):
                    continue
                align, size = _RT_FIELDS[bit]
                pos = (pos + align - 1) & -align
                if bit == _BIT_FLAGS and flags < 0:
                    flags = pos
                elif bit == _BIT_CHANNEL and freq < 0:
                    freq = pos
                elif bit == _BIT_XCHANNEL and freq < 0:
                    freq = pos + _XCHANNEL_FREQ_OFFSET
                elif bit == _BIT_SIGNAL and signal < 0:
                    signal = pos
                pos += size
            if word & (1 << _BIT_TLV):
                known = False  # TLVs follow; nothing we need is after them
        if word & (1 << _BIT_VENDOR_NS) and known:
            # The vendor namespace header says how many bytes of vendor data to skip.
            pos = (pos + 1) & -2
            if pos + 6 > it_len:
                raise _RadiotapError
            (skip,) = _U16.unpack_from(frame, pos + 4)
            pos += 6 + skip
            radiotap_ns = False
            cacheable = False
        elif word & (1 << _BIT_RADIOTAP_NS):
            radiotap_ns = True
            index = 0
            continue
        index += 1
    return flags, freq, signal, cacheable


# --- 802.11 ---------------------------------------------------------------------------------

_FC_PROBE_REQUEST = 0x40  # protocol version 0, type 0 (management), subtype 4
# Frame control flags, addr2 (the source), sequence control; skipping duration/addr1/addr3.
_MGMT_HEADER = struct.Struct("<xB8x6s6xH")
_FC1_ORDER = 0x80  # +HTC: a 4-byte HT Control field follows the management header
_HEADER_LEN = 24
_LOCAL_ADMIN = 0x02
_SSID = 0
_DS_PARAMETER_SET = 3
_CHANNEL_SEARCH = 4  # elements looked at for the DS Parameter Set (it follows the rates)
_FINGERPRINT_CACHE_MAX = 1 << 16
_LAYOUT_CACHE_MAX = 256


def _ies_well_formed(ies: memoryview) -> bool:
    """True when the elements exactly fill the region (no element runs past the end)."""
    n = len(ies)
    pos = 0
    while pos + 2 <= n:
        pos += 2 + ies[pos + 1]
    return pos == n


def _fingerprint_or_malformed(ies: bytes | memoryview) -> int:
    """The fingerprint of a region of elements, -1 when one runs past its end."""
    view = memoryview(ies)
    return fingerprint(view) if _ies_well_formed(view) else -1


def _channel_at(ies: bytes) -> int:
    """Offset of the DS Parameter Set's channel byte among the first few elements, or -1.

    Phones put it right after the rates. Only the elements before it are walked: whether
    the region is well formed is settled when its fingerprint is computed.
    """
    n = len(ies)
    pos = 0
    for _ in range(_CHANNEL_SEARCH):
        if pos + 2 > n:
            break
        if ies[pos] == _DS_PARAMETER_SET and ies[pos + 1] == 1:
            return pos + 2 if pos + 3 <= n else -1
        pos += 2 + ies[pos + 1]
    return -1


class ProbeParser:
    """Turns raw radiotap/802.11 frames into :class:`ProbeRequest`, counting the rest.

    ``hasher(mac6) -> digest`` is called once per probe request inside :meth:`parse`; the
    MAC bytes go nowhere else. Not thread-safe: one parser per capture thread.
    """

    def __init__(self, hasher: Callable[[bytes], bytes]) -> None:
        self._hasher = hasher
        self.stats = ParseStats()
        self._layouts: dict[object, _Layout] = {}
        # IE region after the SSID element -> fingerprint, or -1 when malformed. Devices repeat
        # the same elements frame after frame, so this saves the walk and the digest.
        self._fingerprints: dict[bytes | memoryview, int] = {}
        # True while fingerprint() leaves the DS Parameter Set's channel out (checked, not
        # assumed: the cache may then share one entry between channels).
        self._channel_ignored = fingerprint(memoryview(b"\x03\x01\x01")) == fingerprint(
            memoryview(b"\x03\x01\x0b")
        )

    def parse(
        self, frame: bytes | memoryview, ts_us: int, linktype: int = LINKTYPE_IEEE802_11_RADIOTAP
    ) -> ProbeRequest | None:
        """The probe request in ``frame``, or None (counted in :attr:`stats`) for any other."""
        stats = self.stats
        stats.frames += 1
        n = len(frame)
        rssi: int | None = None
        freq: int | None = None
        if linktype == LINKTYPE_IEEE802_11_RADIOTAP:
            if n < 8:
                stats.malformed += 1
                return None
            version, p, present = _RT_HEADER.unpack_from(frame)
            if version or p < 8 or p > n:
                stats.malformed += 1
                return None
            key: int | bytes = present if present < _MORE_BITMAPS else _bitmaps(frame, p)
            layout = self._layouts.get(key)
            if layout is None:
                layout = self._layout(frame, p, key)
                if layout is None:
                    stats.malformed += 1
                    return None
            if layout.fields.size > p:
                stats.malformed += 1
                return None
            values = layout.fields.unpack_from(frame)
            if layout.flags_at >= 0:
                flags = values[layout.flags_at]
                if flags & _RT_FLAGS_BAD_FCS:
                    stats.malformed += 1
                    return None
                if flags & _RT_FLAGS_FCS:
                    n -= 4
            if layout.signal_at >= 0:
                rssi = values[layout.signal_at]
            if layout.freq_at >= 0:
                freq = values[layout.freq_at] or None
        elif linktype == LINKTYPE_IEEE802_11:
            p = 0
        else:
            raise ValueError(f"link type {linktype} is not 802.11 (expected 127 or 105)")
        if n - p < 1:
            stats.malformed += 1
            return None
        if frame[p] != _FC_PROBE_REQUEST:
            stats.not_probe += 1
            return None
        if n - p < _HEADER_LEN:
            stats.malformed += 1
            return None
        fc1, mac, seq_ctl = _MGMT_HEADER.unpack_from(frame, p)
        ie = p + _HEADER_LEN + 4 if fc1 & _FC1_ORDER else p + _HEADER_LEN
        if ie > n:
            stats.malformed += 1
            return None
        # The SSID element is nearly always first, and a device repeats the elements after it
        # frame after frame: a cache on those bytes saves the walk and the digest.
        if ie + 2 <= n and frame[ie] == _SSID:
            after_ssid = ie + 2 + frame[ie + 1]
            if after_ssid > n:
                stats.malformed += 1
                return None
            directed = after_ssid > ie + 2
            rest = frame[after_ssid:n]
            try:
                fp = self._fingerprints.get(rest)
            except ValueError:  # a writable memoryview (over a bytearray) cannot be hashed
                rest = bytes(rest)
                fp = self._fingerprints.get(rest)
            if fp is None:
                fp = self._remember(bytes(rest))
        else:
            view = memoryview(frame)[ie:n]
            fp = _fingerprint_or_malformed(view)
            directed = _ssid_length(view) > 0
        if fp < 0:
            stats.malformed += 1
            return None
        stats.probes += 1
        probe = _new(ProbeRequest)
        _set_ts_us(probe, ts_us)
        _set_device(probe, self._hasher(mac))
        _set_local_admin(probe, mac[0] & _LOCAL_ADMIN != 0)
        _set_seq(probe, seq_ctl >> 4)
        _set_rssi(probe, rssi)
        _set_freq(probe, freq)
        _set_fingerprint(probe, fp)
        _set_directed(probe, directed)
        return probe

    @property
    def hasher(self) -> Callable[[bytes], bytes]:
        """The ``mac6 -> digest`` function this parser was given."""
        return self._hasher

    def rest_fingerprints(self, regions: list[bytes]) -> list[int]:
        """Fingerprints of the elements after the SSID (-1 when malformed), through the cache."""
        cached = self._fingerprints.get
        remember = self._remember
        found = [cached(rest) for rest in regions]
        if None in found:
            return [remember(r) if fp is None else fp for r, fp in zip(regions, found, strict=True)]
        return cast(list[int], found)

    def _remember(self, rest: bytes) -> int:
        """Fingerprint of the IEs after the SSID (-1 when malformed), cached."""
        cache = self._fingerprints
        if len(cache) >= _FINGERPRINT_CACHE_MAX:
            cache.clear()
        channel = _channel_at(rest) if self._channel_ignored else -1
        if channel < 0:
            fp = _fingerprint_or_malformed(rest)
        else:
            # A phone repeats its elements on every channel it scans with only the channel
            # byte changed: the same elements with channel 0 share one entry and one digest.
            same = rest[:channel] + b"\0" + rest[channel + 1 :]
            cached = cache.get(same)
            fp = _fingerprint_or_malformed(same) if cached is None else cached
            cache[same] = fp
        cache[rest] = fp
        return fp

    def _layout(self, frame: bytes | memoryview, it_len: int, key: int | bytes) -> _Layout | None:
        try:
            flags, freq, signal, cacheable = _radiotap_offsets(frame, it_len)
        except _RadiotapError:
            return None
        layout = _Layout.build(flags, freq, signal)
        if cacheable:
            if len(self._layouts) >= _LAYOUT_CACHE_MAX:  # only garbage has this many
                self._layouts.clear()
            self._layouts[key] = layout
        return layout


def _bitmaps(frame: bytes | memoryview, it_len: int) -> bytes:
    """All presence bitmaps of a radiotap header (the cache key of its layout)."""
    end = 8
    # Bit 31 of each little-endian word (the top bit of its last byte) says another follows.
    while end <= it_len and frame[end - 1] & 0x80:
        end += 4
    return bytes(frame[4:end])


def _ssid_length(ies: memoryview) -> int:
    """Length of the first SSID element in a well-formed IE region, 0 when there is none."""
    n = len(ies)
    pos = 0
    while pos + 2 <= n:
        if ies[pos] == _SSID:
            return ies[pos + 1]
        pos += 2 + ies[pos + 1]
    return 0


# --- pcap / pcapng --------------------------------------------------------------------------

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAP_HEADER_LEN = 24
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_PCAPNG_IDB = 1
_PCAPNG_SPB = 3
_PCAPNG_EPB = 6
_PCAPNG_OPT_TSRESOL = 9
_PCAPNG_MIN_BODY = {_PCAPNG_IDB: 8, _PCAPNG_SPB: 4, _PCAPNG_EPB: 20}

Record = tuple[int, memoryview, int]  # (ts_us, frame, linktype)


def read_pcap(path: Path, stats: ParseStats | None = None) -> Iterator[Record]:
    """Yield ``(ts_us, frame, linktype)`` for every record of a pcap or pcapng file.

    Raises :class:`PcapError` at once when the file is not a capture. A record cut short at
    the end of the file ends the iteration; it is counted in ``stats.truncated_records`` and
    logged, never raised.
    """
    return read_pcap_bytes(path.read_bytes(), path, stats)


def read_pcap_bytes(
    buffer: bytes | memoryview, path: Path | str = "<memory>", stats: ParseStats | None = None
) -> Iterator[Record]:
    """:func:`read_pcap` on a capture already in memory; ``path`` only names it in errors."""
    data = memoryview(buffer)
    if is_pcapng(data, path):
        return _pcapng_records(path, data, stats)
    order, divisor, linktype = pcap_header(data, path)
    return _pcap_records(path, data, struct.Struct(order + "IIII"), divisor, linktype, stats)


def is_pcapng(data: memoryview, path: Path | str) -> bool:
    """Whether ``data`` starts like a pcapng file; :class:`PcapError` when it is too short."""
    if len(data) < 4:
        raise PcapError(f"{path} is not a pcap or pcapng file: only {len(data)} bytes")
    return bool(_U32.unpack_from(data)[0] == _PCAPNG_SHB)


def pcap_header(data: memoryview, path: Path | str) -> tuple[str, int, int]:
    """``(byte order, ns per timestamp unit, link type)`` of a classic pcap's global header.

    Raises :class:`PcapError` naming ``path`` when it is not a classic pcap.
    """
    for order in "<>":
        (magic,) = struct.unpack_from(order + "I", data)
        if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            break
    else:
        raise PcapError(
            f"{path} is not a pcap or pcapng file (it starts with {bytes(data[:4]).hex()})"
        )
    if len(data) < _PCAP_HEADER_LEN:
        raise PcapError(f"{path} is a pcap file with a truncated global header")
    # The link-type field's upper bits may carry FCS information (pcap spec): keep 16 bits.
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
    divisor = 1000 if magic == _PCAP_MAGIC_NS else 1
    return order, divisor, linktype


def truncated_record(path: Path | str, stats: ParseStats | None) -> None:
    """Count and log a record cut short at the end of a capture."""
    if stats is not None:
        stats.truncated_records += 1
    log.warning("capture %s ends with a truncated record; stopped there", path)


def _pcap_records(
    path: Path | str,
    data: memoryview,
    record: struct.Struct,
    divisor: int,
    linktype: int,
    stats: ParseStats | None,
) -> Iterator[Record]:
    unpack = record.unpack_from
    total = len(data)
    pos = _PCAP_HEADER_LEN
    if divisor == 1:  # µs timestamps: the common case, without a division per record
        while pos + 16 <= total:
            sec, usec, incl, _ = unpack(data, pos)
            start = pos + 16
            pos = start + incl
            if pos > total:
                break
            yield sec * 1_000_000 + usec, data[start:pos], linktype
    else:
        while pos + 16 <= total:
            sec, nsec, incl, _ = unpack(data, pos)
            start = pos + 16
            pos = start + incl
            if pos > total:
                break
            yield sec * 1_000_000 + nsec // divisor, data[start:pos], linktype
    if pos != total:
        truncated_record(path, stats)


def _pcapng_records(
    path: Path | str, data: memoryview, stats: ParseStats | None
) -> Iterator[Record]:
    for ts_us, start, end, linktype in pcapng_spans(path, data, stats):
        yield ts_us, data[start:end], linktype


def pcapng_spans(
    path: Path | str, data: memoryview, stats: ParseStats | None
) -> Iterator[tuple[int, int, int, int]]:
    """``(ts_us, start, end, linktype)`` of every packet of a pcapng file: its frame's bytes."""
    total = len(data)
    pos = 0
    order = "<"
    # Per interface of the current section: (linktype, timestamp units per second).
    interfaces: list[tuple[int, int]] = []
    while pos < total:
        if pos + 12 > total:
            truncated_record(path, stats)
            return
        (btype,) = _U32.unpack_from(data, pos)
        if btype == _PCAPNG_SHB:
            (bom,) = struct.unpack_from("<I", data, pos + 8)
            if bom == _PCAPNG_BYTE_ORDER:
                order = "<"
            elif bom == 0x4D3C2B1A:
                order = ">"
            else:
                raise PcapError(f"{path} is not a pcapng file (bad byte-order magic)")
            interfaces = []
        else:
            (btype,) = struct.unpack_from(order + "I", data, pos)
        (blen,) = struct.unpack_from(order + "I", data, pos + 4)
        if blen < 12 or blen % 4:
            raise PcapError(f"{path}: pcapng block at byte {pos} has an invalid length {blen}")
        end = pos + blen
        if end > total:
            truncated_record(path, stats)
            return
        body = data[pos + 8 : end - 4]
        if len(body) < _PCAPNG_MIN_BODY.get(btype, 0):
            raise PcapError(f"{path}: pcapng block of type {btype} at byte {pos} is too short")
        pos = end
        if btype == _PCAPNG_IDB:
            linktype = struct.unpack_from(order + "H", body)[0]
            interfaces.append((linktype, _pcapng_tsresol(body[8:], order)))
        elif btype == _PCAPNG_EPB:
            iface, ts_hi, ts_lo, caplen, _ = struct.unpack_from(order + "IIIII", body)
            if iface >= len(interfaces) or 20 + caplen > len(body):
                raise PcapError(f"{path}: pcapng packet block at byte {end - blen} is corrupt")
            linktype, per_second = interfaces[iface]
            ticks = ts_hi << 32 | ts_lo
            start = end - blen + 28  # block type, length, then 20 bytes of packet header
            yield ticks * 1_000_000 // per_second, start, start + caplen, linktype
        elif btype == _PCAPNG_SPB and interfaces:
            # Simple packet blocks carry no timestamp.
            (orig,) = struct.unpack_from(order + "I", body)
            linktype, _ = interfaces[0]
            start = end - blen + 12
            yield 0, start, start + min(orig, len(body) - 4), linktype


def _pcapng_tsresol(options: memoryview, order: str) -> int:
    """Timestamp units per second from an interface block's options (default µs)."""
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, pos)
        if code == 0:
            break
        if code == _PCAPNG_OPT_TSRESOL and length >= 1:
            value = options[pos + 4]
            return int(2 ** (value & 0x7F) if value & 0x80 else 10 ** (value & 0x7F))
        pos += 4 + ((length + 3) & ~3)
    return 1_000_000


def iter_probes(path: Path, parser: ProbeParser) -> Iterator[ProbeRequest]:
    """The probe requests of a capture file, in file order; the rest counted in parser.stats.

    Parsed a batch of records at a time by :class:`drivers.wifi.batch.BatchParser` (same
    results as ``parser.parse`` frame by frame, several times faster), handed out one by one.
    """
    from drivers.wifi.batch import BatchParser  # imported here: batch builds on this module

    for columns in BatchParser(parser).parse_capture(path.read_bytes(), path):
        yield from columns.probes()
