"""Versioned wire schemas shared by the store side (agent, sync daemon) and the cloud.

Nothing else is shared between ``agent``/``drivers`` and ``cloud``: JSON Schemas of the event
envelope and of each event kind live in ``config/schemas/``, and the binary layout of the
receipt QR token in :mod:`config.receipt_token`.
"""

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Return the JSON Schema ``config/schemas/{name}.json`` as a dict."""
    text = resources.files("config").joinpath("schemas", f"{name}.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
