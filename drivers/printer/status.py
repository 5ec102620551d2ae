"""Printer status as reported by the Epson real-time status command ``DLE EOT n``.

A printer answers ``DLE EOT n`` (n = 1..4) with one byte each, even while offline (TM-T88
technical reference). Bits 1 and 4 are fixed to 1 and bits 0 and 7 to 0, so a healthy printer
answers ``0x12`` four times; anything else in those positions is not a status byte.

=====  =================  ============================================================
n      meaning            bits used here
=====  =================  ============================================================
1      printer status     3: offline
2      offline cause      2: cover open, 5: stopped by paper end, 6: error
3      error cause        2: mechanical, 3: autocutter, 5: unrecoverable, 6: auto-recoverable
4      paper roll sensor  2-3: paper near end, 5-6: paper end
=====  =================  ============================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.printer.errors import PrinterError

STATUS_QUERY = b"\x10\x04\x01\x10\x04\x02\x10\x04\x03\x10\x04\x04"
# Printers answer DLE EOT n wherever it appears in the stream, even inside image data.
REALTIME_STATUS = re.compile(rb"\x10\x04[\x01-\x04]")

_FIXED_MASK = 0b1001_0011
_FIXED_BITS = 0b0001_0010

_OFFLINE = 0x08
_COVER_OPEN = 0x04
_STOPPED_BY_PAPER_END = 0x20
_OFFLINE_BY_ERROR = 0x40
_ERROR_CAUSES = 0x04 | 0x08 | 0x20 | 0x40
_UNRECOVERABLE_ERROR = 0x20
_NEAR_END = 0x0C
_PAPER_END = 0x60


@dataclass(frozen=True)
class PrinterStatus:
    """What the printer reported about itself."""

    online: bool
    cover_open: bool = False
    paper_out: bool = False
    paper_near_end: bool = False
    error: bool = False

    @property
    def ready(self) -> bool:
        """Whether a job sent now would print."""
        return self.online and not (self.cover_open or self.paper_out or self.error)

    def describe(self) -> str:
        """Say what the printer needs, or "online" when nothing, for status pages and logs."""
        problems = [
            name
            for name, present in (
                ("error", self.error),
                ("cover open", self.cover_open),
                ("paper out", self.paper_out),
            )
            if present
        ]
        if not self.online and not problems:
            problems.append("offline")
        if self.paper_near_end and not self.paper_out:
            problems.append("paper near end")
        return ", ".join(problems) or "online"


def parse_status(printer: int, offline: int, error: int, paper: int) -> PrinterStatus:
    """Decode the answers to ``DLE EOT 1``, ``2``, ``3`` and ``4``."""
    for n, byte in enumerate((printer, offline, error, paper), start=1):
        if not 0 <= byte <= 0xFF or byte & _FIXED_MASK != _FIXED_BITS:
            raise PrinterError(
                f"garbled answer to status query DLE EOT {n}: 0x{byte:02x} "
                "(a status byte has bits 1 and 4 set and bits 0 and 7 clear)"
            )
    return PrinterStatus(
        online=not printer & _OFFLINE,
        cover_open=bool(offline & _COVER_OPEN),
        paper_out=bool(offline & _STOPPED_BY_PAPER_END or paper & _PAPER_END),
        paper_near_end=bool(paper & _NEAR_END),
        error=bool(offline & _OFFLINE_BY_ERROR or error & _ERROR_CAUSES),
    )


def encode_status(status: PrinterStatus) -> dict[int, int]:
    """Give the byte a printer in ``status`` answers to each ``DLE EOT n`` (the emulator's side)."""
    return {
        1: _FIXED_BITS | (0 if status.online else _OFFLINE),
        2: _FIXED_BITS
        | (_COVER_OPEN if status.cover_open else 0)
        | (_STOPPED_BY_PAPER_END if status.paper_out else 0)
        | (_OFFLINE_BY_ERROR if status.error else 0),
        3: _FIXED_BITS | (_UNRECOVERABLE_ERROR if status.error else 0),
        4: _FIXED_BITS
        | (_NEAR_END if status.paper_near_end else 0)
        | (_PAPER_END if status.paper_out else 0),
    }
