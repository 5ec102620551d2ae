"""Receipt tokens: the version-1 wire layout, token text, and Ed25519 signing."""

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.qrtoken import InvalidToken, issue_token, verify_token
from agent.receipt import paper_profile, qr_size
from config.receipt_token import (
    SIGNATURE_LEN,
    ReceiptClaims,
    TokenFormatError,
    decode_token,
    encode_token,
    pack,
    receipt_number,
    receipt_url,
    unpack,
)

TYPICAL = ReceiptClaims("S001", 123456, 1767225600, 59901, "CNY", "A07")
# Fixed key bytes: Ed25519 signatures are deterministic, so tokens are too.
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def test_pack_golden_bytes() -> None:
    assert pack(TYPICAL).hex(" ") == (
        "01 04 53 30 30 31 c0 c4 07 80 f2 d6 ca 06 fd d3 03 03 43 4e 59 04 41 30 37"
    )
    no_associate = ReceiptClaims("S001", 42, 1767225600, 0, "JPY", None)
    assert pack(no_associate).hex(" ") == "01 04 53 30 30 31 2a 80 f2 d6 ca 06 00 03 4a 50 59 00"


@pytest.mark.parametrize(
    "claims",
    [
        TYPICAL,
        ReceiptClaims("S001", 0, 0, 0, "XXX", None),
        ReceiptClaims("门店-上海-01", 2**63 - 1, 2**63 - 1, 2**63 - 1, "KWD", "店员 07"),
        ReceiptClaims("s" * 64, 127, 128, 16383, "USD", "a" * 64),
    ],
)
def test_pack_round_trip(claims: ReceiptClaims) -> None:
    assert unpack(pack(claims)) == claims


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("store_id", ""),
        ("store_id", "s" * 65),
        ("associate_id", ""),
        ("receipt_seq", -1),
        ("total", -1),
        ("issued_at", 2**63),
        ("currency", "cny"),
        ("currency", "CNYX"),
        ("currency", "元"),
    ],
)
def test_claims_reject_values_that_cannot_be_packed(field: str, value: object) -> None:
    fields = {**TYPICAL.__dict__, field: value}
    with pytest.raises(ValueError, match=field):
        ReceiptClaims(**fields)


def test_every_truncation_is_rejected() -> None:
    data = pack(TYPICAL)
    for end in range(len(data)):
        with pytest.raises(TokenFormatError):
            unpack(data[:end])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated in version"),
        (b"\x02" + pack(TYPICAL)[1:], "unknown token version 2"),
        (pack(TYPICAL) + b"\x00", "1 trailing bytes"),
        # receipt_seq 0 written as two bytes
        (bytes.fromhex("01 04 53303031 8000 00 00 03 434e59 00"), "overlong varint"),
        (bytes.fromhex("01 04 53303031 ffffffffffffffffff01 00 00 03 434e59 00"), "too long"),
        (bytes.fromhex("01 04 5330ff31 00 00 00 03 434e59 00"), "not UTF-8"),
        (bytes.fromhex("01 04 53303031 00 00 00 03 636e79 00"), "currency"),
        (bytes.fromhex("01 04 53303031 00 00 00 02 434e 00"), "currency"),
        (bytes.fromhex("01 00 00 00 00 03 434e59 00"), "store_id"),
        (bytes.fromhex("01 04 53303031 00 00 00 03 434e59 01"), "associate_id"),
        (bytes.fromhex("01 04 53303031 00 00 00 03 434e59 05 4130"), "truncated"),
        (bytes.fromhex("01 ffffffff0f 53303031"), "truncated"),
    ],
)
def test_malformed_payloads(data: bytes, reason: str) -> None:
    with pytest.raises(TokenFormatError, match=reason):
        unpack(data)


def test_token_text_round_trip() -> None:
    payload, signature = pack(TYPICAL), bytes(range(SIGNATURE_LEN))
    token = encode_token(payload, signature)
    assert "=" not in token
    assert decode_token(token) == (payload, signature)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "A" * 86,  # 64 bytes: a signature with no payload
        "A" * 87 + "=",
        "A" * 85,  # a length no base64 text has
        "AAAA AAAA" * 12,
        "AAAA+AAA" * 12,
        "AAAA/AAA" * 12,
        "AAAA.AAA" * 12,
        "A" * 86 + "B",  # unused low bits set: not the canonical text of its bytes
        "A" * 600,
    ],
)
def test_malformed_token_text(token: str) -> None:
    with pytest.raises(TokenFormatError):
        decode_token(token)


def test_receipt_number_and_url() -> None:
    assert receipt_number("S001", 42) == "S001-000042"
    assert receipt_number("S001", 1234567) == "S001-1234567"
    assert receipt_url("http://127.0.0.1:8080/", "abc") == "http://127.0.0.1:8080/r/abc"
    with pytest.raises(ValueError, match="negative"):
        receipt_number("S001", -1)


def test_issue_and_verify() -> None:
    token = issue_token(TYPICAL, KEY)
    assert verify_token(token, KEY.public_key()) == TYPICAL


def test_another_stores_key_fails() -> None:
    token = issue_token(TYPICAL, KEY)
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(token, Ed25519PrivateKey.generate().public_key())


def test_every_changed_character_fails() -> None:
    token = issue_token(TYPICAL, KEY)
    public = KEY.public_key()
    for index, char in enumerate(token):
        for replacement in {"A", "B", "g", "_", "-"} - {char}:
            tampered = token[:index] + replacement + token[index + 1 :]
            with pytest.raises(InvalidToken):
                verify_token(tampered, public)
    for tampered in (token[:-1], token + "A", token[1:], "A" + token):
        with pytest.raises(InvalidToken):
            verify_token(tampered, public)


def test_every_flipped_bit_fails() -> None:
    token = issue_token(TYPICAL, KEY)
    data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    public = KEY.public_key()
    for index in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[index] ^= 1 << bit
            tampered = base64.urlsafe_b64encode(flipped).rstrip(b"=").decode()
            with pytest.raises(InvalidToken):
                verify_token(tampered, public)


def test_typical_receipt_url_is_small() -> None:
    url = receipt_url("http://127.0.0.1:8080", issue_token(TYPICAL, KEY))
    # 25-byte payload + 64-byte signature = 119 characters of token.
    assert len(url) == 143
    # QR version 8 at level M holds 152 bytes: 49 x 49 modules, ~25-30 mm at 4-5 dots/module.
    for profile in ("TM-T88V", "POS-5890"):
        assert qr_size(url, paper_profile(profile)).version == 8
