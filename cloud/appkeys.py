"""Typed keys for what the cloud keeps on its aiohttp application and on each request.

The composition root (:mod:`cloud.app`) sets every app key before the server accepts requests.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud.config import CloudConfig
from cloud.metrics import Metrics

CONFIG = web.AppKey("config", CloudConfig)
ENGINE = web.AppKey("engine", AsyncEngine)
# This database's epoch, read once at start (it changes only while the cloud is stopped).
EPOCH = web.AppKey("epoch", str)
METRICS = web.AppKey("metrics", Metrics)

# Set by the store-signature middleware once a request's signature verified; read it through
# cloud.auth.verified_store_id.
STORE_ID = web.RequestKey("verified_store_id", str)
# The verified signature's nonce (see cloud.auth.record_nonce).
SIGNATURE_NONCE = web.RequestKey("signature_nonce", str)
