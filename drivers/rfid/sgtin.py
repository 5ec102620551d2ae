"""SGTIN-96 EPCs per the GS1 EPC Tag Data Standard (TDS 2.x): encode a GTIN + serial, decode back.

Layout of the 96 bits, most significant first::

    header (8) = 0x30 | filter (3) | partition (3) | company prefix (M) | item reference (N)
    | serial (38)

The partition value says how the 44 bits after it are split between the GS1 company prefix and
the item reference (which carries the GTIN's indicator digit in front). Pure functions; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

SGTIN96_HEADER = 0x30
SERIAL_BITS = 38
MAX_SERIAL = (1 << SERIAL_BITS) - 1

# partition -> (company prefix bits, company prefix digits, item reference bits, item ref digits)
_PARTITIONS: dict[int, tuple[int, int, int, int]] = {
    0: (40, 12, 4, 1),
    1: (37, 11, 7, 2),
    2: (34, 10, 10, 3),
    3: (30, 9, 14, 4),
    4: (27, 8, 17, 5),
    5: (24, 7, 20, 6),
    6: (20, 6, 24, 7),
}
_PARTITION_BY_DIGITS = {cp_digits: p for p, (_, cp_digits, _, _) in _PARTITIONS.items()}


@dataclass(frozen=True, slots=True)
class Sgtin96:
    """A decoded SGTIN-96."""

    gtin: str  # 14 digits, check digit included
    serial: int
    filter_value: int
    company_prefix: str  # as many digits as the partition says (leading zeros kept)
    item_reference: str  # indicator digit + item reference digits

    @property
    def urn(self) -> str:
        """The pure-identity URI, e.g. ``urn:epc:id:sgtin:0614141.812345.6789``."""
        return f"urn:epc:id:sgtin:{self.company_prefix}.{self.item_reference}.{self.serial}"


def gtin_check_digit(first13: str) -> int:
    """The GS1 mod-10 check digit of the first 13 digits of a GTIN-14."""
    if len(first13) != 13 or not first13.isdigit():
        raise ValueError(f"GTIN body must be 13 digits, got {first13!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(first13))
    return (10 - total % 10) % 10


def normalize_gtin(gtin: str) -> str:
    """A GTIN-8/12/13/14 as 14 digits, its check digit verified."""
    if not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        raise ValueError(f"GTIN must be 8, 12, 13 or 14 digits, got {gtin!r}")
    gtin14 = gtin.rjust(14, "0")
    if gtin_check_digit(gtin14[:13]) != int(gtin14[13]):
        raise ValueError(f"GTIN {gtin!r} has a wrong check digit")
    return gtin14


def encode_sgtin96(
    gtin: str, serial: int, *, company_prefix_length: int, filter_value: int = 1
) -> bytes:
    """The 12 EPC bytes of an SGTIN-96 for ``gtin`` (8-14 digits) and ``serial`` (< 2**38).

    ``company_prefix_length`` is the number of digits of the GS1 company prefix (6-12); it is
    not derivable from the GTIN and picks the partition. ``filter_value`` 1 = point-of-sale item.
    """
    gtin14 = normalize_gtin(gtin)
    partition = _PARTITION_BY_DIGITS.get(company_prefix_length)
    if partition is None:
        raise ValueError(f"company_prefix_length must be 6..12 digits, got {company_prefix_length}")
    if not 0 <= filter_value <= 7:
        raise ValueError(f"filter_value must be 0..7, got {filter_value}")
    if not 0 <= serial <= MAX_SERIAL:
        raise ValueError(f"serial must be 0..2**38-1 for SGTIN-96, got {serial}")
    cp_bits, cp_digits, ir_bits, _ = _PARTITIONS[partition]
    company_prefix = int(gtin14[1 : 1 + cp_digits])
    item_reference = int(gtin14[0] + gtin14[1 + cp_digits : 13])
    value = SGTIN96_HEADER
    value = (value << 3) | filter_value
    value = (value << 3) | partition
    value = (value << cp_bits) | company_prefix
    value = (value << ir_bits) | item_reference
    value = (value << SERIAL_BITS) | serial
    return value.to_bytes(12, "big")


def is_sgtin96(epc: bytes) -> bool:
    """Whether ``epc`` is 12 bytes with the SGTIN-96 header (cheap pre-check, no validation)."""
    return len(epc) == 12 and epc[0] == SGTIN96_HEADER


def decode_sgtin96(epc: bytes) -> Sgtin96:
    """Decode SGTIN-96 EPC bytes; ValueError if not SGTIN-96 or the partition/fields are invalid."""
    if len(epc) != 12:
        raise ValueError(f"an SGTIN-96 EPC is 12 bytes, got {len(epc)}")
    if epc[0] != SGTIN96_HEADER:
        raise ValueError(f"EPC header 0x{epc[0]:02X} is not SGTIN-96 (0x30)")
    value = int.from_bytes(epc, "big")
    serial = value & MAX_SERIAL
    rest = value >> SERIAL_BITS  # header(8) filter(3) partition(3) prefix+item(44)
    partition = (rest >> 44) & 0b111
    filter_value = (rest >> 47) & 0b111
    if partition not in _PARTITIONS:
        raise ValueError(f"SGTIN-96 partition {partition} is invalid (must be 0..6)")
    cp_bits, cp_digits, ir_bits, ir_digits = _PARTITIONS[partition]
    company_prefix = (rest >> ir_bits) & ((1 << cp_bits) - 1)
    item_reference = rest & ((1 << ir_bits) - 1)
    if company_prefix >= 10**cp_digits:
        raise ValueError(f"SGTIN-96 company prefix {company_prefix} exceeds {cp_digits} digits")
    if item_reference >= 10**ir_digits:
        raise ValueError(f"SGTIN-96 item reference {item_reference} exceeds {ir_digits} digits")
    cp = str(company_prefix).zfill(cp_digits)
    ir = str(item_reference).zfill(ir_digits)
    first13 = ir[0] + cp + ir[1:]
    return Sgtin96(
        gtin=first13 + str(gtin_check_digit(first13)),
        serial=serial,
        filter_value=filter_value,
        company_prefix=cp,
        item_reference=ir,
    )
