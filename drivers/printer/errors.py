"""Errors raised by the receipt-printer driver.

Every failure the driver reports is one of these; library, socket and serial exceptions are
translated at the boundary with ``raise ... from err``::

    PrinterError
    ├── PrinterUnreachable      could not connect or open the device; nothing was sent
    ├── PrinterNotReady         reachable, but offline / cover open / paper out; nothing was sent
    ├── PrinterWriteError       lost or timed out while sending; outcome uncertain if bytes_sent > 0
    └── InvalidPrinterURI       (also a ValueError) the configured URI is malformed
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.printer.status import PrinterStatus


class PrinterError(Exception):
    """Base class of every receipt-printer failure."""


class PrinterUnreachable(PrinterError):
    """The printer could not be connected to or opened; no print data was sent."""


class PrinterNotReady(PrinterError):
    """The printer answered but cannot print now; no print data was sent."""

    def __init__(self, message: str, status: PrinterStatus) -> None:
        super().__init__(message)
        self.status = status


class PrinterWriteError(PrinterError):
    """Sending failed part-way; the printer may have printed part or all of the job."""

    def __init__(self, message: str, bytes_sent: int) -> None:
        super().__init__(message)
        self.bytes_sent = bytes_sent


class InvalidPrinterURI(PrinterError, ValueError):
    """A printer URI that does not match any accepted form."""
