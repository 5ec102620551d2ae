"""EPC → product: SGTIN-96 to GTIN (GS1 TDS, the driver's decoder), GTIN to SKU (the replica).

Other EPC schemes (GIAI, SSCC, a reader's raw TID-like EPCs, ...) keep their raw EPC with
``gtin`` and ``sku`` null. Lookups happen once per completed session, not per read, and are
cached; the cache is dropped when the catalogue replica changes, told by a cheap fingerprint
read before each lookup: the sync daemon's change-feed cursor plus the catalogue's row count
and highest rowid (the replica writes with ``INSERT OR REPLACE``, which gives a new rowid).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

import aiosqlite

from drivers.rfid.sgtin import decode_sgtin96, is_sgtin96

log = logging.getLogger(__name__)

_FINGERPRINT = (
    "SELECT (SELECT value FROM sync_state WHERE key = 'cursor'),"
    " (SELECT count(*) FROM catalogue), (SELECT max(rowid) FROM catalogue)"
)
_SKU_OF_GTIN = "SELECT sku FROM catalogue WHERE gtin = ? ORDER BY sku LIMIT 1"


@dataclass(frozen=True, slots=True)
class Product:
    """What a tag says about the garment it is on."""

    epc: str  # uppercase hex
    gtin: str | None  # 14 digits, from SGTIN-96
    sku: str | None  # from the catalogue replica


def gtin_of(epc: bytes) -> str | None:
    """The GTIN-14 of an SGTIN-96 EPC; None for other schemes or invalid SGTIN fields."""
    if not is_sgtin96(epc):
        return None
    try:
        return decode_sgtin96(epc).gtin
    except ValueError:
        return None


def _gtin_forms(gtin14: str) -> tuple[str, ...]:
    # The catalogue may hold a GTIN-13 or GTIN-12 where the tag encodes it padded to 14.
    forms = [gtin14]
    for length in (13, 12, 8):
        pad = gtin14[: 14 - length]
        if pad == "0" * len(pad):
            forms.append(gtin14[14 - length :])
    return tuple(forms)


class ProductLookup:
    """Resolves EPCs with the agent's read-only connection; cached per catalogue version."""

    def __init__(self, reader: aiosqlite.Connection) -> None:
        self._reader = reader
        self._fingerprint: tuple[object, ...] | None = None
        self._sku: dict[str, str | None] = {}

    async def resolve(self, epc: bytes) -> Product:
        """The product behind an EPC (gtin and sku null when unknown)."""
        gtin = gtin_of(epc)
        sku = None
        if gtin is not None:
            try:
                sku = await self._sku_of(gtin)
            except sqlite3.Error as err:
                # The try-on still counts; HQ can map its GTIN later.
                log.warning("rfid: catalogue lookup of GTIN %s failed: %s", gtin, err)
        return Product(epc.hex().upper(), gtin, sku)

    async def _sku_of(self, gtin: str) -> str | None:
        async with self._reader.execute(_FINGERPRINT) as cur:
            fingerprint = tuple(await cur.fetchone() or ())
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self._sku.clear()
        if gtin not in self._sku:
            sku = None
            for form in _gtin_forms(gtin):
                async with self._reader.execute(_SKU_OF_GTIN, (form,)) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    sku = str(row[0])
                    break
            self._sku[gtin] = sku
        return self._sku[gtin]
