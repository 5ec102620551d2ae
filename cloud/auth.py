"""Who is asking: signed store requests, user bearer tokens, store enrollment and accounts.

Stores sign every request under ``/v1/stores/{store_id}/`` with their Ed25519 key (RFC 9421,
label ``sl``; config/schemas/sync-protocol.md). :func:`store_signature_middleware` verifies it
with http-message-signatures, records its nonce (a replay is refused) and then the store on the
request; handlers read it with :func:`verified_store_id`, which refuses (401) when the
middleware did not verify anything, so a handler cannot forget the check. Requests carrying an
``Authorization`` header are user requests and pass the middleware untouched: their handlers
call :func:`require_user`.

Enrollment tokens and user tokens are random, shown once, and stored as SHA-256 hex.

Exceptions::

    Exception
     └── AccountError   a store or user cannot be added or changed as asked
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
import secrets
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    VerificationKey,
    algorithms,
)
from multidict import CIMultiDictProxy
from sqlalchemy import ColumnElement, and_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cloud import appkeys, db
from cloud.schema import enrollment_tokens, request_nonces, stores, users

log = logging.getLogger(__name__)

SIGNATURE_LABEL = "sl"
SIGNED_COMPONENTS = ("@method", "@path", "@query")
# 16 random bytes are 22 base64url characters; the table column holds 128.
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,128}")
STORE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
STORE_PATH_PREFIX = "/v1/stores/"
# Request bodies: up to 8 MiB of JSON, gzip or not (sync-protocol.md).
MAX_BODY_BYTES = 8 * 1024 * 1024
# Decompress small bodies inline; bigger ones in a thread, so the loop keeps serving.
_INLINE_GUNZIP_BYTES = 64 * 1024

Role = Literal["hq", "regional"]


class AccountError(Exception):
    """A store or user cannot be added or changed as asked."""


_ERRORS: dict[int, type[web.HTTPException]] = {
    # 413 is built separately: its constructor needs the size limit.
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    415: web.HTTPUnsupportedMediaType,
    422: web.HTTPUnprocessableEntity,
    429: web.HTTPTooManyRequests,
    500: web.HTTPInternalServerError,
    503: web.HTTPServiceUnavailable,
}


def json_error(
    status: int, error: str, message: str, headers: Mapping[str, str] | None = None
) -> web.HTTPException:
    """An HTTP error to raise whose body is ``{"error": ..., "message": ...}``.

    ``status`` is one of :data:`JSON_ERROR_STATUSES`.
    """
    text = msgspec.json.encode({"error": error, "message": message}).decode("utf-8")
    if status == 413:
        # Its constructor insists on the size limit; our message already states it.
        return web.HTTPRequestEntityTooLarge(
            max_size=0, text=text, content_type="application/json", headers=headers
        )
    return _ERRORS[status](text=text, content_type="application/json", headers=headers)


JSON_ERROR_STATUSES = frozenset(_ERRORS) | {413}


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: what the database keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


# -- store requests ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SignedMessage:
    """The request as HTTPMessageVerifier reads it: method, absolute URL, header lines."""

    method: str
    url: str
    headers: CIMultiDictProxy[str]


class _StoreKeyResolver(HTTPSignatureKeyResolver):
    """Resolves exactly one keyid, the path's store; remembers any other it was asked for."""

    def __init__(self, store_id: str, key: Ed25519PublicKey) -> None:
        self.store_id = store_id
        self.key = key
        self.other_keyid: str | None = None

    def resolve_public_key(self, key_id: str) -> VerificationKey | None:
        if key_id != self.store_id:
            self.other_keyid = key_id
            return None
        return self.key

    def resolve_private_key(self, key_id: str) -> Any:
        raise InvalidSignature("the cloud never signs as a store")


def verified_store_id(request: web.Request) -> str:
    """The store whose signature this request carried; 401 if none was verified."""
    if appkeys.STORE_ID not in request:
        raise json_error(401, "unsigned", "this endpoint needs a store-signed request")
    return request[appkeys.STORE_ID]


def _path_store_id(request: web.Request) -> str | None:
    if not request.path.startswith(STORE_PATH_PREFIX):
        return None
    return request.match_info.get("store_id")


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """The Ed25519 key from its raw 32 bytes in base64url without padding."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]{43}", text):
        raise ValueError("public_key must be 32 bytes, base64url without padding (43 characters)")
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except binascii.Error as err:
        raise ValueError("public_key is not base64url") from err
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_to_b64(key: Ed25519PublicKey) -> str:
    """The raw public key, base64url without padding (how stores.public_key keeps it)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


async def _verify_store_request(request: web.Request, store_id: str) -> None:
    """Raise the JSON 401/403 the protocol names, or return when the request is genuine."""
    if "Signature" not in request.headers or "Signature-Input" not in request.headers:
        raise json_error(401, "unsigned", "request has no Signature/Signature-Input header")
    engine = request.app[appkeys.ENGINE]
    skew = request.app[appkeys.CONFIG].security.clock_skew_s
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(stores.c.status, stores.c.public_key).where(stores.c.id == store_id)
            )
        ).first()
    if row is None:
        raise json_error(403, "unknown_store", f"store {store_id} is not known to the cloud")
    if row.status == "revoked":
        raise json_error(403, "revoked", f"store {store_id} has been revoked")
    if row.public_key is None:
        raise json_error(403, "not_enrolled", f"store {store_id} has not enrolled a key yet")

    resolver = _StoreKeyResolver(store_id, public_key_from_b64(row.public_key))
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=resolver)
    # The library checks "created in the future" against this tolerance; the past we check
    # below, with a message that says what happened.
    verifier.max_clock_skew = timedelta(seconds=skew)
    # The authority is not covered (proxies rewrite Host), so any fixed origin will do.
    message = _SignedMessage(
        request.method, "http://cloud.invalid" + request.raw_path, request.headers
    )
    try:
        (result,) = verifier.verify(message, max_age=None, require_components=SIGNED_COMPONENTS)
    except HTTPMessageSignaturesException as err:
        if resolver.other_keyid is not None:
            raise json_error(
                403,
                "wrong_store",
                f"signed with keyid {resolver.other_keyid!r}, but the path is store {store_id}",
            ) from err
        raise json_error(401, "bad_signature", f"signature does not verify: {err}") from err
    if result.label != SIGNATURE_LABEL:
        raise json_error(401, "bad_signature", f"signature label must be {SIGNATURE_LABEL!r}")
    if result.parameters.get("alg") != algorithms.ED25519.algorithm_id:
        raise json_error(401, "bad_signature", 'signature parameter alg="ed25519" is required')
    nonce = result.nonce
    if nonce is None or not NONCE_PATTERN.fullmatch(nonce):
        raise json_error(401, "bad_signature", "nonce: at least 16 random bytes, base64url")
    created = result.parameters["created"]
    assert isinstance(created, int)  # the library rejects a signature without it
    age = db.utc_now().timestamp() - created
    if abs(age) > skew:
        raise json_error(
            401, "stale_signature", f"signature created {age:.0f} s ago; allowed: +-{skew} s"
        )

    body = await request.read() if request.body_exists else b""
    try:
        verifier.verify_body(message, [result], body)
    except HTTPMessageSignaturesException as err:
        raise json_error(401, "bad_digest", f"content digest: {err}") from err

    request[appkeys.STORE_ID] = store_id
    request[appkeys.SIGNATURE_NONCE] = nonce


async def record_nonce(conn: AsyncConnection, store_id: str, nonce: str) -> None:
    """Remember a signature's nonce in the caller's transaction; 401 if it was seen before."""
    inserted = await conn.execute(
        db.insert_for(conn, request_nonces)
        .values(store_id=store_id, nonce=nonce, seen_at=db.utc_now())
        .on_conflict_do_nothing()
    )
    if inserted.rowcount != 1:
        raise json_error(401, "replayed", "this signature nonce was used before")


def store_signature_middleware(nonce_in_handler: Collection[str] = ()) -> Middleware:
    """Verify the store signature of requests under /v1/stores/{store_id}/ (not user ones).

    The nonce is recorded before the handler runs, except for the route templates in
    ``nonce_in_handler``: their handlers call :func:`record_nonce` in their own write
    transaction, so a replay still changes nothing and the request needs no write turn of
    its own before it has done its reading and validating.
    """
    deferred = frozenset(nonce_in_handler)

    @web.middleware
    async def verify_store(request: web.Request, handler: Handler) -> web.StreamResponse:
        store_id = _path_store_id(request)
        if store_id is not None and "Authorization" not in request.headers:
            await _verify_store_request(request, store_id)
            resource = request.match_info.route.resource
            if resource is None or resource.canonical not in deferred:
                async with db.begin_write(request.app[appkeys.ENGINE]) as conn:
                    await record_nonce(conn, store_id, request[appkeys.SIGNATURE_NONCE])
        return await handler(request)

    return verify_store


async def purge_nonces(engine: AsyncEngine, skew_s: int) -> int:
    """Forget nonces older than any signature could still be valid; return how many."""
    # A signature is accepted up to skew after its creation, which may itself lie skew
    # ahead of our clock: so a nonce must be kept 2 x skew after we first saw it.
    cutoff = db.utc_now() - timedelta(seconds=2 * skew_s)
    async with db.begin_write(engine) as conn:
        result = await conn.execute(
            request_nonces.delete().where(request_nonces.c.seen_at < cutoff)
        )
    return result.rowcount


# -- request bodies ------------------------------------------------------------------------


def _gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as err:
        raise json_error(400, "bad_body", f"body is not valid gzip: {err}") from err
    if len(out) > limit:
        raise json_error(413, "too_large", f"body is larger than {limit} bytes uncompressed")
    if not inflater.eof or inflater.unused_data:
        raise json_error(400, "bad_body", "gzip body is truncated or has trailing data")
    return out


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, gunzipped when ``Content-Encoding: gzip``; 413 beyond limit bytes."""
    raw = await request.read()
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding == "identity":
        if len(raw) > limit:
            raise json_error(413, "too_large", f"body is larger than {limit} bytes")
        return raw
    if encoding != "gzip":
        raise json_error(415, "bad_encoding", f"Content-Encoding {encoding!r}: only gzip")
    if len(raw) <= _INLINE_GUNZIP_BYTES:
        return _gunzip(raw, limit)
    return await asyncio.to_thread(_gunzip, raw, limit)


async def read_json(request: web.Request, limit: int = MAX_BODY_BYTES) -> Any:
    """The request body decoded as JSON (gzip allowed); 400 when it is not JSON."""
    try:
        return msgspec.json.decode(await read_body(request, limit))
    except msgspec.DecodeError as err:
        raise json_error(400, "bad_json", f"body is not JSON: {err}") from err


# -- users ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    """A human API user: head office (sees every store) or regional staff (one region)."""

    id: int
    name: str
    role: Role
    region: str | None


async def require_user(request: web.Request) -> User:
    """The user whose bearer token the request carries; 401 without one or with a bad one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise json_error(
            401,
            "unauthenticated",
            "send Authorization: Bearer <token>",
            {"WWW-Authenticate": "Bearer"},
        )
    async with request.app[appkeys.ENGINE].connect() as conn:
        row = (
            await conn.execute(
                select(users.c.id, users.c.name, users.c.role, users.c.region).where(
                    users.c.token_hash == hash_token(token.strip()), users.c.revoked_at.is_(None)
                )
            )
        ).first()
    if row is None:
        raise json_error(
            401, "unauthenticated", "unknown or revoked token", {"WWW-Authenticate": "Bearer"}
        )
    role: Role = "hq" if row.role == "hq" else "regional"
    return User(row.id, row.name, role, row.region)


def may_see_store(user: User, store_region: str) -> bool:
    """Whether the user may read data of a store in that region."""
    return user.role == "hq" or user.region == store_region


def visible_stores(user: User) -> ColumnElement[bool]:
    """A WHERE condition on ``stores`` selecting the stores the user may see."""
    if user.role == "hq":
        return true()
    return stores.c.region == user.region


# -- enrollment ----------------------------------------------------------------------------


class _Enrollment(msgspec.Struct):
    store_id: str
    token: str
    # sync-protocol.md names the raw key ``public_key``; receipt-token.md also mentions
    # ``public_key_b64`` and ``public_key_pem``. Exactly one of them must be sent.
    public_key: str | None = None
    public_key_b64: str | None = None
    public_key_pem: str | None = None


def _enrollment_key(body: _Enrollment) -> Ed25519PublicKey:
    given = [
        k for k in (body.public_key, body.public_key_b64, body.public_key_pem) if k is not None
    ]
    if len(given) != 1:
        raise ValueError("send exactly one of public_key, public_key_b64, public_key_pem")
    if body.public_key_pem is None:
        return public_key_from_b64(given[0])
    try:
        key = serialization.load_pem_public_key(body.public_key_pem.encode("utf-8"))
    except (ValueError, TypeError) as err:
        raise ValueError("public_key_pem is not a PEM public key") from err
    if not isinstance(key, Ed25519PublicKey):
        raise TypeError("public_key_pem is not an Ed25519 key")
    return key


async def _enroll(request: web.Request) -> web.Response:
    """``POST /v1/enroll``: trade a one-time token for registering the store's public key."""
    try:
        body = msgspec.json.decode(await read_body(request, 64 * 1024), type=_Enrollment)
        key = _enrollment_key(body)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError) as err:
        raise json_error(400, "bad_request", str(err)) from err
    now = db.utc_now()
    token_hash = hash_token(body.token)
    async with db.begin_write(request.app[appkeys.ENGINE]) as conn:
        row = (
            await conn.execute(
                select(
                    enrollment_tokens.c.store_id,
                    enrollment_tokens.c.expires_at,
                    enrollment_tokens.c.used_at,
                ).where(enrollment_tokens.c.token_hash == token_hash)
            )
        ).first()
        if row is None or row.store_id != body.store_id:
            raise json_error(401, "bad_token", f"not an enrollment token for store {body.store_id}")
        if row.used_at is not None:
            raise json_error(401, "bad_token", "this enrollment token was already used")
        if db.utc(row.expires_at) <= now:
            raise json_error(401, "bad_token", "this enrollment token has expired")
        await conn.execute(
            update(enrollment_tokens)
            .where(enrollment_tokens.c.token_hash == token_hash)
            .values(used_at=now)
        )
        await conn.execute(
            update(stores)
            .where(stores.c.id == body.store_id)
            .values(
                public_key=public_key_to_b64(key), status="active", enrolled_at=now, revoked_at=None
            )
        )
    log.info("store %s enrolled a key", body.store_id)
    return web.json_response({"store_id": body.store_id, "epoch": request.app[appkeys.EPOCH]})


def setup_routes(app: web.Application) -> None:
    """Register POST /v1/enroll."""
    app.router.add_post("/v1/enroll", _enroll)


# -- accounts (the CLI's stores/users commands) ---------------------------------------------


def _check_text(name: str, value: str, max_len: int) -> None:
    if not value.strip() or len(value) > max_len:
        raise AccountError(f"{name} must be 1 to {max_len} characters")


async def add_store(
    engine: AsyncEngine, store_id: str, name: str, region: str, ttl: timedelta
) -> str:
    """Create (or update) a store and return a new one-time enrollment token for it."""
    if not STORE_ID_PATTERN.fullmatch(store_id):
        raise AccountError("store id must be 1-32 characters A-Z a-z 0-9 _ -")
    _check_text("name", name, 200)
    _check_text("region", region, 64)
    token = new_token()
    now = db.utc_now()
    async with db.begin_write(engine) as conn:
        stmt = db.insert_for(conn, stores).values(
            id=store_id, name=name, region=region, status="pending", created_at=now
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[stores.c.id], set_={"name": name, "region": region}
            )
        )
        await conn.execute(
            enrollment_tokens.insert().values(
                token_hash=hash_token(token),
                store_id=store_id,
                created_at=now,
                expires_at=now + ttl,
            )
        )
    return token


async def revoke_store(engine: AsyncEngine, store_id: str) -> None:
    """Mark a store revoked: its key is refused from now on (a new enrollment reinstates it)."""
    async with db.begin_write(engine) as conn:
        result = await conn.execute(
            update(stores)
            .where(stores.c.id == store_id)
            .values(status="revoked", revoked_at=db.utc_now())
        )
        # Outstanding tokens would let whoever holds one re-enroll the revoked store.
        await conn.execute(
            update(enrollment_tokens)
            .where(
                and_(
                    enrollment_tokens.c.store_id == store_id, enrollment_tokens.c.used_at.is_(None)
                )
            )
            .values(used_at=db.utc_now())
        )
    if result.rowcount != 1:
        raise AccountError(f"no store {store_id!r}")


async def add_user(engine: AsyncEngine, name: str, role: str, region: str | None) -> str:
    """Create an API user and return their token (shown once, stored hashed)."""
    _check_text("name", name, 200)
    if role not in ("hq", "regional"):
        raise AccountError(f"role must be hq or regional, not {role!r}")
    if role == "regional":
        if region is None:
            raise AccountError("a regional user needs --region")
        _check_text("region", region, 64)
    elif region is not None:
        raise AccountError("--region applies to regional users only (hq sees every region)")
    token = new_token()
    async with db.begin_write(engine) as conn:
        await conn.execute(
            users.insert().values(
                name=name,
                role=role,
                region=region,
                token_hash=hash_token(token),
                created_at=db.utc_now(),
            )
        )
    return token


async def store_region(conn: AsyncConnection, store_id: str) -> str | None:
    """The store's region, or None when there is no such store."""
    region = await conn.scalar(select(stores.c.region).where(stores.c.id == store_id))
    return None if region is None else str(region)
