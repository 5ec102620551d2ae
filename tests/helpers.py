"""Small helpers shared by test modules: free ports, configs, sales."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

POS_KEY = "test-pos-key-0123"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def agent_toml(
    data_dir: Path,
    api_port: int,
    printer_uri: str | None,
    *,
    cloud_url: str = "http://127.0.0.1:9",
    profile: str = "TM-T88V",
    extra: str = "",
    sync_metrics: str | None = "",
) -> str:
    """An agent config file's text.

    The sync daemon's metrics port is fixed by default (8381), so tests turn it off (``""``)
    or pick a free one; ``sync_metrics=None`` leaves ``[sync]`` out.
    """
    text = (
        f'[store]\nid = "S001"\nname = "Trailhead Outfitters"\ndata_dir = "{data_dir}"\n'
        f'address = ["1 Market St"]\ntimezone = "Asia/Shanghai"\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\nkey = "{POS_KEY}"\n'
        f'[cloud]\nurl = "{cloud_url}"\n'
    )
    if sync_metrics is not None:
        text += f'[sync]\nmetrics_listen = "{sync_metrics}"\n'
    if printer_uri is not None:
        text += (
            f'[[printers]]\nname = "front"\nuri = "{printer_uri}"\nprofile = "{profile}"\n'
            "timeout_s = 2.0\n"
        )
    return text + extra


def make_sale(
    i: int = 1,
    *,
    staff: str | None = "A07",
    member: str | None = None,
    name: str = "Trail jacket 冲锋衣",
    register: str = "R1",
) -> dict[str, Any]:
    """A valid sale body as a POS would post it."""
    price = 59900 + i
    sale: dict[str, Any] = {
        "sale_id": str(uuid.uuid4()),
        "register_id": register,
        "lines": [
            {
                "gtin": "06901234567892",
                "name": name,
                "qty": 1,
                "unit_price": price,
                "discount": 0,
            },
            {
                "sku": "SOCK-M",
                "name": "Merino socks",
                "qty": 2,
                "unit_price": 5000,
                "discount": 1000,
            },
        ],
        "payments": [{"method": "card", "amount": price + 9000}],
        "total": price + 9000,
        "currency": "CNY",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if staff is not None:
        sale["staff_id"] = staff
    if member is not None:
        sale["member_id"] = member
    return sale
