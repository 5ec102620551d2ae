"""Hand-made read streams and agent configs shared by the RFID tests."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from agent.db import Database, Durability
from drivers.rfid.reads import TagRead
from drivers.rfid.sgtin import encode_sgtin96
from tests.helpers import agent_toml, free_port

US = 1_000_000
JACKET_GTIN = "06901234567892"
DRESS_GTIN = "06901234567908"
JACKET = encode_sgtin96(JACKET_GTIN, 1001, company_prefix_length=7)
DRESS = encode_sgtin96(DRESS_GTIN, 2002, company_prefix_length=7)
UNKNOWN = encode_sgtin96("06901234567915", 3003, company_prefix_length=7)  # not in catalogue
GIAI = bytes.fromhex("340000000000000000001234")  # another EPC scheme: no GTIN
CATALOGUE = [
    ("JKT-RED-M", JACKET_GTIN, "Trail jacket", 59900, "CNY", "outerwear"),
    ("DRS-BLU-S", DRESS_GTIN, "Summer dress", 39900, "CNY", "dresses"),
]


def stream(
    reader: str,
    epc: bytes,
    t0_s: float,
    t1_s: float,
    *,
    origin_us: int,
    antenna: int = 1,
    rssi: float = -50.0,
    hz: float = 10.0,
) -> list[TagRead]:
    """Reads of one tag by one antenna from t0 to t1 seconds after ``origin_us``."""
    n = int((t1_s - t0_s) * hz)
    return [
        TagRead(reader, antenna, epc, rssi, origin_us + round((t0_s + i / hz) * US), 1)
        for i in range(n + 1)
    ]


def in_order(*streams: Iterable[TagRead]) -> list[TagRead]:
    """All reads, in time order (what a reader reports)."""
    return sorted((r for s in streams for r in s), key=lambda r: r.seen_at_us)


def rfid_toml(readers: dict[str, tuple[int, dict[int, str]]], **tuning: float) -> str:
    """An [rfid] section: reader name → (port on 127.0.0.1, {antenna: room})."""
    text = "[rfid]\n" + "".join(f"{key} = {value}\n" for key, value in tuning.items())
    for name, (port, rooms) in readers.items():
        mapping = ", ".join(f'"{a}" = "{room}"' for a, room in rooms.items())
        text += (
            f'[[rfid.readers]]\nname = "{name}"\nhost = "127.0.0.1:{port}"\n'
            f"rooms = {{{mapping}}}\nkeepalive_s = 1.0\n"
        )
    return text


def write_agent_config(tmp_path: Path, rfid: str) -> Path:
    """An agent config with no printer and this [rfid] section."""
    path = tmp_path / "agent.toml"
    path.write_text(agent_toml(tmp_path / "data", free_port(), None, extra=rfid))
    return path


async def seed_catalogue(db: Database) -> None:
    """Put the test catalogue into the agent's replica table."""
    async with db.write(Durability.NORMAL) as conn:
        await conn.executemany(
            "INSERT INTO catalogue (sku, gtin, name, price, currency, category)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            CATALOGUE,
        )
