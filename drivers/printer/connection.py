"""A blocking connection to a receipt printer. Run it in a worker thread, never in an event loop.

python-escpos printer classes are the transport: ``Network``, ``Serial``, ``File`` and ``Usb``
each write with ``_raw`` (and ``Network``/``Usb`` read with ``_read``). For socket, serial and
file URIs this module opens the OS handle itself and hands it to the escpos object as its
``device``, because the library's ``open()``/``close()``:

- leak the socket when ``Network.open`` fails to connect (a ResourceWarning per attempt);
- log every open and close through the root logger (``logging.info``, which also installs a
  stderr handler on an unconfigured root);
- leave pyserial without a write timeout, so a printer that holds its handshake line while
  out of paper blocks the writer forever, and flush on close, which can block the same way.

python-escpos is imported when a connection opens, not with this module: importing it calls
``logging.basicConfig()`` (in ``escpos.capabilities``), which would make the entry point's own
logging set-up a silent no-op.

Every read and write here is bounded by ``timeout``. Library, socket and serial errors are
translated into the tree in ``errors.py``.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Protocol

import serial

from drivers.printer.errors import (
    PrinterNotReady,
    PrinterUnreachable,
    PrinterWriteError,
)
from drivers.printer.status import REALTIME_STATUS, STATUS_QUERY, PrinterStatus, parse_status
from drivers.printer.uri import PrinterURI

_LOGGER = logging.getLogger(__name__)

CHUNK_SIZE = 4096
_PROBE = STATUS_QUERY[:3]


class _Link(Protocol):
    """An open transport: the escpos printer object plus how to read from it."""

    can_read: bool

    def write(self, data: bytes) -> None: ...

    def read(self, count: int, timeout: float) -> bytes: ...

    def close(self) -> None: ...


class _SocketLink:
    can_read = True

    def __init__(self, uri: PrinterURI, timeout: float) -> None:
        assert uri.host is not None
        assert uri.port is not None
        self._timeout = timeout
        self._sock = socket.create_connection((uri.host, uri.port), timeout=timeout)
        # The delivery probe is a small write right after the data: do not let Nagle hold it.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        from escpos.printer import Network

        self._printer = Network(uri.host, uri.port, timeout=timeout)
        self._printer.device = self._sock

    def write(self, data: bytes) -> None:
        self._printer._raw(data)

    def read(self, count: int, timeout: float) -> bytes:
        self._sock.settimeout(timeout)
        try:
            data: bytes = self._printer._read()
        finally:
            self._sock.settimeout(self._timeout)
        if not data:
            raise ConnectionError("connection closed by the printer")
        return data

    def close(self) -> None:
        self._printer.device = False
        self._sock.close()


class _SerialLink:
    can_read = True

    def __init__(self, uri: PrinterURI, timeout: float) -> None:
        assert uri.path is not None
        assert uri.baud is not None
        self._port = serial.Serial(uri.path, uri.baud, timeout=timeout, write_timeout=timeout)
        from escpos.printer import Serial

        self._printer = Serial(uri.path, uri.baud, timeout=timeout)
        self._printer.device = self._port

    def write(self, data: bytes) -> None:
        self._printer._raw(data)

    def read(self, count: int, timeout: float) -> bytes:
        # Not escpos Serial._read: it asks for 16 bytes, so pyserial would wait out the timeout.
        self._port.timeout = timeout
        data = self._port.read(count)
        if not data:
            raise TimeoutError(f"no answer within {timeout:.1f} s")
        return data

    def close(self) -> None:
        self._printer.device = False
        self._port.close()


class _FileLink:
    can_read = False

    def __init__(self, uri: PrinterURI, timeout: float) -> None:
        assert uri.path is not None
        self._timeout = timeout
        # No O_CREAT: a missing /dev/usb/lp0 means an unplugged printer, not a file to create.
        fd = os.open(uri.path, os.O_WRONLY | os.O_APPEND | os.O_NOCTTY)
        self._file: IO[bytes] = os.fdopen(fd, "ab")
        from escpos.printer import File

        self._printer = File(uri.path)
        self._printer.device = self._file

    def write(self, data: bytes) -> None:
        # A device node (usblp, parallel port) blocks writes while the printer is offline;
        # waiting for it to become writable first keeps the wait bounded.
        poll = select.poll()
        poll.register(self._file.fileno(), select.POLLOUT)
        if not poll.poll(self._timeout * 1000):
            raise TimeoutError(f"device did not accept data within {self._timeout:.1f} s")
        self._printer._raw(data)

    def read(self, count: int, timeout: float) -> bytes:
        raise NotImplementedError("file: printers cannot be read")

    def close(self) -> None:
        self._printer.device = False
        self._file.close()


class _UsbLink:
    can_read = True

    def __init__(self, uri: PrinterURI, timeout: float) -> None:
        from escpos.exceptions import DeviceNotFoundError
        from escpos.printer import Usb

        if not Usb.is_usable():
            # Checked first: an escpos Usb object built without pyusb raises from __del__.
            raise PrinterUnreachable(f"printer {uri} needs pyusb (install storelink[usb])")
        # pyusb takes milliseconds, and 0 (the escpos default) means wait forever.
        self._printer = Usb(uri.vid, uri.pid, timeout=max(int(timeout * 1000), 1))
        try:
            self._printer.open()
        except DeviceNotFoundError as err:
            raise OSError(str(err)) from err

    def write(self, data: bytes) -> None:
        self._printer._raw(data)

    def read(self, count: int, timeout: float) -> bytes:
        return bytes(self._printer._read())

    def close(self) -> None:
        self._printer.close()


_LINKS: dict[str, Callable[[PrinterURI, float], _Link]] = {
    "socket": _SocketLink,
    "serial": _SerialLink,
    "file": _FileLink,
    "usb": _UsbLink,
}


class PrinterConnection:
    """One open connection to a receipt printer; blocking, owned by one worker thread."""

    def __init__(self, uri: PrinterURI, timeout: float = 5.0) -> None:
        self.uri = uri
        self.timeout = timeout
        self._link: _Link | None = None
        self._inbox = b""

    def __enter__(self) -> PrinterConnection:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect to or open the printer; PrinterUnreachable when that fails."""
        if self._link is not None:
            return
        try:
            self._link = _LINKS[self.uri.scheme](self.uri, self.timeout)
        except (OSError, ValueError) as err:  # pyserial raises ValueError for bad settings
            raise PrinterUnreachable(f"cannot reach printer {self.uri}: {err}") from err
        self._inbox = b""

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        link, self._link = self._link, None
        if link is not None:
            try:
                link.close()
            except OSError as err:
                _LOGGER.debug("closing printer %s: %s", self.uri, err)

    def query_status(self) -> PrinterStatus | None:
        """Ask the printer for its real-time status; None when the transport cannot read."""
        link = self._require_link()
        if not link.can_read:
            return None
        try:
            link.write(STATUS_QUERY)
            reply = self._receive(4)
        except OSError as err:
            self.close()  # late answers would be read as the reply to the next query
            raise PrinterUnreachable(
                f"printer {self.uri} did not answer the status query: {_reason(err)}"
            ) from err
        return parse_status(*reply)

    def send(self, data: bytes) -> None:
        """Send print data; returns once the printer confirmed receipt where it can answer."""
        link = self._require_link()
        sent = 0
        try:
            for start in range(0, len(data), CHUNK_SIZE):
                chunk = data[start : start + CHUNK_SIZE]
                link.write(chunk)
                sent += len(chunk)
            if link.can_read:
                self._confirm_delivery(link, data)
        except OSError as err:
            self.close()
            raise PrinterWriteError(
                f"sending to printer {self.uri} failed after {sent} of {len(data)} bytes: "
                f"{_reason(err)}",
                bytes_sent=sent,
            ) from err
        _LOGGER.debug("sent %d bytes to printer %s", sent, self.uri)

    def _confirm_delivery(self, link: _Link, data: bytes) -> None:
        # TCP and serial keep order, so the answer to a DLE EOT sent after the data proves the
        # printer has read every byte. Status patterns inside the data are answered as well.
        expected = 1 + len(REALTIME_STATUS.findall(data))
        link.write(_PROBE)
        try:
            self._receive(expected)
        except TimeoutError:
            # A printer that ignores patterns inside data answered the probe alone.
            if expected == 1 or not self._inbox:
                raise
        self._inbox = b""

    def _receive(self, count: int) -> bytes:
        link = self._require_link()
        deadline = time.monotonic() + self.timeout
        while len(self._inbox) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer within {self.timeout:.1f} s")
            self._inbox += link.read(count - len(self._inbox), remaining)
        reply, self._inbox = self._inbox[:count], self._inbox[count:]
        return reply

    def _require_link(self) -> _Link:
        if self._link is None:
            raise RuntimeError("printer connection is not open")
        return self._link


def _reason(err: OSError) -> str:
    return str(err) or type(err).__name__


def print_job(uri: PrinterURI, data: bytes, timeout: float = 5.0) -> PrinterStatus | None:
    """Print one job: open, check status, send, close; returns the status read before sending."""
    with PrinterConnection(uri, timeout) as connection:
        status = connection.query_status()
        if status is not None and not status.ready:
            raise PrinterNotReady(f"printer {uri} is not ready: {status.describe()}", status=status)
        connection.send(data)
    return status
