"""SGTIN-96 encode/decode against GS1 TDS vectors and round trips over every partition."""

from __future__ import annotations

import random

import pytest

from drivers.rfid.sgtin import decode_sgtin96, encode_sgtin96, gtin_check_digit, is_sgtin96

# GS1 EPC Tag Data Standard example: urn:epc:id:sgtin:0614141.812345.6789, filter 3.
TDS_HEX = "3074257BF7194E4000001A85"


def test_gs1_tds_example_decodes() -> None:
    d = decode_sgtin96(bytes.fromhex(TDS_HEX))
    assert d.urn == "urn:epc:id:sgtin:0614141.812345.6789"
    assert d.gtin == "80614141123458"
    assert d.serial == 6789
    assert d.filter_value == 3
    assert d.company_prefix == "0614141"
    assert d.item_reference == "812345"


def test_gs1_tds_example_encodes() -> None:
    epc = encode_sgtin96("80614141123458", 6789, company_prefix_length=7, filter_value=3)
    assert epc.hex().upper() == TDS_HEX
    assert is_sgtin96(epc)


@pytest.mark.parametrize("cp_len", range(6, 13))
def test_round_trip_every_partition(cp_len: int) -> None:
    rng = random.Random(cp_len)
    for _ in range(200):
        body = "".join(rng.choice("0123456789") for _ in range(13))
        gtin = body + str(gtin_check_digit(body))
        serial = rng.randrange(1 << 38)
        epc = encode_sgtin96(gtin, serial, company_prefix_length=cp_len)
        assert len(epc) == 12
        d = decode_sgtin96(epc)
        assert (d.gtin, d.serial, d.filter_value) == (gtin, serial, 1)
        assert len(d.company_prefix) == cp_len
        assert len(d.item_reference) == 13 - cp_len


def test_short_gtins_are_padded_to_14_digits() -> None:
    epc = encode_sgtin96("6901234567892", 1, company_prefix_length=7)
    assert decode_sgtin96(epc).gtin == "06901234567892"


@pytest.mark.parametrize(
    ("epc_hex", "message"),
    [
        ("3574257BF7194E4000001A85", "not SGTIN-96"),  # GID-96 header 0x35
        ("307C257BF7194E4000001A85", "partition 7"),
        ("3074257BF7194E4000001A", "12 bytes"),
        ("3060000000000000000000000000", "12 bytes"),
    ],
)
def test_decode_rejects_non_sgtin96(epc_hex: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_sgtin96(bytes.fromhex(epc_hex))


def test_decode_rejects_a_company_prefix_too_large_for_its_digits() -> None:
    # partition 6 (6-digit prefix, 20 bits): all ones = 1048575 > 999999
    value = (0x30 << 88) | (1 << 85) | (6 << 82) | (((1 << 20) - 1) << 62)
    with pytest.raises(ValueError, match="company prefix"):
        decode_sgtin96(value.to_bytes(12, "big"))


@pytest.mark.parametrize(
    ("gtin", "kwargs", "message"),
    [
        ("80614141123457", {"company_prefix_length": 7}, "check digit"),
        ("8061414112345", {"company_prefix_length": 7}, "check digit"),
        ("80614141123458", {"company_prefix_length": 5}, "company_prefix_length"),
        ("80614141123458", {"company_prefix_length": 7, "filter_value": 8}, "filter_value"),
        ("ABC", {"company_prefix_length": 7}, "digits"),
    ],
)
def test_encode_rejects_bad_input(gtin: str, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_sgtin96(gtin, 1, **kwargs)


def test_encode_rejects_a_serial_over_38_bits() -> None:
    with pytest.raises(ValueError, match="serial"):
        encode_sgtin96("80614141123458", 1 << 38, company_prefix_length=7)
