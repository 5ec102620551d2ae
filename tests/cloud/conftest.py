"""Fixtures for the cloud core tests: a real cloud on 127.0.0.1 with a SQLite file, and a
store client that signs its requests the way sync-protocol.md says (RFC 9421, label ``sl``).
"""

from __future__ import annotations

import base64
import gzip
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms
from multidict import CIMultiDict
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cloud import appkeys, auth
from cloud.app import cloud_app
from cloud.auth import public_key_to_b64
from cloud.config import CloudConfig, parse_config
from config.receipt_token import ReceiptClaims, encode_token, pack


def cloud_toml(data_dir: Path, extra: str = "") -> str:
    """A cloud.toml on embedded SQLite."""
    return (
        f'[server]\nlisten = "127.0.0.1:8080"\npublic_url = "http://127.0.0.1:8080"\n'
        f'data_dir = "{data_dir}"\n{extra}'
    )


def uuid7(at_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562) as text."""
    ms = int(time.time() * 1000) if at_ms is None else at_ms
    value = ms << 80 | 0x7 << 76 | secrets.randbits(12) << 64 | 0b10 << 62 | secrets.randbits(62)
    return str(uuid.UUID(int=value))


def iso(moment: datetime) -> str:
    """RFC 3339 UTC text."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sale_payload(
    seq: int, *, member: str | None = None, staff: str | None = "A07"
) -> dict[str, Any]:
    """A valid sale.v1 payload for receipt number seq."""
    return {
        "sale_id": str(uuid.uuid4()),
        "register_id": "R1",
        "staff_id": staff,
        "member_id": member,
        "lines": [
            {
                "gtin": "06901234567892",
                "name": "Trail jacket 冲锋衣",
                "qty": 1,
                "unit_price": 59900,
                "discount": 0,
            },
            {
                "sku": "SOCK-M",
                "name": "Merino <socks>",
                "qty": 2,
                "unit_price": 5000,
                "discount": 1000,
            },
        ],
        "payments": [{"method": "card", "amount": 68900}],
        "total": 68900,
        "currency": "CNY",
        "occurred_at": iso(datetime.now(UTC)),
        "receipt_no": f"S001-{seq:06d}",
        "receipt_seq": seq,
        "receipt_url": "http://127.0.0.1:8080/r/x",
    }


def envelope(
    store_id: str, seq: int, kind: str, payload: dict[str, Any], v: int = 1
) -> dict[str, Any]:
    """An event envelope (envelope.v1.json)."""
    return {
        "id": uuid7(),
        "store_id": store_id,
        "seq": seq,
        "kind": kind,
        "v": v,
        "at": iso(datetime.now(UTC)),
        "payload": payload,
    }


def sale_event(store_id: str, seq: int, **kwargs: Any) -> dict[str, Any]:
    """A sale event whose receipt number is seq."""
    payload = sale_payload(seq, **kwargs)
    payload["receipt_no"] = f"{store_id}-{seq:06d}"
    return envelope(store_id, seq, "sale", payload)


@dataclass
class Response:
    """What a test needs of an HTTP answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


@dataclass
class StoreClient:
    """A store with its key, talking to the cloud with signed requests."""

    store_id: str
    key: Ed25519PrivateKey
    session: aiohttp.ClientSession
    base_url: str

    def sign(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        key: Ed25519PrivateKey | None = None,
        keyid: str | None = None,
        created: datetime | None = None,
        nonce: str | None = None,
        label: str = "sl",
    ) -> CIMultiDict[str]:
        """Headers carrying a signature over method, path, query and the body's digest."""
        keyid = keyid or self.store_id
        signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519,
            key_resolver=MappingKeyResolver(public_keys={}, private_keys={keyid: key or self.key}),
        )
        headers: CIMultiDict[str] = CIMultiDict()
        message = _Message(method, self.base_url + path, headers)
        signer.sign(
            message,
            key_id=keyid,
            created=created or datetime.now(UTC),
            nonce=nonce or base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode(),
            label=label,
            covered_component_ids=("@method", "@path", "@query"),
            body=body,
        )
        return headers

    async def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        compress: bool = False,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **sign_options: Any,
    ) -> Response:
        """Send a signed request; payload is JSON-encoded (and gzipped if compress)."""
        if body is None and payload is not None:
            body = msgspec.json.encode(payload)
            if compress:
                body = gzip.compress(body)
        signed = self.sign(method, path, body, **sign_options)
        if body is not None:
            signed["Content-Type"] = "application/json"
            if compress:
                signed["Content-Encoding"] = "gzip"
        signed.update(headers or {})
        async with self.session.request(
            method, self.base_url + path, data=body, headers=signed, compress=None
        ) as resp:
            return Response(resp.status, dict(resp.headers), await resp.read())

    async def send_events(self, events: list[dict[str, Any]], **kwargs: Any) -> Response:
        """POST a batch of events (gzip, as the daemon sends them)."""
        return await self.request(
            "POST",
            f"/v1/stores/{self.store_id}/events",
            {"events": events},
            compress=True,
            **kwargs,
        )


@dataclass
class _Message:
    method: str
    url: str
    headers: CIMultiDict[str]


@dataclass
class Cloud:
    """A running cloud: its app, base URL and an HTTP session for unsigned requests."""

    app: web.Application
    base_url: str
    session: aiohttp.ClientSession
    config: CloudConfig

    @property
    def engine(self) -> AsyncEngine:
        return self.app[appkeys.ENGINE]

    async def get(self, path: str, token: str | None = None, **kwargs: Any) -> Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.get(self.base_url + path, headers=headers, **kwargs) as resp:
            return Response(resp.status, dict(resp.headers), await resp.read())

    async def post(self, path: str, **kwargs: Any) -> Response:
        async with self.session.post(self.base_url + path, **kwargs) as resp:
            return Response(resp.status, dict(resp.headers), await resp.read())

    async def add_store(self, store_id: str, region: str = "east", name: str | None = None) -> str:
        """Create a store; return its enrollment token."""
        return await auth.add_store(
            self.engine, store_id, name or f"Store {store_id}", region, timedelta(hours=72)
        )

    async def enroll(
        self, store_id: str, region: str = "east", name: str | None = None
    ) -> StoreClient:
        """Add a store, enroll a fresh key for it, return its signing client."""
        token = await self.add_store(store_id, region, name)
        key = Ed25519PrivateKey.generate()
        answer = await self.post(
            "/v1/enroll",
            json={
                "store_id": store_id,
                "token": token,
                "public_key": public_key_to_b64(key.public_key()),
            },
        )
        assert answer.status == 200, answer.body
        return StoreClient(store_id, key, self.session, self.base_url)

    async def add_user(self, role: str = "hq", region: str | None = None) -> str:
        """Create a user; return the API token."""
        return await auth.add_user(self.engine, f"{role} user", role, region)


def receipt_token(
    key: Ed25519PrivateKey,
    store_id: str,
    seq: int,
    *,
    total: int = 68900,
    issued_at: int | None = None,
    associate: str | None = "A07",
) -> str:
    """A signed receipt QR token (config/schemas/receipt-token.md)."""
    claims = ReceiptClaims(store_id, seq, issued_at or int(time.time()), total, "CNY", associate)
    payload = pack(claims)
    return encode_token(payload, key.sign(payload))


# Set to a PostgreSQL URL (postgresql://postgres:pw@127.0.0.1:5432/postgres?ssl=disable) to run the
# core tests against PostgreSQL: each test gets a database of its own, dropped afterwards.
POSTGRES_ENV = "STORELINK_TEST_POSTGRES"


@pytest.fixture
async def cloud_config(tmp_path: Path) -> AsyncIterator[CloudConfig]:
    """Config for a cloud whose data lives under tmp_path (database: see POSTGRES_ENV)."""
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        yield parse_config(cloud_toml(tmp_path / "cloud"))
        return
    name = f"storelink_test_{secrets.token_hex(6)}"
    admin = create_async_engine(
        admin_url.replace("postgresql://", "postgresql+asyncpg://", 1), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        # Same server and options (give a password and ssl=disable, or asyncpg reads
        # ~/.pgpass and ~/.postgresql inside the event loop).
        server, _, options = admin_url.rpartition("/")[0], "", admin_url.partition("?")[2]
        url = f"{server}/{name}" + (f"?{options}" if options else "")
        yield parse_config(cloud_toml(tmp_path / "cloud", f'[database]\nurl = "{url}"\n'))
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.dispose()


def sqlite_only(config: CloudConfig) -> None:
    """Skip a test that is about the embedded SQLite database."""
    if config.database is not None:
        pytest.skip("embedded SQLite only")


@pytest.fixture
async def cloud(cloud_config: CloudConfig) -> AsyncIterator[Cloud]:
    """A cloud serving on 127.0.0.1 (port chosen by the OS)."""
    async with cloud_app(cloud_config) as app:
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                yield Cloud(app, str(server.make_url("")).rstrip("/"), session, cloud_config)
        finally:
            await server.close()
