"""Receipt QR token, wire layout version 1: what a printed receipt's QR code carries.

The agent signs the packed claims with the store's Ed25519 key, the cloud verifies them; the
byte layout is documented in config/schemas/receipt-token.md. No cryptography here.

Exceptions::

    ValueError
     └── TokenFormatError   malformed, truncated, trailing or unknown-version token data
"""

import base64
import binascii
import re
from dataclasses import dataclass

VERSION = 1
SIGNATURE_LEN = 64
MAX_TEXT_BYTES = 64
MAX_INT = 2**63 - 1
# Far above any real token (about 120 characters); bounds the work done on hostile input.
MAX_TOKEN_CHARS = 512

_CURRENCY = re.compile(r"[A-Z]{3}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class TokenFormatError(ValueError):
    """Token bytes or text that do not follow the receipt token layout."""


@dataclass(frozen=True)
class ReceiptClaims:
    """What the receipt QR asserts about a sale."""

    store_id: str
    receipt_seq: int
    issued_at: int  # unix seconds UTC
    total: int  # minor units
    currency: str  # ISO 4217
    associate_id: str | None

    def __post_init__(self) -> None:
        _check_text("store_id", self.store_id)
        if self.associate_id is not None:
            _check_text("associate_id", self.associate_id)
        for name in ("receipt_seq", "issued_at", "total"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_INT:
                raise ValueError(f"{name} must be between 0 and 2**63-1, got {value}")
        if not _CURRENCY.fullmatch(self.currency):
            raise ValueError(f"currency must be three letters A-Z, got {self.currency!r}")


def _check_text(name: str, value: str) -> None:
    size = len(value.encode("utf-8"))
    if not 1 <= size <= MAX_TEXT_BYTES:
        raise ValueError(f"{name} must be 1 to {MAX_TEXT_BYTES} UTF-8 bytes, got {size}")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return _varint(len(data)) + data


def _optional_text(value: str | None) -> bytes:
    # Length + 1, so that 0 can mean "absent" without spending a flags byte.
    if value is None:
        return b"\x00"
    data = value.encode("utf-8")
    return _varint(len(data) + 1) + data


def pack(claims: ReceiptClaims) -> bytes:
    """Serialise claims to the compact version-1 payload the store key signs."""
    return b"".join(
        (
            bytes((VERSION,)),
            _text(claims.store_id),
            _varint(claims.receipt_seq),
            _varint(claims.issued_at),
            _varint(claims.total),
            _text(claims.currency),
            _optional_text(claims.associate_id),
        )
    )


class _Reader:
    """Cursor over a payload; every read checks bounds and canonical form."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def varint(self, field: str) -> int:
        value = 0
        for shift in range(0, 63, 7):
            if self.pos >= len(self.data):
                raise TokenFormatError(f"truncated in {field}")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                # A trailing zero group would give the same value a second encoding.
                if byte == 0 and shift:
                    raise TokenFormatError(f"overlong varint in {field}")
                return value
        raise TokenFormatError(f"varint too long in {field}")

    def raw(self, size: int, field: str) -> bytes:
        if size > len(self.data) - self.pos:
            raise TokenFormatError(f"truncated in {field}")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def text(self, size: int, field: str) -> str:
        try:
            return self.raw(size, field).decode("utf-8")
        except UnicodeDecodeError as err:
            raise TokenFormatError(f"{field} is not UTF-8") from err


def unpack(data: bytes) -> ReceiptClaims:
    """Parse a version-1 payload; raise TokenFormatError on anything else."""
    reader = _Reader(data)
    version = reader.raw(1, "version")[0]
    if version != VERSION:
        raise TokenFormatError(f"unknown token version {version}")
    store_id = reader.text(reader.varint("store_id length"), "store_id")
    receipt_seq = reader.varint("receipt_seq")
    issued_at = reader.varint("issued_at")
    total = reader.varint("total")
    currency = reader.text(reader.varint("currency length"), "currency")
    associate_len = reader.varint("associate_id length")
    associate_id = reader.text(associate_len - 1, "associate_id") if associate_len else None
    if reader.pos != len(data):
        raise TokenFormatError(f"{len(data) - reader.pos} trailing bytes")
    try:
        return ReceiptClaims(store_id, receipt_seq, issued_at, total, currency, associate_id)
    except ValueError as err:
        raise TokenFormatError(str(err)) from err


def encode_token(payload: bytes, signature: bytes) -> str:
    """Join payload and signature into the URL-safe token text (base64url, no padding)."""
    if len(signature) != SIGNATURE_LEN:
        raise ValueError(f"signature must be {SIGNATURE_LEN} bytes, got {len(signature)}")
    return base64.urlsafe_b64encode(payload + signature).rstrip(b"=").decode("ascii")


def decode_token(token: str) -> tuple[bytes, bytes]:
    """Split token text into (payload, signature); raise TokenFormatError if malformed."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenFormatError(f"token longer than {MAX_TOKEN_CHARS} characters")
    # The stdlib decoder skips characters outside the alphabet; a token must not contain any.
    if not _BASE64URL.fullmatch(token):
        raise TokenFormatError("token is not base64url without padding")
    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except binascii.Error as err:
        raise TokenFormatError("token is not base64url without padding") from err
    # Unused low bits in the last character would let two texts carry the same bytes.
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != token:
        raise TokenFormatError("token is not canonical base64url")
    if len(data) <= SIGNATURE_LEN:
        raise TokenFormatError("token too short")
    return data[:-SIGNATURE_LEN], data[-SIGNATURE_LEN:]


def receipt_number(store_id: str, seq: int) -> str:
    """Human-readable receipt number, e.g. "S001-000042"."""
    if seq < 0:
        raise ValueError(f"receipt sequence must not be negative, got {seq}")
    return f"{store_id}-{seq:06d}"


def receipt_url(cloud_url: str, token: str) -> str:
    """The URL the receipt QR encodes."""
    return f"{cloud_url.rstrip('/')}/r/{token}"
