"""The ``[rfid]`` section of the agent config: readers, antenna → room maps, session tuning.

Kept import-light (no sllurp): the sync daemon loads the same file and never opens a reader.

Decisions a store IT person may trip over, each an error naming its key:

* an antenna mapped to two rooms (possible only in the list form of ``rooms``);
* a room name used by two readers: a room belongs to one reader, so a try-on's reader is
  implied by its room (several antennas of one reader may serve one room);
* a reader name used twice, an unknown key anywhere.

A reader's ``host`` is ``HOST``, ``HOST:PORT``, or the name the reader advertises over mDNS:
``dnssd://Speedway R420 12-34-56._llrp._tcp.local`` (spaces as they are or as ``%20``); the
agent then looks the name up before every connection and follows the reader to a new address.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote

from pydantic import Field, field_validator, model_validator

from agent.configbase import Identifier, Strict

LLRP_PORT = 5084
DNSSD_SCHEME = "dnssd://"
LLRP_SERVICE = "_llrp._tcp.local."  # the DNS-SD type LLRP readers advertise
_INSTANCE_MAX_BYTES = 63  # DNS-SD instance names are one DNS label (RFC 6763 4.1.1)

RoomName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


def split_reader_host(value: str) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (``[v6]:PORT``) → (host, port), LLRP's 5084 by default."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected HOST or HOST:PORT, got {value!r}")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""  # a bare name, IPv4 or unbracketed IPv6 address
    if not host:
        raise ValueError(f"expected HOST or HOST:PORT, got {value!r}")
    if not port_text:
        return host, LLRP_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a number in 1-65535")
    return host, int(port_text)


def reader_service_name(value: str) -> str | None:
    """The DNS-SD service name of a ``dnssd://NAME._llrp._tcp.local`` host, else None.

    Returned with the final dot (``NAME._llrp._tcp.local.``); ValueError for a ``dnssd://``
    host that names no LLRP reader.
    """
    text = value.strip()
    if not text.lower().startswith(DNSSD_SCHEME):
        return None
    name = unquote(text[len(DNSSD_SCHEME) :])
    full = name if name.endswith(".") else name + "."
    instance = full.removesuffix("." + LLRP_SERVICE)
    if instance == full or not instance.strip():
        raise ValueError(
            f"expected dnssd://NAME._llrp._tcp.local (the name an LLRP reader advertises), "
            f"got {value!r}"
        )
    if len(instance.encode()) > _INSTANCE_MAX_BYTES:
        raise ValueError(
            f"advertised name {instance!r} is longer than {_INSTANCE_MAX_BYTES} bytes, "
            "which DNS-SD does not allow"
        )
    return full


class AntennaRoom(Strict):
    """One antenna of a reader and the fitting room it watches."""

    antenna: int = Field(ge=1, le=65535)
    room: RoomName


class ReaderConfig(Strict):
    """One LLRP reader (Impinj, Zebra, ...) and the rooms its antennas watch."""

    name: Identifier
    host: str
    # {"1" = "room-1", "2" = "room-2"} or [{antenna = 1, room = "room-1"}, ...]
    rooms: tuple[AntennaRoom, ...] = Field(min_length=1)
    tx_power_dbm: float | None = Field(default=None, ge=0, le=40)
    session: int = Field(default=2, ge=0, le=3)
    # Impinj's inventory search mode (2 = dual target); needs Impinj's LLRP extensions, so
    # readers of other makes (Zebra, ...) set impinj_extensions = false.
    search_mode: int = Field(default=2, ge=0, le=6)
    impinj_extensions: bool = True
    tag_population: int = Field(default=16, ge=1, le=65535)
    keepalive_s: float = Field(default=5.0, gt=0, le=300)

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        if reader_service_name(value) is None:
            split_reader_host(value)
        return value

    @field_validator("rooms", mode="before")
    @classmethod
    def _table_form(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = []
        for key, room in value.items():
            text = str(key).strip()
            if not text.isdigit():
                raise ValueError(f'antenna {key!r} is not a number (write e.g. "1" = "room")')
            out.append({"antenna": int(text), "room": room})
        return out

    @field_validator("rooms")
    @classmethod
    def _one_room_per_antenna(cls, value: tuple[AntennaRoom, ...]) -> tuple[AntennaRoom, ...]:
        seen: dict[int, str] = {}
        for mapping in value:
            other = seen.setdefault(mapping.antenna, mapping.room)
            if other != mapping.room:
                raise ValueError(
                    f"antenna {mapping.antenna} is mapped to two rooms ({other!r} and "
                    f"{mapping.room!r}); an antenna watches one room"
                )
        return value

    @property
    def service_name(self) -> str | None:
        """The DNS-SD name of a reader configured by ``dnssd://``; None for an address."""
        return reader_service_name(self.host)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the reader's LLRP endpoint; ValueError for a ``dnssd://`` reader."""
        name = self.service_name
        if name is not None:
            raise ValueError(
                f"reader {self.name!r} is configured by its advertised name {name!r}: "
                "its address is looked up over mDNS"
            )
        return split_reader_host(self.host)

    @property
    def antennas(self) -> tuple[int, ...]:
        """The antennas to read, in ascending order."""
        return tuple(sorted({m.antenna for m in self.rooms}))

    @property
    def room_of(self) -> dict[int, str]:
        """Antenna number → room name."""
        return {m.antenna: m.room for m in self.rooms}


class RfidConfig(Strict):
    """RFID settings; no readers means no RFID device.

    Session tuning (seconds): ``window_s`` is how far back the strongest antenna is judged
    (cross-reads of a neighbouring room's antenna are weaker over that window);
    ``min_dwell_s`` filters garments carried past the rooms; ``end_after_s`` is the
    hysteresis: a garment unseen that long has left; ``max_duration_s`` closes the session
    of a garment left behind in a room.
    """

    readers: tuple[ReaderConfig, ...] = ()
    window_s: float = Field(default=3.0, gt=0, le=60)
    min_dwell_s: float = Field(default=30.0, ge=0, le=3600)
    end_after_s: float = Field(default=10.0, gt=0, le=600)
    max_duration_s: float = Field(default=1800.0, gt=0, le=86400)
    raw_read_retention_days: int = Field(default=7, ge=1, le=365)

    @model_validator(mode="after")
    def _unique_names(self) -> RfidConfig:
        readers: set[str] = set()
        room_reader: dict[str, str] = {}
        for i, reader in enumerate(self.readers):
            if reader.name in readers:
                raise ValueError(f"readers[{i}].name: reader name {reader.name!r} is used twice")
            readers.add(reader.name)
            for room in reader.room_of.values():
                owner = room_reader.setdefault(room, reader.name)
                if owner != reader.name:
                    raise ValueError(
                        f"readers[{i}].rooms: room {room!r} is already watched by reader "
                        f"{owner!r}; a room belongs to one reader"
                    )
        if self.max_duration_s <= self.min_dwell_s:
            raise ValueError("max_duration_s must be longer than min_dwell_s")
        return self
