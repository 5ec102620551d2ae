"""LLRP 1.0.1 binary framing and the messages a reader sends or must understand.

Wire format (all big-endian)::

    message   = u16 (3 reserved bits | 3-bit version = 1 | 10-bit type) | u32 length | u32 id
                [ u32 vendor id | u8 subtype  -- only for CUSTOM_MESSAGE (type 1023) ] | body
    TLV param = u16 (6 reserved bits | 10-bit type) | u16 length (header included) | body
                [ custom param (type 1023): u32 vendor id | u32 subtype before the body ]
    TV param  = u8 (1 | 7-bit type) | fixed-size body   -- the compact fields of tag reports

This module is pure (no sockets): ``FrameSplitter`` cuts a byte stream into ``Frame``s, the
``encode_*`` functions build what a reader sends, the ``parse_*`` functions read what a client
sends. Anything malformed raises ``LlrpFrameError`` naming the bad part.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from drivers.rfid.reads import TagRead

VERSION = 1
MAX_FRAME_BYTES = 1 << 20  # readers send far less; a larger length means a corrupt header
VENDOR_IMPINJ = 25882

_HEADER = struct.Struct("!HII")
_CUSTOM = struct.Struct("!IB")
_TLV = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


class LlrpFrameError(ValueError):
    """A malformed or truncated LLRP frame or parameter."""


class Msg(IntEnum):
    """LLRP message types (LLRP 1.0.1 §16)."""

    GET_READER_CAPABILITIES = 1
    GET_READER_CONFIG = 2
    SET_READER_CONFIG = 3
    CLOSE_CONNECTION_RESPONSE = 4
    GET_READER_CAPABILITIES_RESPONSE = 11
    GET_READER_CONFIG_RESPONSE = 12
    SET_READER_CONFIG_RESPONSE = 13
    CLOSE_CONNECTION = 14
    ADD_ROSPEC = 20
    DELETE_ROSPEC = 21
    START_ROSPEC = 22
    STOP_ROSPEC = 23
    ENABLE_ROSPEC = 24
    DISABLE_ROSPEC = 25
    GET_ROSPECS = 26
    ADD_ROSPEC_RESPONSE = 30
    DELETE_ROSPEC_RESPONSE = 31
    START_ROSPEC_RESPONSE = 32
    STOP_ROSPEC_RESPONSE = 33
    ENABLE_ROSPEC_RESPONSE = 34
    DISABLE_ROSPEC_RESPONSE = 35
    GET_ROSPECS_RESPONSE = 36
    ADD_ACCESSSPEC = 40
    DELETE_ACCESSSPEC = 41
    ENABLE_ACCESSSPEC = 42
    DISABLE_ACCESSSPEC = 43
    ADD_ACCESSSPEC_RESPONSE = 50
    DELETE_ACCESSSPEC_RESPONSE = 51
    ENABLE_ACCESSSPEC_RESPONSE = 52
    DISABLE_ACCESSSPEC_RESPONSE = 53
    GET_REPORT = 60
    RO_ACCESS_REPORT = 61
    KEEPALIVE = 62
    READER_EVENT_NOTIFICATION = 63
    ENABLE_EVENTS_AND_REPORTS = 64
    KEEPALIVE_ACK = 72
    ERROR_MESSAGE = 100
    CUSTOM_MESSAGE = 1023


# A request and the response type a reader answers it with.
RESPONSE_TO: dict[int, Msg] = {
    Msg.GET_READER_CAPABILITIES: Msg.GET_READER_CAPABILITIES_RESPONSE,
    Msg.GET_READER_CONFIG: Msg.GET_READER_CONFIG_RESPONSE,
    Msg.SET_READER_CONFIG: Msg.SET_READER_CONFIG_RESPONSE,
    Msg.CLOSE_CONNECTION: Msg.CLOSE_CONNECTION_RESPONSE,
    Msg.ADD_ROSPEC: Msg.ADD_ROSPEC_RESPONSE,
    Msg.DELETE_ROSPEC: Msg.DELETE_ROSPEC_RESPONSE,
    Msg.START_ROSPEC: Msg.START_ROSPEC_RESPONSE,
    Msg.STOP_ROSPEC: Msg.STOP_ROSPEC_RESPONSE,
    Msg.ENABLE_ROSPEC: Msg.ENABLE_ROSPEC_RESPONSE,
    Msg.DISABLE_ROSPEC: Msg.DISABLE_ROSPEC_RESPONSE,
    Msg.ADD_ACCESSSPEC: Msg.ADD_ACCESSSPEC_RESPONSE,
    Msg.DELETE_ACCESSSPEC: Msg.DELETE_ACCESSSPEC_RESPONSE,
    Msg.ENABLE_ACCESSSPEC: Msg.ENABLE_ACCESSSPEC_RESPONSE,
    Msg.DISABLE_ACCESSSPEC: Msg.DISABLE_ACCESSSPEC_RESPONSE,
}


class Par(IntEnum):
    """LLRP TLV parameter types used here (LLRP 1.0.1 §16.2)."""

    UTC_TIMESTAMP = 128
    GENERAL_DEVICE_CAPABILITIES = 137
    RECEIVE_SENSITIVITY_TABLE_ENTRY = 139
    PER_ANTENNA_AIR_PROTOCOL = 140
    GPIO_CAPABILITIES = 141
    LLRP_CAPABILITIES = 142
    REGULATORY_CAPABILITIES = 143
    UHF_BAND_CAPABILITIES = 144
    TRANSMIT_POWER_LEVEL_TABLE_ENTRY = 145
    FREQUENCY_INFORMATION = 146
    FREQUENCY_HOP_TABLE = 147
    ROSPEC = 177
    RO_BOUNDARY_SPEC = 178
    ROSPEC_START_TRIGGER = 179
    AISPEC = 183
    INVENTORY_PARAMETER_SPEC = 186
    IDENTIFICATION = 218
    KEEPALIVE_SPEC = 220
    ANTENNA_PROPERTIES = 221
    ANTENNA_CONFIGURATION = 222
    RF_TRANSMITTER = 224
    RO_REPORT_SPEC = 237
    TAG_REPORT_CONTENT_SELECTOR = 238
    TAG_REPORT_DATA = 240
    EPC_DATA = 241
    READER_EVENT_NOTIFICATION_DATA = 246
    CONNECTION_ATTEMPT_EVENT = 256
    LLRP_STATUS = 287
    C1G2_LLRP_CAPABILITIES = 327
    UHF_C1G2_RF_MODE_TABLE = 328
    UHF_C1G2_RF_MODE_TABLE_ENTRY = 329
    C1G2_INVENTORY_COMMAND = 330
    C1G2_SINGULATION_CONTROL = 336
    CUSTOM = 1023


class Status(IntEnum):
    """LLRPStatus codes (LLRP 1.0.1 §16.2.8.1) the simulator uses."""

    SUCCESS = 0
    PARAMETER_ERROR = 100
    FIELD_ERROR = 101
    UNSUPPORTED_MESSAGE = 109
    UNSUPPORTED_VERSION = 110
    A_INVALID = 300
    DEVICE_ERROR = 401


# TV parameter type -> body size in bytes (LLRP 1.0.1 §16.2.7.3).
TV_SIZES: dict[int, int] = {
    1: 2,  # AntennaID
    2: 8,  # FirstSeenTimestampUTC
    3: 8,  # FirstSeenTimestampUptime
    4: 8,  # LastSeenTimestampUTC
    5: 8,  # LastSeenTimestampUptime
    6: 1,  # PeakRSSI (signed dBm)
    7: 2,  # ChannelIndex
    8: 2,  # TagSeenCount
    9: 4,  # ROSpecID
    10: 2,  # InventoryParameterSpecID
    11: 2,  # C1G2CRC
    12: 2,  # C1G2PC
    13: 12,  # EPC-96
    14: 2,  # SpecIndex
    15: 2,  # ClientRequestOpSpecResult
    16: 4,  # AccessSpecID
    17: 2,  # OpSpecID
    18: 4,  # C1G2SingulationDetails
    19: 2,  # C1G2XPCW1
    20: 2,  # C1G2XPCW2
}


# --- framing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One LLRP message: its type, id and body (the bytes after the header)."""

    msg_type: int
    message_id: int
    body: bytes
    version: int = VERSION
    vendor_id: int = 0
    subtype: int = 0

    @property
    def name(self) -> str:
        """The message's LLRP name, or ``TYPE_<n>`` for a type this module does not know."""
        try:
            return Msg(self.msg_type).name
        except ValueError:
            return f"TYPE_{self.msg_type}"


def encode_frame(
    msg_type: int,
    message_id: int,
    body: bytes = b"",
    *,
    vendor_id: int = 0,
    subtype: int = 0,
    version: int = VERSION,
) -> bytes:
    """One LLRP message on the wire."""
    first = ((version & 0x7) << 10) | (msg_type & 0x3FF)
    if msg_type == Msg.CUSTOM_MESSAGE:
        extra = _CUSTOM.pack(vendor_id, subtype)
        return _HEADER.pack(first, _HEADER.size + len(extra) + len(body), message_id) + extra + body
    return _HEADER.pack(first, _HEADER.size + len(body), message_id) + body


class FrameSplitter:
    """Cuts a TCP byte stream into LLRP frames; keeps an incomplete tail for the next feed."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Every complete frame in the stream so far; LlrpFrameError on an impossible header.

        After an error the stream cannot be resynchronised (LLRP has no frame marker): the
        caller must drop the connection.
        """
        self._buf += data
        frames: list[Frame] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= _HEADER.size:
            first, length, message_id = _HEADER.unpack_from(buf, pos)
            msg_type = first & 0x3FF
            version = (first >> 10) & 0x7
            hdr = _HEADER.size + (_CUSTOM.size if msg_type == Msg.CUSTOM_MESSAGE else 0)
            if length < hdr or length > self._max:
                del buf[:pos]
                raise LlrpFrameError(
                    f"LLRP frame header of message type {msg_type} (id {message_id}) "
                    f"declares length {length}, outside {hdr}..{self._max}"
                )
            if len(buf) - pos < length:
                break
            vendor_id = subtype = 0
            if msg_type == Msg.CUSTOM_MESSAGE:
                vendor_id, subtype = _CUSTOM.unpack_from(buf, pos + _HEADER.size)
            frames.append(
                Frame(
                    msg_type,
                    message_id,
                    bytes(buf[pos + hdr : pos + length]),
                    version,
                    vendor_id,
                    subtype,
                )
            )
            pos += length
        del buf[:pos]
        return frames


# --- parameters ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Param:
    """One decoded parameter header and its body; TV parameters have ``tv=True``."""

    type: int
    body: bytes
    tv: bool = False
    vendor_id: int = 0
    subtype: int = 0


def iter_params(data: bytes, where: str = "message") -> Iterator[Param]:
    """The parameters packed one after another in ``data``; LlrpFrameError on a bad one."""
    pos = 0
    end = len(data)
    while pos < end:
        first = data[pos]
        if first & 0x80:
            ptype = first & 0x7F
            size = TV_SIZES.get(ptype)
            if size is None:
                raise LlrpFrameError(f"unknown TV parameter type {ptype} in {where} at byte {pos}")
            if pos + 1 + size > end:
                raise LlrpFrameError(f"TV parameter type {ptype} truncated in {where}")
            yield Param(ptype, data[pos + 1 : pos + 1 + size], tv=True)
            pos += 1 + size
            continue
        if end - pos < _TLV.size:
            raise LlrpFrameError(f"{end - pos} stray bytes at the end of {where}")
        ptype, length = _TLV.unpack_from(data, pos)
        ptype &= 0x3FF
        if length < _TLV.size or pos + length > end:
            raise LlrpFrameError(
                f"parameter type {ptype} in {where} declares length {length}, "
                f"{end - pos} bytes left"
            )
        if ptype == Par.CUSTOM:
            if length < _TLV.size + 8:
                raise LlrpFrameError(f"custom parameter in {where} too short ({length} bytes)")
            vendor_id, subtype = struct.unpack_from("!II", data, pos + _TLV.size)
            yield Param(ptype, data[pos + _TLV.size + 8 : pos + length], False, vendor_id, subtype)
        else:
            yield Param(ptype, data[pos + _TLV.size : pos + length])
        pos += length


def tlv(ptype: int, body: bytes = b"") -> bytes:
    """A TLV parameter."""
    return _TLV.pack(ptype, _TLV.size + len(body)) + body


def _unpack(fmt: str, body: bytes, what: str) -> tuple[int, ...]:
    try:
        return struct.unpack_from(fmt, body)
    except struct.error as err:
        raise LlrpFrameError(f"{what} is {len(body)} bytes, too short") from err


# --- what a reader sends ---------------------------------------------------------------------


def llrp_status(code: int = Status.SUCCESS, description: str = "") -> bytes:
    """An LLRPStatus parameter."""
    text = description.encode()
    return tlv(Par.LLRP_STATUS, struct.pack("!HH", code, len(text)) + text)


def encode_status_response(
    msg_type: int, message_id: int, code: int = Status.SUCCESS, description: str = ""
) -> bytes:
    """A response whose body is just an LLRPStatus (most *_RESPONSE messages)."""
    return encode_frame(msg_type, message_id, llrp_status(code, description))


def encode_error_message(message_id: int, code: int, description: str) -> bytes:
    """ERROR_MESSAGE: the reader's answer to a message it could not process."""
    return encode_frame(Msg.ERROR_MESSAGE, message_id, llrp_status(code, description))


def encode_connection_event(message_id: int, now_us: int, status: int = 0) -> bytes:
    """READER_EVENT_NOTIFICATION with a ConnectionAttemptEvent (0 = success)."""
    data = tlv(Par.UTC_TIMESTAMP, _U64.pack(now_us)) + tlv(
        Par.CONNECTION_ATTEMPT_EVENT, _U16.pack(status)
    )
    return encode_frame(
        Msg.READER_EVENT_NOTIFICATION, message_id, tlv(Par.READER_EVENT_NOTIFICATION_DATA, data)
    )


def encode_keepalive(message_id: int) -> bytes:
    """KEEPALIVE (the client must answer KEEPALIVE_ACK)."""
    return encode_frame(Msg.KEEPALIVE, message_id)


def _default_power_table() -> tuple[int, ...]:
    return tuple(range(1000, 3251, 25))  # 10.00..32.50 dBm in 0.25 dB steps, like an R420


@dataclass(frozen=True, slots=True)
class ReaderModel:
    """What the simulated reader claims to be in its capabilities (Impinj R420-like)."""

    antennas: int = 4
    manufacturer: int = VENDOR_IMPINJ  # IANA private enterprise number
    model: int = 2001002
    firmware: str = "5.14.0.240"
    power_table_cdbm: tuple[int, ...] = field(default_factory=_default_power_table)
    hop_table_khz: tuple[int, ...] = (902750, 915250, 927250, 903250, 915750, 926750)
    country_code: int = 840
    mac: bytes = bytes.fromhex("001625aabbcc")

    def power_dbm(self, index: int) -> float:
        """The dBm of a 1-based power table index."""
        return self.power_table_cdbm[index - 1] / 100


def _capabilities_body(model: ReaderModel) -> bytes:
    fw = model.firmware.encode()
    general = (
        struct.pack("!HHIIH", model.antennas, 0xC000, model.manufacturer, model.model, len(fw)) + fw
    )
    general += tlv(Par.RECEIVE_SENSITIVITY_TABLE_ENTRY, struct.pack("!HH", 1, 0))
    general += tlv(Par.GPIO_CAPABILITIES, struct.pack("!HH", 4, 4))
    for ant in range(1, model.antennas + 1):
        general += tlv(Par.PER_ANTENNA_AIR_PROTOCOL, struct.pack("!HHB", ant, 1, 1))
    llrp_caps = tlv(Par.LLRP_CAPABILITIES, struct.pack("!BBHIIIII", 0x40, 1, 0, 1, 32, 1, 508, 8))
    band = b"".join(
        tlv(Par.TRANSMIT_POWER_LEVEL_TABLE_ENTRY, struct.pack("!Hh", i, cdbm))
        for i, cdbm in enumerate(model.power_table_cdbm, start=1)
    )
    hops = model.hop_table_khz
    band += tlv(
        Par.FREQUENCY_INFORMATION,
        b"\x80"
        + tlv(Par.FREQUENCY_HOP_TABLE, struct.pack(f"!BBH{len(hops)}I", 1, 0, len(hops), *hops)),
    )
    modes = [
        # ModeIdentifier, DR/EPC HAG flags, Mod, FLM, M, BDR, PIE, MinTari, MaxTari, StepTari
        (0, 0x80, 0, 0, 1, 640000, 1500, 6250, 6250, 0),  # max throughput, FM0
        (1, 0x80, 1, 0, 2, 640000, 1500, 6250, 6250, 0),  # hybrid, Miller-2
        (2, 0x80, 2, 0, 4, 274000, 2000, 20000, 20000, 0),  # dense reader, Miller-4
        (1000, 0x80, 2, 0, 4, 274000, 2000, 20000, 20000, 0),  # autoset
    ]
    mode_table = b"".join(
        tlv(Par.UHF_C1G2_RF_MODE_TABLE_ENTRY, struct.pack("!IBBBBIIIII", *m)) for m in modes
    )
    band += tlv(Par.UHF_C1G2_RF_MODE_TABLE, mode_table)
    regulatory = tlv(
        Par.REGULATORY_CAPABILITIES,
        struct.pack("!HH", model.country_code, 1) + tlv(Par.UHF_BAND_CAPABILITIES, band),
    )
    c1g2 = tlv(Par.C1G2_LLRP_CAPABILITIES, struct.pack("!BH", 0x40, 2))
    return (
        llrp_status()
        + tlv(Par.GENERAL_DEVICE_CAPABILITIES, general)
        + llrp_caps
        + regulatory
        + c1g2
    )


def encode_capabilities_response(message_id: int, model: ReaderModel) -> bytes:
    """GET_READER_CAPABILITIES_RESPONSE with general, LLRP, regulatory and C1G2 capabilities."""
    return encode_frame(Msg.GET_READER_CAPABILITIES_RESPONSE, message_id, _capabilities_body(model))


def encode_reader_config_response(message_id: int, model: ReaderModel, keepalive_ms: int) -> bytes:
    """GET_READER_CONFIG_RESPONSE: identification, antenna properties, keepalive spec."""
    body = llrp_status()
    body += tlv(Par.IDENTIFICATION, struct.pack("!BH", 0, len(model.mac)) + model.mac)
    for ant in range(1, model.antennas + 1):
        body += tlv(Par.ANTENNA_PROPERTIES, struct.pack("!BHh", 0x80, ant, 0))
    body += tlv(Par.KEEPALIVE_SPEC, struct.pack("!BI", 1 if keepalive_ms else 0, keepalive_ms))
    return encode_frame(Msg.GET_READER_CONFIG_RESPONSE, message_id, body)


@dataclass(frozen=True, slots=True)
class ContentSelector:
    """Which fields the client asked for in each TagReportData (TagReportContentSelector)."""

    rospec_id: bool = True
    antenna_id: bool = True
    peak_rssi: bool = True
    first_seen: bool = True
    last_seen: bool = True
    seen_count: bool = True

    @classmethod
    def from_flags(cls, flags: int) -> ContentSelector:
        """From the selector's 16-bit flags (bit 15 = EnableROSpecID ... bit 6 = AccessSpecID)."""
        return cls(
            rospec_id=bool(flags & 0x8000),
            antenna_id=bool(flags & 0x1000),
            peak_rssi=bool(flags & 0x0400),
            first_seen=bool(flags & 0x0200),
            last_seen=bool(flags & 0x0100),
            seen_count=bool(flags & 0x0080),
        )


_TRD_HEADER = struct.Struct("!HH")
_EPC96 = struct.Struct("!B12s")
_ROSPEC_TV = struct.Struct("!BI")
_ANT_TV = struct.Struct("!BH")
_RSSI_TV = struct.Struct("!Bb")
_TS_TV = struct.Struct("!BQ")
_COUNT_TV = struct.Struct("!BH")


def encode_tag_report_data(
    read: TagRead, selector: ContentSelector, rospec_id: int, *, epc_data: bool = False
) -> bytes:
    """One TagReportData: EPC-96 as TV (EPCData TLV for other lengths or when asked), then the
    selected TV fields in the order LLRP 1.0.1 §16.2.7.3 lists them."""
    if len(read.epc) == 12 and not epc_data:
        parts = [_EPC96.pack(0x80 | 13, read.epc)]
    else:
        parts = [tlv(Par.EPC_DATA, _U16.pack(len(read.epc) * 8) + read.epc)]
    if selector.rospec_id:
        parts.append(_ROSPEC_TV.pack(0x80 | 9, rospec_id))
    if selector.antenna_id:
        parts.append(_ANT_TV.pack(0x80 | 1, read.antenna))
    if selector.peak_rssi:
        parts.append(_RSSI_TV.pack(0x80 | 6, max(-128, min(127, round(read.rssi)))))
    if selector.first_seen:
        parts.append(_TS_TV.pack(0x80 | 2, read.seen_at_us))
    if selector.last_seen:
        parts.append(_TS_TV.pack(0x80 | 4, read.seen_at_us))
    if selector.seen_count:
        parts.append(_COUNT_TV.pack(0x80 | 8, min(read.count, 0xFFFF)))
    body = b"".join(parts)
    return _TRD_HEADER.pack(Par.TAG_REPORT_DATA, _TRD_HEADER.size + len(body)) + body


def encode_ro_access_report(
    message_id: int,
    reads: Iterable[TagRead],
    selector: ContentSelector,
    rospec_id: int,
    *,
    epc_data: bool = False,
) -> bytes:
    """RO_ACCESS_REPORT carrying one TagReportData per read."""
    body = b"".join(
        encode_tag_report_data(r, selector, rospec_id, epc_data=epc_data) for r in reads
    )
    return encode_frame(Msg.RO_ACCESS_REPORT, message_id, body)


# --- what a client sends ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoSpecInfo:
    """What the simulator needs from an ADD_ROSPEC."""

    rospec_id: int
    start_immediate: bool
    antennas: tuple[int, ...]  # () = all antennas (AntennaID 0)
    tx_power_index: dict[int, int]
    session: int | None
    search_mode: int | None
    selector: ContentSelector


def parse_rospec_id(body: bytes, what: str) -> int:
    """The u32 ROSpecID that ENABLE/START/STOP/DISABLE/DELETE_ROSPEC carry."""
    if len(body) != 4:
        raise LlrpFrameError(f"{what} body must be a 4-byte ROSpecID, got {len(body)} bytes")
    return int(_U32.unpack(body)[0])


def _antenna_configurations(aispec_tail: bytes) -> Iterator[Param]:
    """The AntennaConfiguration parameters of an AISpec's InventoryParameterSpecs."""
    for spec in iter_params(aispec_tail, "AISpec"):
        if spec.type == Par.INVENTORY_PARAMETER_SPEC:
            for conf in iter_params(spec.body[3:], "InventoryParameterSpec"):
                if conf.type == Par.ANTENNA_CONFIGURATION:
                    yield conf


def _c1g2_inventory(body: bytes) -> tuple[int | None, int | None]:
    """(session, Impinj search mode) of a C1G2InventoryCommand, None where absent."""
    session: int | None = None
    search_mode: int | None = None
    for s in iter_params(body[1:], "C1G2InventoryCommand"):
        if s.type == Par.C1G2_SINGULATION_CONTROL:
            session = _unpack("!B", s.body, "SingulationControl")[0] >> 6
        elif s.type == Par.CUSTOM and s.vendor_id == VENDOR_IMPINJ and s.subtype == 23:
            search_mode = _unpack("!H", s.body, "SearchMode")[0]
    return session, search_mode


def parse_add_rospec(body: bytes) -> RoSpecInfo:
    """The ROSpec of an ADD_ROSPEC body."""
    rospec = next((p for p in iter_params(body, "ADD_ROSPEC") if p.type == Par.ROSPEC), None)
    if rospec is None:
        raise LlrpFrameError("ADD_ROSPEC carries no ROSpec parameter")
    rospec_id, _prio, _state = _unpack("!IBB", rospec.body, "ROSpec")
    start_immediate = False
    antennas: list[int] = []
    tx_power: dict[int, int] = {}
    session: int | None = None
    search_mode: int | None = None
    selector = ContentSelector()
    for p in iter_params(rospec.body[6:], "ROSpec"):
        if p.type == Par.RO_BOUNDARY_SPEC:
            for b in iter_params(p.body, "ROBoundarySpec"):
                if b.type == Par.ROSPEC_START_TRIGGER:
                    start_immediate = _unpack("!B", b.body, "ROSpecStartTrigger")[0] == 1
        elif p.type == Par.AISPEC:
            (count,) = _unpack("!H", p.body, "AISpec")
            ids = _unpack(f"!{count}H", p.body[2:], "AISpec antenna list")
            antennas.extend(a for a in ids if a)
            for conf in _antenna_configurations(p.body[2 + 2 * count :]):
                (ant,) = _unpack("!H", conf.body, "AntennaConfiguration")
                for c in iter_params(conf.body[2:], "AntennaConfiguration"):
                    if c.type == Par.RF_TRANSMITTER:
                        tx_power[ant] = _unpack("!HHH", c.body, "RFTransmitter")[2]
                    elif c.type == Par.C1G2_INVENTORY_COMMAND:
                        found_session, found_mode = _c1g2_inventory(c.body)
                        session = session if found_session is None else found_session
                        search_mode = search_mode if found_mode is None else found_mode
        elif p.type == Par.RO_REPORT_SPEC:
            for r in iter_params(p.body[3:], "ROReportSpec"):
                if r.type == Par.TAG_REPORT_CONTENT_SELECTOR:
                    flags = _unpack("!H", r.body, "TagReportContentSelector")[0]
                    selector = ContentSelector.from_flags(flags)
    return RoSpecInfo(
        rospec_id=rospec_id,
        start_immediate=start_immediate,
        antennas=tuple(sorted(set(antennas))),
        tx_power_index=tx_power,
        session=session,
        search_mode=search_mode,
        selector=selector,
    )


def parse_keepalive_ms(body: bytes) -> int | None:
    """The periodic keepalive interval a SET_READER_CONFIG asks for (None if not set, 0 = off)."""
    if not body:
        raise LlrpFrameError("SET_READER_CONFIG body is empty (needs the reset flag byte)")
    for p in iter_params(body[1:], "SET_READER_CONFIG"):
        if p.type == Par.KEEPALIVE_SPEC:
            trigger, interval = _unpack("!BI", p.body, "KeepaliveSpec")
            return int(interval) if trigger == 1 else 0
    return None
