"""Enrollment, store request signatures (every rejection of sync-protocol.md) and user tokens."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update

from cloud import auth
from cloud.auth import public_key_to_b64
from cloud.db import begin_write
from cloud.schema import enrollment_tokens, request_nonces, stores
from tests.cloud.conftest import Cloud, sale_event


def _key_b64() -> str:
    return public_key_to_b64(Ed25519PrivateKey.generate().public_key())


async def _enroll(
    cloud: Cloud, store_id: str, token: str, key: str | None = None
) -> tuple[int, dict[str, str]]:
    answer = await cloud.post(
        "/v1/enroll", json={"store_id": store_id, "token": token, "public_key": key or _key_b64()}
    )
    return answer.status, answer.json()


async def test_enrollment_token_works_once(cloud: Cloud) -> None:
    token = await cloud.add_store("S001")
    status, body = await _enroll(cloud, "S001", token)
    assert status == 200
    assert body["store_id"] == "S001"
    assert len(body["epoch"]) == 32
    status, body = await _enroll(cloud, "S001", token)
    assert status == 401
    assert "already used" in body["message"]


async def test_enrollment_refuses_wrong_expired_and_other_store_tokens(cloud: Cloud) -> None:
    token = await cloud.add_store("S001")
    await cloud.add_store("S002")
    assert (await _enroll(cloud, "S001", "not-the-token"))[0] == 401
    assert (await _enroll(cloud, "S002", token))[0] == 401
    async with begin_write(cloud.engine) as conn:
        await conn.execute(
            update(enrollment_tokens).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    status, body = await _enroll(cloud, "S001", token)
    assert status == 401
    assert "expired" in body["message"]


async def test_enrollment_rejects_malformed_keys_and_bodies(cloud: Cloud) -> None:
    token = await cloud.add_store("S001")
    assert (await _enroll(cloud, "S001", token, "AAAA"))[0] == 400
    answer = await cloud.post("/v1/enroll", data=b"not json")
    assert answer.status == 400
    # A rejected attempt does not use the token up.
    assert (await _enroll(cloud, "S001", token))[0] == 200


async def test_enrollment_stores_hashes_and_a_new_token_replaces_the_key(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    async with cloud.engine.connect() as conn:
        hashes = (await conn.scalars(select(enrollment_tokens.c.token_hash))).all()
    assert all(len(h) == 64 for h in hashes)
    assert (await store.request("GET", "/v1/stores/S001/sync-state")).status == 200
    new_key = _key_b64()
    assert (await _enroll(cloud, "S001", await cloud.add_store("S001"), new_key))[0] == 200
    # The old key is no longer accepted.
    assert (await store.request("GET", "/v1/stores/S001/sync-state")).status == 401


async def test_enrollment_accepts_pem_as_receipt_token_doc_allows(cloud: Cloud) -> None:
    from cryptography.hazmat.primitives import serialization

    token = await cloud.add_store("S001")
    pem = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    answer = await cloud.post(
        "/v1/enroll", json={"store_id": "S001", "token": token, "public_key_pem": pem}
    )
    assert answer.status == 200


async def test_signed_requests_pass_with_and_without_body(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    assert (await store.request("GET", "/v1/stores/S001/sync-state")).status == 200
    answer = await store.send_events([sale_event("S001", 1)])
    assert answer.status == 200, answer.body
    plain = await store.request("POST", "/v1/stores/S001/events", {"events": []})
    assert plain.status == 200


async def test_unsigned_request_is_401(cloud: Cloud) -> None:
    await cloud.enroll("S001")
    answer = await cloud.get("/v1/stores/S001/sync-state")
    assert answer.status == 401
    assert answer.json()["error"] == "unsigned"


async def test_bad_signature_is_401(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    answer = await store.request(
        "GET", "/v1/stores/S001/sync-state", key=Ed25519PrivateKey.generate()
    )
    assert answer.status == 401
    assert answer.json()["error"] == "bad_signature"
    # Signed for another path, sent to this one.
    headers = store.sign("GET", "/v1/stores/S001/changes", None)
    async with cloud.session.get(
        cloud.base_url + "/v1/stores/S001/sync-state", headers=headers
    ) as resp:
        assert resp.status == 401


async def test_other_stores_key_is_403(cloud: Cloud) -> None:
    await cloud.enroll("S001")
    other = await cloud.enroll("S002")
    answer = await other.request("GET", "/v1/stores/S001/sync-state")
    assert answer.status == 403
    assert answer.json()["error"] == "wrong_store"


async def test_replayed_nonce_is_401(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    headers = store.sign("GET", "/v1/stores/S001/sync-state", None)
    url = cloud.base_url + "/v1/stores/S001/sync-state"
    async with cloud.session.get(url, headers=headers) as first:
        assert first.status == 200
    async with cloud.session.get(url, headers=headers) as again:
        assert again.status == 401
        assert (await again.json())["error"] == "replayed"
    async with cloud.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(request_nonces)) == 1


async def test_created_outside_the_skew_is_401(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    now = datetime.now(UTC)
    for created in (now - timedelta(seconds=310), now + timedelta(seconds=310)):
        answer = await store.request("GET", "/v1/stores/S001/sync-state", created=created)
        assert answer.status == 401, created
    within = await store.request(
        "GET", "/v1/stores/S001/sync-state", created=now - timedelta(seconds=250)
    )
    assert within.status == 200


async def test_tampered_body_fails_the_content_digest(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    body = gzip.compress(msgspec.json.encode({"events": [sale_event("S001", 1)]}))
    headers = store.sign("POST", "/v1/stores/S001/events", body)
    tampered = gzip.compress(msgspec.json.encode({"events": [sale_event("S001", 2)]}))
    headers["Content-Encoding"] = "gzip"
    async with cloud.session.post(
        cloud.base_url + "/v1/stores/S001/events", data=tampered, headers=headers
    ) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "bad_digest"


async def test_revoked_and_unknown_stores_are_403(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    await auth.revoke_store(cloud.engine, "S001")
    answer = await store.request("GET", "/v1/stores/S001/sync-state")
    assert answer.status == 403
    assert answer.json()["error"] == "revoked"
    stranger = await store.request("GET", "/v1/stores/S404/sync-state", keyid="S404")
    assert stranger.status == 403
    async with cloud.engine.connect() as conn:
        status = await conn.scalar(select(stores.c.status).where(stores.c.id == "S001"))
    assert status == "revoked"


async def test_signature_needs_label_nonce_and_components(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    assert (await store.request("GET", "/v1/stores/S001/sync-state", label="other")).status == 401
    assert (await store.request("GET", "/v1/stores/S001/sync-state", nonce="short")).status == 401


async def test_user_tokens(cloud: Cloud) -> None:
    hq = await cloud.add_user("hq")
    assert (await cloud.get("/v1/sync-status")).status == 401
    assert (await cloud.get("/v1/sync-status", token="wrong")).status == 401
    assert (await cloud.get("/v1/sync-status", token=hq)).status == 200


async def test_store_endpoints_refuse_a_user_token(cloud: Cloud) -> None:
    await cloud.enroll("S001")
    hq = await cloud.add_user("hq")
    answer = await cloud.get("/v1/stores/S001/sync-state", token=hq)
    assert answer.status == 401


async def test_the_librarys_aiohttp_client_middleware_interoperates(cloud: Cloud) -> None:
    """A daemon signing with http-message-signatures' own aiohttp middleware is accepted."""
    import base64
    import os

    import aiohttp
    from http_message_signatures import MappingKeyResolver, algorithms
    from http_message_signatures.aiohttp import SignatureMiddleware, SignatureMiddlewareMode

    store = await cloud.enroll("S001")
    for compress in (None, "gzip"):
        middleware = SignatureMiddleware(
            SignatureMiddlewareMode.SIGN_REQUEST,
            sign_options={
                "origin": cloud.base_url + "/",
                "signature_algorithm": algorithms.ED25519,
                "key_id": "S001",
                "key_resolver": MappingKeyResolver(
                    public_keys={}, private_keys={"S001": store.key}
                ),
                "label": "sl",
                "covered_component_ids": ("@method", "@path", "@query"),
                "nonce": base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode(),
            },
        )
        async with (
            aiohttp.ClientSession(**middleware.session_kwargs) as session,
            session.post(
                cloud.base_url + "/v1/stores/S001/events",
                json={"events": [sale_event("S001", 1)]},
                compress=compress,
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()


async def test_replayed_upload_is_401_and_changes_nothing(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    body = gzip.compress(msgspec.json.encode({"events": [sale_event("S001", 1)]}))
    headers = store.sign("POST", "/v1/stores/S001/events", body)
    headers["Content-Encoding"] = "gzip"
    url = cloud.base_url + "/v1/stores/S001/events"
    async with cloud.session.post(url, data=body, headers=headers) as first:
        assert first.status == 200
    async with cloud.session.post(url, data=body, headers=headers) as again:
        assert again.status == 401
        assert (await again.json())["error"] == "replayed"
    async with cloud.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(request_nonces)) == 1
