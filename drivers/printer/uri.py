"""Printer URIs: where a receipt printer is and how to reach it.

Accepted forms (the scheme picks the transport in ``connection.py``)::

    socket://host[:port]          TCP, raw ESC/POS (port 9100 when omitted)
    serial:/dev/ttyUSB0?baud=N    serial line, standard baud rates, 19200 when omitted
    file:/dev/usb/lp0             a device file written directly (kernel usblp / parallel port)
    usb:VID:PID                   USB bulk endpoints through pyusb, ids in hex (usb:04b8:0202)
    dnssd://NAME._pdl-datastream._tcp.local
                                  a network printer by its advertised DNS-SD name (spaces
                                  as %20); resolved to host:port before every connection,
                                  so a printer whose address changes is followed

``serial:///dev/X``, ``file:///path`` and ``mdns://`` (for ``dnssd://``) are accepted too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import parse_qs, quote, unquote, urlsplit

from drivers.printer.errors import InvalidPrinterURI

Scheme = Literal["socket", "serial", "file", "usb", "dnssd"]

DEFAULT_PORT = 9100
DEFAULT_BAUD = 19200
STANDARD_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)

_FORMS = "use socket://host:port, serial:/dev/X?baud=N, file:/path or usb:VID:PID"
_USB_ID = re.compile(r"[0-9a-fA-F]{1,4}")
# NAME._service._tcp.local: the instance name is anything up to the service type.
_DNSSD_NAME = re.compile(r"(?P<instance>.+)\.(?P<type>_[A-Za-z0-9-]{1,15}\._(?:tcp|udp))\.local\.?")


@dataclass(frozen=True)
class PrinterURI:
    """A parsed printer URI; fields that do not apply to the scheme are None."""

    scheme: Scheme
    host: str | None = None
    port: int | None = None
    path: str | None = None
    baud: int | None = None
    vid: int | None = None
    pid: int | None = None
    # dnssd: the DNS-SD instance name and service type ("Front", "_pdl-datastream._tcp")
    instance: str | None = None
    service_type: str | None = None

    @property
    def service_name(self) -> str:
        """A dnssd URI's DNS-SD service name, e.g. ``Front._pdl-datastream._tcp.local.``."""
        return f"{self.instance}.{self.service_type}.local."

    def at(self, host: str, port: int) -> PrinterURI:
        """The socket URI of a dnssd printer found at ``host:port``."""
        return PrinterURI("socket", host=host, port=port)

    def __str__(self) -> str:
        if self.scheme == "dnssd":
            return f"dnssd://{quote(self.instance or '', safe='')}.{self.service_type}.local"
        if self.scheme == "socket":
            host = f"[{self.host}]" if self.host and ":" in self.host else self.host
            return f"socket://{host}:{self.port}"
        if self.scheme == "serial":
            return f"serial:{self.path}?baud={self.baud}"
        if self.scheme == "file":
            return f"file:{self.path}"
        return f"usb:{self.vid:04x}:{self.pid:04x}"


def _invalid(problem: str) -> InvalidPrinterURI:
    return InvalidPrinterURI(f"{problem} ({_FORMS})")


def parse_printer_uri(uri: str) -> PrinterURI:
    """Parse a printer URI, raising InvalidPrinterURI that says what is wrong."""
    if not uri.strip():
        raise _invalid("empty printer URI")
    # urlsplit silently drops tabs and newlines; a pasted URI with them is a config mistake.
    if any(ch.isspace() or not ch.isprintable() for ch in uri):
        raise _invalid(f"printer URI {uri!r} contains whitespace or control characters")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not scheme:
        raise _invalid(f"printer URI {uri!r} has no scheme")
    if scheme == "mdns":
        scheme = "dnssd"
    if scheme not in get_args(Scheme):
        raise _invalid(f"unsupported printer URI scheme {scheme!r}")
    if parts.fragment:
        raise _invalid(f"unexpected '#{parts.fragment}' in printer URI {uri!r}")
    if scheme == "socket":
        return _parse_socket(uri)
    if scheme == "serial":
        return _parse_serial(uri)
    if scheme == "file":
        return PrinterURI("file", path=_device_path(uri))
    if scheme == "dnssd":
        return _parse_dnssd(uri)
    return _parse_usb(uri)


def _parse_dnssd(uri: str) -> PrinterURI:
    parts = urlsplit(uri)
    if parts.path not in ("", "/") or parts.query or not parts.netloc:
        raise _invalid(
            f"printer URI {uri!r} must be dnssd://NAME._pdl-datastream._tcp.local "
            "(spaces in NAME as %20)"
        )
    match = _DNSSD_NAME.fullmatch(unquote(parts.netloc))
    if match is None:
        raise _invalid(
            f"printer URI {uri!r} must name a DNS-SD service: "
            "dnssd://NAME._pdl-datastream._tcp.local (spaces in NAME as %20)"
        )
    return PrinterURI("dnssd", instance=match["instance"], service_type=match["type"])


def _parse_socket(uri: str) -> PrinterURI:
    parts = urlsplit(uri)
    if not uri.lower().startswith("socket://") or not parts.hostname:
        raise _invalid(f"printer URI {uri!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise _invalid(f"printer URI {uri!r} must not carry user credentials")
    if parts.path not in ("", "/") or parts.query:
        raise _invalid(f"unexpected path or query in printer URI {uri!r}")
    try:
        port = parts.port
    except ValueError as err:
        raise _invalid(f"invalid port in printer URI {uri!r}") from err
    if port == 0:
        raise _invalid(f"invalid port in printer URI {uri!r}")
    return PrinterURI("socket", host=parts.hostname, port=port or DEFAULT_PORT)


def _parse_serial(uri: str) -> PrinterURI:
    path = _device_path(uri, query_allowed=True)
    query = parse_qs(urlsplit(uri).query, keep_blank_values=True)
    unknown = sorted(set(query) - {"baud"})
    if unknown:
        raise _invalid(
            f"unknown option {unknown[0]!r} in printer URI {uri!r}; the only option is baud"
        )
    values = query.get("baud", [str(DEFAULT_BAUD)])
    if len(values) != 1 or not values[0].isdigit() or int(values[0]) not in STANDARD_BAUDS:
        raise _invalid(
            f"invalid baud rate {','.join(values)!r} in printer URI {uri!r}, "
            f"expected one of {', '.join(map(str, STANDARD_BAUDS))}"
        )
    return PrinterURI("serial", path=path, baud=int(values[0]))


def _device_path(uri: str, *, query_allowed: bool = False) -> str:
    parts = urlsplit(uri)
    if parts.netloc:
        raise _invalid(f"printer URI {uri!r} names a host; write {parts.scheme}:/absolute/path")
    if parts.query and not query_allowed:
        raise _invalid(f"unexpected query in printer URI {uri!r}")
    if not parts.path.startswith("/") or parts.path == "/":
        raise _invalid(f"printer URI {uri!r} needs an absolute device path")
    return parts.path


def _parse_usb(uri: str) -> PrinterURI:
    ids = uri.split(":", 1)[1].split(":")
    if len(ids) != 2 or not all(_USB_ID.fullmatch(i) for i in ids):
        raise _invalid(f"printer URI {uri!r} needs hex vendor and product ids like usb:04b8:0202")
    vid, pid = (int(i, 16) for i in ids)
    if not vid or not pid:
        raise _invalid(f"printer URI {uri!r} has a zero USB id")
    return PrinterURI("usb", vid=vid, pid=pid)
