"""Probe requests parsed a batch of pcap records at a time, into numpy columns.

:class:`~drivers.wifi.probe.ProbeParser` spends about 4 µs of Python per frame; a bare walk of
the pcap records costs about 0.3 µs. Here one Python loop only finds where each record
starts (:func:`record_batches`); the rest is numpy over a batch of records:

1. Frames are grouped by radiotap layout (header length and presence bitmaps; a sniffer's
   capture has one or two). The offsets of Flags, frequency and signal are worked out once
   per layout by ProbeParser's own radiotap walk.
2. Radiotap, the 802.11 header and the SSID element's id and length of every frame of a
   layout are copied out in one numpy operation and read as columns (the SSID's content is
   never read, only its length).
3. Fingerprints: the elements after the SSID of all frames are copied out (one copy per
   region length in 8-byte words), sorted by a hash of their words and compared byte for byte
   with their neighbour; only the first of each run of identical regions goes to
   :meth:`ProbeParser.rest_fingerprints` (its cache keyed by those bytes).
4. Each *distinct* source address of the batch is hashed once (``hasher``); frames get an
   index into the batch's tuple of digests.

Anything the vectorised path does not handle (short or malformed frames, a bad FCS, HT
Control, an SSID that is not the first element, unusual radiotap layouts) goes to the
per-frame :class:`ProbeParser`, so every frame gets exactly the result and the counting
``ProbeParser.parse`` gives it (tests/drivers/test_wifi_batch.py checks this frame by frame).

Privacy: the raw addresses exist only in local arrays of :meth:`BatchParser.parse` (copies
of what the frame buffer, held by the caller, already holds) and are dropped when it
returns; the columns carry digests only, listed in order of first appearance (not in address
order, which would say something about the addresses). Digests are not kept across batches,
so a hasher may rotate its key between two batches.
"""

from __future__ import annotations

import array
import itertools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from itertools import repeat
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

# Internals of the per-frame parser shared inside this package: frame constants, the radiotap
# walk and the fast ProbeRequest construction.
from drivers.wifi.probe import (
    _FC1_ORDER,
    _FC_PROBE_REQUEST,
    _HEADER_LEN,
    _LAYOUT_CACHE_MAX,
    _LOCAL_ADMIN,
    _PCAP_HEADER_LEN,
    _RT_FLAGS_BAD_FCS,
    _RT_FLAGS_FCS,
    _SSID,
    LINKTYPE_IEEE802_11,
    SUPPORTED_LINKTYPES,
    ParseStats,
    PcapError,
    ProbeParser,
    ProbeRequest,
    _Layout,
    _new,
    _radiotap_offsets,
    _RadiotapError,
    _set_device,
    _set_directed,
    _set_fingerprint,
    _set_freq,
    _set_local_admin,
    _set_rssi,
    _set_seq,
    _set_ts_us,
    is_pcapng,
    pcap_header,
    pcapng_spans,
    truncated_record,
)

_T = TypeVar("_T", bound=np.generic)
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I16 = npt.NDArray[np.int16]
U16 = npt.NDArray[np.uint16]
U64 = npt.NDArray[np.uint64]
Bools = npt.NDArray[np.bool_]

Buffer = bytes | bytearray | memoryview

BATCH_FRAMES = 65536
NO_RSSI = -32768  # ``ProbeColumns.rssi`` of a frame without a signal field (ProbeRequest: None)
_MAX_LAYOUTS = 8  # radiotap layouts per batch handled by numpy; frames of others: per frame
_MAC_MASK = np.uint64((1 << 48) - 1)
_EXT = np.uint32(1 << 31)
_MAC_IN_WORD = struct.Struct("6s2x")  # an address held in a little-endian 64-bit word
_ALL_ONES = np.uint64((1 << 64) - 1)
# Odd multipliers of the words of an element region: a sort key that puts identical regions
# side by side (identity itself is checked byte for byte, so the quality only matters for speed).
_WORD_KEYS = np.random.default_rng(0x5EED).integers(1, 1 << 63, 256, dtype=np.uint64) | np.uint64(1)


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Where the frames of consecutive capture records are in one buffer (all one link type)."""

    buffer: Buffer  # the capture (or any bytes holding the frames)
    start: I64  # first byte of each frame in ``buffer``
    length: I64  # captured length of each frame
    ts_us: I64  # capture time, µs since the Unix epoch
    record: I64  # index of each record in its capture file
    linktype: int

    def __len__(self) -> int:
        return len(self.start)


@dataclass(frozen=True, slots=True)
class ProbeColumns:
    """The probe requests of one batch, a column per :class:`ProbeRequest` field.

    Row ``i`` is the probe request ``ProbeRequest(ts_us[i], devices[device[i]],
    local_admin[i], seq[i], rssi[i] (None if NO_RSSI), freq[i] (None if 0), fingerprint[i],
    directed[i])``; :meth:`probes` builds exactly those. Rows are in capture order.
    """

    ts_us: I64
    record: I64  # index of the frame's record in the capture (the lab CSVs' ``idx``)
    device: I32  # index into ``devices``
    devices: tuple[bytes, ...]  # keyed hash of each distinct source address, first seen first
    local_admin: Bools
    seq: U16
    rssi: I16  # dBm, NO_RSSI when absent
    freq: U16  # MHz, 0 when absent
    fingerprint: U64
    directed: Bools
    malformed_ts_us: I64  # capture time of each frame of the batch counted as malformed
    malformed_record: I64  # and the index of its record
    stats: ParseStats  # what this batch counted (truncated_records: on the file's last batch)

    def __len__(self) -> int:
        return len(self.ts_us)

    def probes(self) -> list[ProbeRequest]:
        """The rows as :class:`ProbeRequest` objects (what ``ProbeParser.parse`` returns)."""
        devices = self.devices
        out: list[ProbeRequest] = []
        append = out.append
        for ts_us, device, local, seq, rssi, freq, fp, directed in zip(
            self.ts_us.tolist(),
            self.device.tolist(),
            self.local_admin.tolist(),
            self.seq.tolist(),
            self.rssi.tolist(),
            self.freq.tolist(),
            self.fingerprint.tolist(),
            self.directed.tolist(),
            strict=True,
        ):
            probe = _new(ProbeRequest)
            _set_ts_us(probe, ts_us)
            _set_device(probe, devices[device])
            _set_local_admin(probe, local)
            _set_seq(probe, seq)
            _set_rssi(probe, None if rssi == NO_RSSI else rssi)
            _set_freq(probe, freq or None)
            _set_fingerprint(probe, fp)
            _set_directed(probe, directed)
            append(probe)
        return out


def iter_probe_batches(
    path: Path, hasher: Callable[[bytes], bytes], batch_frames: int = BATCH_FRAMES
) -> Iterator[ProbeColumns]:
    """The probe requests of a capture file as columns, ``batch_frames`` records at a time.

    ``hasher(mac6) -> digest`` as for :class:`ProbeParser`. Each batch's ``stats`` say what
    it counted. Raises :class:`PcapError` for a file that is not an 802.11 capture. Reads
    the whole file (blocking).
    """
    parser = BatchParser(ProbeParser(hasher))
    yield from parser.parse_capture(path.read_bytes(), path, batch_frames)


# --- where the records are ------------------------------------------------------------------


def record_batches(
    buffer: Buffer,
    path: Path | str = "<memory>",
    stats: ParseStats | None = None,
    batch_frames: int = BATCH_FRAMES,
) -> Iterator[RecordBatch]:
    """The records of a pcap/pcapng capture in memory, ``batch_frames`` at a time.

    Same rules as :func:`~drivers.wifi.probe.read_pcap_bytes`: :class:`PcapError` at once for
    something that is not a capture; a record cut short at the end ends the iteration and is
    counted in ``stats.truncated_records``. A batch never mixes link types.
    """
    if batch_frames < 1:
        raise ValueError(f"batch_frames must be at least 1, got {batch_frames}")
    data = memoryview(buffer)
    if is_pcapng(data, path):
        return _pcapng_batches(buffer, data, path, stats, batch_frames)
    order, divisor, linktype = pcap_header(data, path)
    return _pcap_batches(buffer, path, order, divisor, linktype, stats, batch_frames)


def _pcap_batches(
    buffer: Buffer,
    path: Path | str,
    order: str,
    divisor: int,
    linktype: int,
    stats: ParseStats | None,
    batch_frames: int,
) -> Iterator[RecordBatch]:
    # The only per-record Python: where the next record starts. Timestamps and lengths are
    # then gathered with numpy from the record headers.
    included_length = struct.Struct(order + "8xI").unpack_from
    words = _unaligned(buffer, order + "u4")
    total = len(memoryview(buffer))
    pos = _PCAP_HEADER_LEN
    last = total - 16  # the last offset where a record header fits
    index = 0
    cut = False
    while True:
        heads = array.array("q")  # numpy takes it without a copy
        append = heads.append
        for _ in repeat(None, batch_frames):
            if pos > last:
                break
            append(pos)
            pos += 16 + included_length(buffer, pos)[0]
        if pos > total:  # the last record is cut short: it ends the capture
            pos = heads.pop()
            cut = True
        final = cut or len(heads) < batch_frames
        if final and pos != total:
            truncated_record(path, stats)
        # The last batch carries the truncation, even without a frame.
        if heads or (final and pos != total):
            head = np.frombuffer(heads, dtype=np.int64)
            seconds = words[head].astype(np.int64)
            fraction = words[head + 4].astype(np.int64)
            if divisor != 1:
                fraction //= divisor
            yield RecordBatch(
                buffer,
                head + 16,
                words[head + 8].astype(np.int64),
                seconds * 1_000_000 + fraction,
                np.arange(index, index + len(heads), dtype=np.int64),
                linktype,
            )
            index += len(heads)
        if final:
            return


def _pcapng_batches(
    buffer: Buffer,
    data: memoryview,
    path: Path | str,
    stats: ParseStats | None,
    batch_frames: int,
) -> Iterator[RecordBatch]:
    spans: list[tuple[int, int, int]] = []
    current = -1
    index = 0
    counted = ParseStats()  # a truncation, added to ``stats`` before the last batch goes
    for ts_us, start, end, linktype in pcapng_spans(path, data, counted):
        if spans and (linktype != current or len(spans) == batch_frames):
            yield _span_batch(buffer, spans, index, current)
            index += len(spans)
            spans = []
        current = linktype
        spans.append((ts_us, start, end))
    if stats is not None:
        stats.truncated_records += counted.truncated_records
    if spans or counted.truncated_records:
        yield _span_batch(buffer, spans, index, current)


def _span_batch(
    buffer: Buffer,
    spans: list[tuple[int, int, int]],
    index: int,
    linktype: int,
) -> RecordBatch:
    table = np.array(spans, dtype=np.int64).reshape(-1, 3)
    return RecordBatch(
        buffer,
        table[:, 1].copy(),
        table[:, 2] - table[:, 1],
        table[:, 0].copy(),
        np.arange(index, index + len(spans), dtype=np.int64),
        linktype,
    )


# --- parsing --------------------------------------------------------------------------------


def _unaligned(buffer: Buffer, dtype: str) -> npt.NDArray[np.generic]:
    """A view of ``buffer`` holding the ``dtype`` value that starts at every byte offset."""
    size = np.dtype(dtype).itemsize
    count = max(len(memoryview(buffer)) - size + 1, 0)
    return np.ndarray((count,), dtype=dtype, buffer=buffer, strides=(1,))


@dataclass(slots=True)
class _Views:
    """The batch's buffer seen as 1-, 4- and 8-byte little-endian values at any offset."""

    u8: npt.NDArray[np.uint8]
    u32: npt.NDArray[np.uint32]
    u64: npt.NDArray[np.uint64]

    @classmethod
    def of(cls, buffer: Buffer) -> _Views:
        return cls(
            np.frombuffer(buffer, dtype=np.uint8),
            _unaligned(buffer, "<u4"),  # type: ignore[arg-type]
            _unaligned(buffer, "<u8"),  # type: ignore[arg-type]
        )


@dataclass(slots=True)
class _Good:
    """Frames of one layout group that passed every vectorised check (probe requests)."""

    rows: I64  # index into the batch
    rest: I64  # offset of the elements after the SSID
    end: I64  # end of the frame (FCS excluded)
    mac: U64  # source address (addr2), dropped with the batch
    seq: U16
    directed: Bools
    rssi: I16
    freq: U16

    @classmethod
    def none(cls) -> _Good:
        """No frames."""
        rows = np.zeros(0, dtype=np.int64)
        return cls(
            rows,
            rows,
            rows,
            np.zeros(0, dtype=np.uint64),
            np.zeros(0, dtype=np.uint16),
            np.zeros(0, dtype=np.bool_),
            np.zeros(0, dtype=np.int16),
            np.zeros(0, dtype=np.uint16),
        )


class BatchParser:
    """Parses record batches into :class:`ProbeColumns`, with ``parser``'s results.

    Shares ``parser``'s hasher, statistics and fingerprint cache, and hands it the frames the
    vectorised path does not take. Not thread-safe, like ``ProbeParser``.
    """

    def __init__(self, parser: ProbeParser) -> None:
        self.parser = parser
        # (radiotap length, presence words) -> offsets of flags, frequency, signal; None when
        # frames of that layout must go through the per-frame parser.
        self._layouts: dict[tuple[int, int, int], tuple[int, int, int] | None] = {}

    @property
    def stats(self) -> ParseStats:
        """The counters, shared with (and also updated by) the per-frame parser."""
        return self.parser.stats

    def parse_capture(
        self,
        buffer: Buffer,
        path: Path | str = "<memory>",
        batch_frames: int = BATCH_FRAMES,
    ) -> Iterator[ProbeColumns]:
        """The probe requests of a capture in memory, a batch at a time (see ``parse``).

        Raises :class:`PcapError` for a file that is not a capture or holds frames of
        another link type; ``path`` only names it in errors and logs.
        """
        batches = record_batches(buffer, path, self.stats, batch_frames)
        while True:
            # A record cut short is counted while the last batch is read: that batch says so.
            truncated = self.stats.truncated_records
            batch = next(batches, None)
            if batch is None:
                return
            if batch.linktype not in SUPPORTED_LINKTYPES:
                raise PcapError(
                    f"{path}: link type {batch.linktype} is not 802.11 "
                    "(expected radiotap 127 or raw 105)"
                )
            columns = self.parse(batch)
            columns.stats.truncated_records += self.stats.truncated_records - truncated
            yield columns

    def parse(self, batch: RecordBatch) -> ProbeColumns:
        """The probe requests of ``batch``; every other frame counted in :attr:`stats`."""
        if batch.linktype not in SUPPORTED_LINKTYPES:
            raise ValueError(f"link type {batch.linktype} is not 802.11 (expected 127 or 105)")
        stats = self.stats
        before = ParseStats(**{f.name: getattr(stats, f.name) for f in fields(ParseStats)})
        count = len(batch)
        fallback = np.ones(count, dtype=np.bool_)
        good: list[_Good] = []
        not_probe = 0
        # Views need a few bytes; a batch that small goes through the per-frame parser.
        if count and len(memoryview(batch.buffer)) >= 64:
            views = _Views.of(batch.buffer)
            for rows, it_len, offsets in self._layout_groups(batch, views):
                fallback[rows] = False
                group, others = _dot11(views, batch, rows, it_len, offsets, fallback)
                not_probe += others
                if len(group.rows):
                    good.append(group)
            columns = self._columns(batch, good)
        else:
            columns = _empty_columns()
        fast_rows = count - int(np.count_nonzero(fallback))
        stats.frames += fast_rows
        stats.not_probe += not_probe
        stats.probes += len(columns.ts_us)
        stats.malformed += len(columns.malformed_ts_us)
        columns = self._merge_fallback(batch, np.flatnonzero(fallback), columns)
        after = columns.stats
        for f in fields(ParseStats):
            setattr(after, f.name, getattr(stats, f.name) - getattr(before, f.name))
        return columns

    # -- radiotap --------------------------------------------------------------------------

    def _layout_groups(
        self, batch: RecordBatch, views: _Views
    ) -> Iterator[tuple[I64, int, tuple[int, int, int]]]:
        """``(rows, radiotap length, field offsets)`` per layout handled with numpy."""
        start, length = batch.start, batch.length
        if batch.linktype == LINKTYPE_IEEE802_11:
            yield np.arange(len(batch), dtype=np.int64), 0, (-1, -1, -1)
            return
        # Version, pad, length and first presence word: the fixed 8 bytes of radiotap.
        fixed = _clipped(views.u64, start)
        it_len = ((fixed >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.int64)
        ok = (length >= 8) & ((fixed & np.uint64(0xFF)) == 0) & (it_len >= 8) & (it_len <= length)
        key0 = fixed >> np.uint64(16)  # length and first presence word
        key1 = np.zeros(len(batch), dtype=np.uint64)
        more = (fixed >> np.uint64(63)) != 0
        if more.any():
            # Extended presence bitmaps (per-antenna fields): up to three words in the key.
            word1 = np.where(more, _clipped(views.u32, start + 8), 0)
            word2 = np.where((word1 & _EXT) != 0, _clipped(views.u32, start + 12), 0)
            ok &= (word2 & _EXT) == 0
            key1 = word1.astype(np.uint64) | word2.astype(np.uint64) << np.uint64(32)
        remaining = ok
        for _ in range(_MAX_LAYOUTS):
            if not remaining.any():
                return
            first = int(np.argmax(remaining))
            same = remaining & (key0 == key0[first]) & (key1 == key1[first])
            remaining = remaining & ~same
            key = (int(it_len[first]), int(key0[first]), int(key1[first]))
            if key not in self._layouts:
                if len(self._layouts) >= _LAYOUT_CACHE_MAX:  # only garbage has this many
                    self._layouts.clear()
                self._layouts[key] = self._offsets(batch, first, key[0])
            offsets = self._layouts[key]
            if offsets is not None:
                yield np.flatnonzero(same), key[0], offsets

    @staticmethod
    def _offsets(batch: RecordBatch, row: int, it_len: int) -> tuple[int, int, int] | None:
        """Field offsets of the layout of frame ``row`` (None: parse such frames one by one)."""
        start = int(batch.start[row])
        frame = memoryview(batch.buffer)[start : start + it_len]
        try:
            flags, freq, signal, cacheable = _radiotap_offsets(frame, it_len)
        except _RadiotapError:
            return None
        if not cacheable or _Layout.build(flags, freq, signal).fields.size > it_len:
            return None
        return flags, freq, signal

    # -- addresses, fingerprints, columns ----------------------------------------------------

    def _columns(self, batch: RecordBatch, good: list[_Good]) -> ProbeColumns:
        if not good:
            return _empty_columns()
        if len(good) == 1:
            g = good[0]
        else:  # several layouts: back to capture order, which first appearance relies on
            joined = _Good(
                *(np.concatenate([getattr(x, f.name) for x in good]) for f in fields(_Good))
            )
            order = np.argsort(joined.rows, kind="stable")
            g = _Good(*(getattr(joined, f.name)[order] for f in fields(_Good)))
        fp, valid = self._fingerprints(batch.buffer, g.rest, g.end)
        malformed = g.rows[~valid]
        if len(malformed):  # elements running past the end: ProbeParser counts them malformed
            g = _Good(*(getattr(g, f.name)[valid] for f in fields(_Good)))
            fp = fp[valid]
        device, devices = self._devices(g.mac)
        local_admin = (g.mac & np.uint64(_LOCAL_ADMIN)) != 0
        return ProbeColumns(
            ts_us=batch.ts_us[g.rows],
            record=batch.record[g.rows],
            device=device,
            devices=devices,
            local_admin=local_admin,
            seq=g.seq,
            rssi=g.rssi,
            freq=g.freq,
            fingerprint=fp,
            directed=g.directed,
            malformed_ts_us=batch.ts_us[malformed],
            malformed_record=batch.record[malformed],
            stats=ParseStats(),
        )

    def _fingerprints(self, data: Buffer, rest: I64, end: I64) -> tuple[U64, Bools]:
        """Fingerprint and validity of the element regions ``[rest, end)`` of the buffer.

        Regions of the same length in words are copied out eight bytes a word (a "void"
        window: one copy per region) and hashed; regions are sorted by hash and each is
        compared in full with its neighbour. Only the first region of each run of identical
        ones goes to ``ProbeParser.rest_fingerprints``; the others take its result.
        """
        size = len(rest)
        length = end - rest
        words = (length + 7) >> 3
        by_words = _stable_order(words.astype(np.uint16))
        sorted_words = words[by_words]
        cuts = [0, *(np.flatnonzero(sorted_words[1:] != sorted_words[:-1]) + 1).tolist(), size]
        same = np.zeros(size, dtype=np.bool_)  # equal to the previous row of ``order``
        order = np.empty(size, dtype=np.int64)
        for lo, hi in itertools.pairwise(cuts):
            rows = by_words[lo:hi]
            count = int(sorted_words[lo])
            if count == 0:  # empty regions: all alike
                order[lo:hi] = rows
                same[lo + 1 : hi] = True
                continue
            # Each region as ``count`` words ending at its end (reads stay inside the frame);
            # the first word may start up to 7 bytes early: those low bytes are masked out.
            window = np.ndarray(
                (len(memoryview(data)) - 8 * count + 1,),
                dtype=f"V{8 * count}",
                buffer=data,
                strides=(1,),
            )
            block = window[end[rows] - 8 * count].view("<u8").reshape(-1, count)
            outside = (8 * count - length[rows]).astype(np.uint64) * np.uint64(8)
            block[:, 0] &= np.left_shift(_ALL_ONES, outside)
            key = block[:, : len(_WORD_KEYS)] @ _WORD_KEYS[:count]
            ranked = _stable_order(
                (key >> np.uint64(48)).astype(np.uint16), (key >> np.uint64(32)).astype(np.uint16)
            )
            block = np.take(block, ranked, axis=0)
            rows = rows[ranked]
            order[lo:hi] = rows
            same[lo + 1 : hi] = (block[1:] == block[:-1]).all(axis=1) & (
                length[rows[1:]] == length[rows[:-1]]
            )
        heads = order[~same]
        spans = zip(rest[heads].tolist(), end[heads].tolist(), strict=True)
        if isinstance(data, bytes):
            regions = [data[a:b] for a, b in spans]
        else:
            view = memoryview(data)
            regions = [bytes(view[a:b]) for a, b in spans]
        found = self.parser.rest_fingerprints(regions)
        head_of = np.cumsum(~same) - 1
        fingerprint = np.empty(size, dtype=np.uint64)
        ok = np.ones(size, dtype=np.bool_)
        if -1 in found:  # malformed regions
            valid = np.array([fp >= 0 for fp in found], dtype=np.bool_)
            ok[order] = valid[head_of]
            found = [max(fp, 0) for fp in found]
        fingerprint[order] = np.array(found, dtype=np.uint64)[head_of]
        return fingerprint, ok

    def _devices(self, mac: U64) -> tuple[I32, tuple[bytes, ...]]:
        """Device index per frame and the digests of the distinct addresses, first seen first."""
        device = np.zeros(len(mac), dtype=np.int32)
        if not len(mac):
            return device, ()
        by_mac = _stable_order(  # capture order within an address
            (mac >> np.uint64(32)).astype(np.uint16),
            (mac >> np.uint64(16)).astype(np.uint16),
            mac.astype(np.uint16),
        )
        sorted_mac = mac[by_mac]
        new = np.ones(len(mac), dtype=np.bool_)
        new[1:] = sorted_mac[1:] != sorted_mac[:-1]
        starts = np.flatnonzero(new)
        # The sort was stable: a group's first row is the address's first frame.
        appearance = np.argsort(by_mac[starts], kind="stable")
        rank = np.empty(len(starts), dtype=np.int32)
        rank[appearance] = np.arange(len(starts), dtype=np.int32)
        device[by_mac] = rank[np.cumsum(new) - 1]
        raw = sorted_mac[starts][appearance].astype("<u8").tobytes()
        hasher = self.parser.hasher
        return device, tuple(hasher(mac) for (mac,) in _MAC_IN_WORD.iter_unpack(raw))

    def _merge_fallback(self, batch: RecordBatch, rows: I64, columns: ProbeColumns) -> ProbeColumns:
        """Parse ``rows`` one by one with the per-frame parser and merge its probes in."""
        if not len(rows):
            return columns
        parse = self.parser.parse
        stats = self.stats
        frame = memoryview(batch.buffer)
        probes: list[tuple[int, ProbeRequest]] = []
        bad_records: list[int] = []
        bad_ts: list[int] = []
        linktype = batch.linktype
        for record, start, length, ts_us in zip(
            batch.record[rows].tolist(),
            batch.start[rows].tolist(),
            batch.length[rows].tolist(),
            batch.ts_us[rows].tolist(),
            strict=True,
        ):
            bad = stats.malformed
            probe = parse(frame[start : start + length], ts_us, linktype)
            if probe is not None:
                probes.append((record, probe))
            elif stats.malformed > bad:
                bad_records.append(record)
                bad_ts.append(ts_us)
        index = {digest: i for i, digest in enumerate(columns.devices)}
        devices = list(columns.devices)
        device: list[int] = []
        for _, probe in probes:
            if probe.device not in index:
                index[probe.device] = len(devices)
                devices.append(probe.device)
            device.append(index[probe.device])
        extra = ProbeColumns(
            ts_us=np.array([p.ts_us for _, p in probes], dtype=np.int64),
            record=np.array([r for r, _ in probes], dtype=np.int64),
            device=np.array(device, dtype=np.int32),
            devices=(),
            local_admin=np.array([p.local_admin for _, p in probes], dtype=np.bool_),
            seq=np.array([p.seq for _, p in probes], dtype=np.uint16),
            rssi=np.array(
                [NO_RSSI if p.rssi is None else p.rssi for _, p in probes], dtype=np.int16
            ),
            freq=np.array([p.freq or 0 for _, p in probes], dtype=np.uint16),
            fingerprint=np.array([p.fingerprint for _, p in probes], dtype=np.uint64),
            directed=np.array([p.directed for _, p in probes], dtype=np.bool_),
            malformed_ts_us=_NONE,
            malformed_record=_NONE,
            stats=ParseStats(),
        )
        record = np.concatenate([columns.record, extra.record])
        order = np.argsort(record, kind="stable")

        def merged(name: str) -> npt.NDArray[np.generic]:
            joined: npt.NDArray[np.generic] = np.concatenate(
                [getattr(columns, name), getattr(extra, name)]
            )
            return joined[order]

        # Malformed frames in capture order too (the vectorised ones were gathered first).
        malformed_record = np.concatenate(
            [columns.malformed_record, np.array(bad_records, dtype=np.int64)]
        )
        malformed_ts = np.concatenate([columns.malformed_ts_us, np.array(bad_ts, dtype=np.int64)])
        bad_order = np.argsort(malformed_record, kind="stable")
        return ProbeColumns(
            ts_us=merged("ts_us"),  # type: ignore[arg-type]
            record=record[order],
            device=merged("device"),  # type: ignore[arg-type]
            devices=tuple(devices),
            local_admin=merged("local_admin"),  # type: ignore[arg-type]
            seq=merged("seq"),  # type: ignore[arg-type]
            rssi=merged("rssi"),  # type: ignore[arg-type]
            freq=merged("freq"),  # type: ignore[arg-type]
            fingerprint=merged("fingerprint"),  # type: ignore[arg-type]
            directed=merged("directed"),  # type: ignore[arg-type]
            malformed_ts_us=malformed_ts[bad_order],
            malformed_record=malformed_record[bad_order],
            stats=columns.stats,
        )


_NONE = np.zeros(0, dtype=np.int64)


def _stable_order(*keys: U16) -> I64:
    """The stable order sorting rows by ``keys``, most significant first.

    numpy sorts 16-bit keys stably with a radix sort, several times faster than any sort
    of 64-bit keys: one pass per key, least significant first.
    """
    order: I64 = np.argsort(keys[-1], kind="stable")
    for key in reversed(keys[:-1]):
        order = order[np.argsort(key[order], kind="stable")]
    return order


def _clipped(view: npt.NDArray[_T], pos: I64) -> npt.NDArray[_T]:
    """``view[pos]``, reading the last value for positions past the end (frames too short
    for the read; they are sent to the per-frame parser)."""
    return view[np.minimum(pos, len(view) - 1)]


def _empty_columns() -> ProbeColumns:
    return ProbeColumns(
        ts_us=_NONE,
        record=_NONE,
        device=np.zeros(0, dtype=np.int32),
        devices=(),
        local_admin=np.zeros(0, dtype=np.bool_),
        seq=np.zeros(0, dtype=np.uint16),
        rssi=np.zeros(0, dtype=np.int16),
        freq=np.zeros(0, dtype=np.uint16),
        fingerprint=np.zeros(0, dtype=np.uint64),
        directed=np.zeros(0, dtype=np.bool_),
        malformed_ts_us=_NONE,
        malformed_record=_NONE,
        stats=ParseStats(),
    )


def _u16(head: npt.NDArray[np.uint8], at: int) -> U16:
    """The little-endian 16-bit column at byte ``at`` of rows of bytes."""
    low: U16 = head[:, at].astype(np.uint16)
    return low | head[:, at + 1].astype(np.uint16) << np.uint16(8)


def _dot11(
    views: _Views,
    batch: RecordBatch,
    rows: I64,
    it_len: int,
    offsets: tuple[int, int, int],
    fallback: Bools,
) -> tuple[_Good, int]:
    """Radiotap fields and 802.11 checks of the frames ``rows`` (one layout).

    Returns the probe requests that passed every check and the number of other frames (not
    probe requests); marks in ``fallback`` the frames for the per-frame parser (anything
    malformed or unusual, HT Control included).
    """
    flags_at, freq_at, signal_at = offsets
    start = batch.start[rows]
    length = batch.length[rows]
    # Radiotap, the 802.11 header and the SSID element's id and length of each frame, in one
    # copy. A frame shorter than that reads into the next record: it fails the length checks
    # below and goes to fallback.
    width = it_len + _HEADER_LEN + 2
    if width > len(views.u8):  # frames too short for a probe request, in a tiny buffer
        fallback[rows] = True
        return _Good.none(), 0
    window = np.ndarray(
        (len(views.u8) - width + 1,), dtype=f"V{width}", buffer=views.u8, strides=(1,)
    )
    # Near the buffer's end the copy is shifted back: those frames are read one by one.
    shifted = start > len(window) - 1
    head = window[np.minimum(start, len(window) - 1)].view(np.uint8).reshape(-1, width)
    if flags_at >= 0:
        flags = head[:, flags_at]
        bad = shifted | ((flags & _RT_FLAGS_BAD_FCS) != 0)
        length = length - np.where((flags & _RT_FLAGS_FCS) != 0, 4, 0)
    else:
        bad = shifted
    if signal_at >= 0:
        rssi = head[:, signal_at].view(np.int8).astype(np.int16)
    else:
        rssi = np.full(len(rows), NO_RSSI, dtype=np.int16)
    freq = _u16(head, freq_at) if freq_at >= 0 else np.zeros(len(rows), dtype=np.uint16)
    room = length - it_len
    bad |= room < 1
    probe = head[:, it_len] == _FC_PROBE_REQUEST
    others = int(np.count_nonzero(~bad & ~probe))
    ssid_len = head[:, it_len + _HEADER_LEN + 1].astype(np.int64)
    after_ssid = it_len + _HEADER_LEN + 2 + ssid_len  # from the frame's start
    # ProbeParser takes the SSID-first path only; everything else is its business.
    bad |= probe & (
        (room < _HEADER_LEN + 2)
        | ((head[:, it_len + 1] & _FC1_ORDER) != 0)
        | (head[:, it_len + _HEADER_LEN] != _SSID)
        | (after_ssid > length)
    )
    fallback[rows[bad]] = True
    kept = probe & ~bad
    if not kept.all():  # (the common case: every frame a good probe request, no copies)
        head, rows, start, length = head[kept], rows[kept], start[kept], length[kept]
        after_ssid, ssid_len, rssi, freq = after_ssid[kept], ssid_len[kept], rssi[kept], freq[kept]
    mac = np.ascontiguousarray(head[:, it_len + 10 : it_len + 18]).view("<u8").ravel()
    good = _Good(
        rows=rows,
        rest=start + after_ssid,
        end=start + length,
        mac=mac & _MAC_MASK,
        seq=_u16(head, it_len + 22) >> np.uint16(4),
        directed=ssid_len > 0,
        rssi=rssi,
        freq=freq,
    )
    return good, others
