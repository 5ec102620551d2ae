"""The cloud's store endpoints as the sync daemon calls them (config/schemas/sync-protocol.md).

Every request under ``/v1/stores/{store_id}/`` is signed with the store's Ed25519 key (RFC 9421)
by http-message-signatures' ``HTTPMessageSigner``: label ``sl``, covering ``@method``,
``@path``, ``@query`` and, with a body, ``content-digest`` over the bytes as sent (after gzip),
with ``created``, ``nonce``, ``keyid`` and ``alg``. The library's aiohttp
``SignatureMiddleware`` takes one fixed nonce in its options, while the protocol wants a fresh
nonce for every request and every retry: so a per-request aiohttp client middleware of ours
signs each attempt, aiohttp's own retry of an idempotent request included.

Exceptions::

    SyncError
     ├── CloudUnavailable   no connection, a timeout, a 5xx or 429 (``retry_after_s`` if asked)
     ├── CloudRejected      a 4xx: the cloud refused the request (``status``, ``error``)
     ├── BadAnswer          a 2xx whose body is not what the protocol says
     ├── EpochChanged       the cloud's epoch is not the one the local state belongs to
     └── CannotStart        the daemon cannot run here
          ├── NotEnrolled       the agent database has no enrollment to sync with
          └── AlreadyRunning    another daemon syncs this data directory
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import HTTPSignatureKeyResolver
from multidict import CIMultiDict

from agent.sync.backoff import parse_retry_after

log = logging.getLogger(__name__)

SIGNATURE_LABEL = "sl"
COVERED_COMPONENTS = ("@method", "@path", "@query")
T = TypeVar("T")


class SyncError(Exception):
    """Syncing with the cloud failed."""


class CloudUnavailable(SyncError):
    """The cloud did not answer usefully now; try again later."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CloudRejected(SyncError):
    """The cloud refused the request (4xx); ``error`` is its reason code."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}" if error else f"{status}: {message}")
        self.status = status
        self.error = error


class BadAnswer(SyncError):
    """The cloud answered 2xx with a body the protocol does not allow."""


class EpochChanged(SyncError):
    """The cloud's database is another one than the local state was synced with."""

    def __init__(self, epoch: str) -> None:
        super().__init__(f"the cloud's epoch is now {epoch}")
        self.epoch = epoch


class CannotStart(SyncError):
    """The daemon cannot run with this configuration or data directory."""


class NotEnrolled(CannotStart):
    """The store has not enrolled with a cloud yet."""


class AlreadyRunning(CannotStart):
    """Another sync daemon holds this data directory."""


# -- answers -----------------------------------------------------------------------------


class Rejection(msgspec.Struct, frozen=True):
    """An event the cloud refused, and why (the reason starts with the field's path)."""

    id: str | None
    reason: str


class UploadAnswer(msgspec.Struct, frozen=True):
    """The answer to a batch of events."""

    epoch: str
    stored: list[str]
    rejected: list[Rejection]


NULL = msgspec.Raw(b"null")


class Change(msgspec.Struct, frozen=True):
    """One entry of the change feed; ``data`` stays raw JSON (``null``: a tombstone)."""

    cursor: int
    entity: str
    id: str
    op: str
    data: msgspec.Raw = NULL


class ChangesPage(msgspec.Struct, frozen=True):
    """A page of the store's change feed."""

    epoch: str
    cursor: int
    more: bool
    changes: list[Change]


class SyncState(msgspec.Struct, frozen=True):
    """What the cloud holds of this store's events."""

    epoch: str
    max_seq: int


class EpochAnswer(msgspec.Struct, frozen=True):
    """An answer that carries only the epoch (heartbeat)."""

    epoch: str


class Enrollment(msgspec.Struct, frozen=True):
    """The answer to an enrollment."""

    store_id: str
    epoch: str


class _ErrorBody(msgspec.Struct):
    error: str = ""
    message: str = ""


# -- signing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Message:
    """A request as HTTPMessageSigner reads it: method, absolute URL, headers to add to."""

    method: str
    url: str
    headers: CIMultiDict[str]


class _StoreKey(HTTPSignatureKeyResolver):
    def __init__(self, store_id: str, key: Ed25519PrivateKey) -> None:
        self._store_id = store_id
        self._key = key

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        if key_id != self._store_id:
            raise KeyError(key_id)
        return self._key

    def resolve_public_key(self, key_id: str) -> Any:
        return self._key.public_key()


def new_nonce() -> str:
    """16 random bytes, base64url without padding (22 characters)."""
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")


# -- the client --------------------------------------------------------------------------


def _decode(answer_type: type[T], body: bytes, what: str) -> T:
    try:
        return msgspec.json.decode(body, type=answer_type)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise BadAnswer(f"{what}: the cloud's answer is not valid: {err}") from err


async def _exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: CIMultiDict[str],
    body: bytes | None,
    middlewares: Sequence[aiohttp.ClientMiddlewareType] = (),
) -> bytes:
    """Send a request; the body of a 2xx answer, or the SyncError the answer amounts to."""
    what = f"{method} {url}"
    try:
        async with session.request(
            method, url, data=body, headers=headers, middlewares=middlewares
        ) as resp:
            payload = await resp.read()
            status, reason = resp.status, resp.reason or ""
            retry_after = resp.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError) as err:
        raise CloudUnavailable(f"{what}: {type(err).__name__}: {err}".rstrip(": ")) from err
    if 200 <= status < 300:
        return payload
    try:
        problem = msgspec.json.decode(payload, type=_ErrorBody)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # Not ours: a proxy's or a server's error page. Its reason phrase says enough.
        problem = _ErrorBody(message=reason)
    if status == 429 or status >= 500:
        wait = parse_retry_after(retry_after, datetime.now(UTC))
        detail = f"{problem.error}: {problem.message}" if problem.error else problem.message
        raise CloudUnavailable(f"{what}: {status} {detail}".rstrip(": "), wait)
    raise CloudRejected(status, problem.error, problem.message)


class CloudClient:
    """Signed requests for one store; ``async with`` owns the HTTP session."""

    def __init__(
        self,
        base_url: str,
        store_id: str,
        key: Ed25519PrivateKey,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.store_id = store_id
        self._signer = HTTPMessageSigner(
            signature_algorithm=algorithms.ED25519, key_resolver=_StoreKey(store_id, key)
        )
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CloudClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _signing(self, body: bytes | None) -> aiohttp.ClientMiddlewareType:
        """A middleware that signs every attempt of one request with a fresh nonce."""

        async def sign(
            request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
        ) -> aiohttp.ClientResponse:
            # aiohttp sends an idempotent request again when a kept-alive connection turns
            # out dead; that attempt passes here too, so it never repeats a nonce.
            self._signer.sign(
                _Message(request.method, str(request.url), request.headers),
                key_id=self.store_id,
                created=datetime.now(UTC),
                nonce=new_nonce(),
                label=SIGNATURE_LABEL,
                covered_component_ids=COVERED_COMPONENTS,
                body=body,
            )
            return await handler(request)

        return sign

    async def _signed(
        self,
        method: str,
        endpoint: str,
        answer_type: type[T],
        *,
        query: str = "",
        body: bytes | None = None,
        gzipped: bool = False,
    ) -> T:
        if self._session is None:
            raise RuntimeError("CloudClient is not entered")
        url = f"{self.base_url}/v1/stores/{self.store_id}/{endpoint}"
        if query:
            url += f"?{query}"
        headers: CIMultiDict[str] = CIMultiDict()
        if body is not None:
            headers["Content-Type"] = "application/json"
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        signing = (self._signing(body),)
        answer = await _exchange(self._session, method, url, headers, body, signing)
        return _decode(answer_type, answer, f"{method} {endpoint}")

    async def post_events(self, gzipped_body: bytes) -> UploadAnswer:
        """``POST events`` with a gzipped ``{"events": [...]}`` body."""
        return await self._signed("POST", "events", UploadAnswer, body=gzipped_body, gzipped=True)

    async def get_changes(self, since: int, limit: int) -> ChangesPage:
        """``GET changes?since=&limit=``: the next page of the store's change feed."""
        return await self._signed(
            "GET", "changes", ChangesPage, query=f"since={since}&limit={limit}"
        )

    async def get_sync_state(self) -> SyncState:
        """``GET sync-state``: the highest seq of this store the cloud holds."""
        return await self._signed("GET", "sync-state", SyncState)

    async def post_heartbeat(self, body: bytes) -> EpochAnswer:
        """``POST heartbeat`` with a JSON body."""
        return await self._signed("POST", "heartbeat", EpochAnswer, body=body)


async def post_enrollment(
    base_url: str, store_id: str, token: str, public_key: str, *, timeout_s: float = 20.0
) -> Enrollment:
    """``POST /v1/enroll`` (unsigned): register the store's public key with a one-time token."""
    body = msgspec.json.encode({"store_id": store_id, "token": token, "public_key": public_key})
    headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
    url = f"{base_url.rstrip('/')}/v1/enroll"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        answer = await _exchange(session, "POST", url, headers, body)
    return _decode(Enrollment, answer, "POST /v1/enroll")
