"""Receipt-printer driver: ESC/POS printers over TCP, serial, USB or a device file.

``connection`` talks to a printer (blocking, for a worker thread), ``uri`` parses where it is,
``status`` decodes what it reports, ``errors`` holds the exception tree. ``render`` and
``emulator`` are the simulator side: a printer that records, answers and renders jobs.
"""

from drivers.printer.connection import PrinterConnection, print_job
from drivers.printer.errors import (
    InvalidPrinterURI,
    PrinterError,
    PrinterNotReady,
    PrinterUnreachable,
    PrinterWriteError,
)
from drivers.printer.status import PrinterStatus, parse_status
from drivers.printer.uri import PrinterURI, parse_printer_uri

__all__ = [
    "InvalidPrinterURI",
    "PrinterConnection",
    "PrinterError",
    "PrinterNotReady",
    "PrinterStatus",
    "PrinterURI",
    "PrinterUnreachable",
    "PrinterWriteError",
    "parse_printer_uri",
    "parse_status",
    "print_job",
]
