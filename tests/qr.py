"""Reading QR codes back from printed output, the way a phone would (OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def decode_qr(image: Image.Image) -> list[str]:
    """Every QR payload OpenCV decodes in a rendered receipt image.

    ``QRCodeDetectorAruco`` first: the classic ``QRCodeDetector`` misses about one valid
    receipt-sized code in twenty (also codes made directly by the qrcode library).
    """
    gray = np.array(image.convert("L"))
    gray = cv2.copyMakeBorder(gray, 32, 32, 32, 32, cv2.BORDER_CONSTANT, value=255)
    for detector in (cv2.QRCodeDetectorAruco(), cv2.QRCodeDetector()):
        ok, values, _, _ = detector.detectAndDecodeMulti(gray)
        found = [v for v in values if v] if ok else []
        if not found:
            value, _, _ = detector.detectAndDecode(gray)
            found = [value] if value else []
        if found:
            return found
    return []


def native_qr_payloads(data: bytes) -> list[str]:
    """Payloads stored with GS ( k cn=49 fn=80 in an ESC/POS stream."""
    found = []
    start = 0
    while (i := data.find(b"\x1d(k", start)) >= 0 and i + 5 <= len(data):
        length = data[i + 3] | data[i + 4] << 8
        body = data[i + 5 : i + 5 + length]
        if len(body) >= 3 and body[0] == 49 and body[1] == 80:
            found.append(body[3:].decode("utf-8", "replace"))
        start = i + 5 + max(length, 1)
    return found
