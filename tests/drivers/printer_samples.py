"""Receipts built with python-escpos, shared by the printer driver tests."""

from escpos.printer import Dummy

RECEIPT_URL = "https://cloud.example/r/S001-000042-Zx8"


def sample_receipt(url: str = RECEIPT_URL, *, native_qr: bool = True) -> bytes:
    """A small receipt: a heading, lines, a total, the receipt QR and a cut."""
    p = Dummy()
    p.hw("INIT")
    p.set(align="center", bold=True)
    p.textln("STORELINK OUTDOOR")
    p.set_with_default()
    p.textln("Trail shoe 42      1 x 899.00")
    p.set(align="right")
    p.textln("TOTAL 899.00")
    p.set(align="left")
    p.qr(url, native=native_qr, size=4)
    p.ln(2)
    p.cut()
    output: bytes = p.output
    return output
