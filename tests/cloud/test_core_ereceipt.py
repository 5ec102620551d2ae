"""E-receipt pages: verification, before and after the sale syncs, claims, connection rate."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from cloud import auth
from cloud.receipt_pages import money
from cloud.schema import members, receipt_claims, sales
from tests.cloud.conftest import Cloud, StoreClient, receipt_token, sale_event


def _tamper(token: str, at: int) -> str:
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]


async def _sale(store: StoreClient, seq: int) -> dict[str, object]:
    event = sale_event(store.store_id, seq)
    assert (await store.send_events([event])).json()["stored"] == [event["id"]]
    return event


async def test_receipt_before_the_sale_syncs_shows_the_token_fields(cloud: Cloud) -> None:
    store = await cloud.enroll("S001", name="Trailhead <Outfitters>")
    page = await cloud.get(f"/r/{receipt_token(store.key, 'S001', 42, total=59901)}")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "S001-000042" in page.text
    assert "CNY 599.01" in page.text
    assert "full details appear once the store has synced" in page.text
    assert "Trailhead &lt;Outfitters&gt;" in page.text
    assert "<Outfitters>" not in page.text
    assert '<form method="post" action="/r/' in page.text


async def test_receipt_after_the_sale_syncs_shows_lines_escaped(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    await _sale(store, 7)
    page = await cloud.get(f"/r/{receipt_token(store.key, 'S001', 7)}")
    assert page.status == 200
    assert "Trail jacket 冲锋衣" in page.text
    assert "Merino &lt;socks&gt;" in page.text
    assert "Paid by card" in page.text
    assert "once the store has synced" not in page.text


async def test_tampered_and_unknown_tokens_get_error_pages(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    token = receipt_token(store.key, "S001", 3)
    for at in (2, len(token) // 2, len(token) - 10, len(token) - 1):
        page = await cloud.get(f"/r/{_tamper(token, at)}")
        assert page.status == 400, at
        assert "text/html" in page.headers["Content-Type"]
    assert (await cloud.get("/r/!!!")).status == 400
    assert (await cloud.get("/r/" + "A" * 600)).status == 400
    forged = receipt_token(Ed25519PrivateKey.generate(), "S001", 3)
    assert (await cloud.get(f"/r/{forged}")).status == 400
    stranger = receipt_token(Ed25519PrivateKey.generate(), "S999", 3)
    assert (await cloud.get(f"/r/{stranger}")).status == 404
    await auth.revoke_store(cloud.engine, "S001")
    assert (await cloud.get(f"/r/{token}")).status == 404


async def test_test_receipt_says_so_and_cannot_be_claimed(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    token = receipt_token(store.key, "S001", 0, total=0)
    page = await cloud.get(f"/r/{token}")
    assert page.status == 200
    assert "printer test receipt" in page.text
    assert "<form" not in page.text
    claim = await cloud.post(f"/r/{token}/claim", data={"name": "A", "phone": "13800138000"})
    assert claim.status == 400


async def test_a_receipt_is_claimed_once(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    await _sale(store, 5)
    token = receipt_token(store.key, "S001", 5)
    form = {"name": "Li <Lei>", "phone": "+86 138 0013 8000", "consent": "yes"}
    first = await cloud.post(f"/r/{token}/claim", data=form)
    assert first.status == 200
    assert "Li &lt;Lei&gt;" in first.text
    again = await cloud.post(f"/r/{token}/claim", data=form)
    assert again.status == 409
    assert "already" in again.text
    async with cloud.engine.connect() as conn:
        member = (await conn.execute(select(members))).one()
        claim = (await conn.execute(select(receipt_claims))).one()
        sale_member = await conn.scalar(select(sales.c.member_id))
    assert member.name == "Li <Lei>"
    assert member.consent is True
    assert member.home_store == "S001"
    assert member.phone_enc is not None
    assert b"8000" not in member.phone_enc
    assert claim.member_id == member.id == sale_member
    page = await cloud.get(f"/r/{token}")
    assert "saved in a membership" in page.text
    hq = await cloud.add_user("hq")
    rate = (await cloud.get("/v1/stores/S001/connection-rate", token=hq)).json()
    assert rate == {"store_id": "S001", "claimed": 1, "printed": 1, "rate": 1.0}


async def test_same_phone_attaches_to_the_same_member(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    for seq in (1, 2):
        token = receipt_token(store.key, "S001", seq)
        answer = await cloud.post(
            f"/r/{token}/claim", data={"name": "Li Lei", "phone": "138-0013-8000"}
        )
        assert answer.status == 200
    async with cloud.engine.connect() as conn:
        assert len((await conn.execute(select(members))).all()) == 1
        assert len((await conn.execute(select(receipt_claims))).all()) == 2


async def test_a_claim_before_the_sale_syncs_attributes_the_sale_when_it_arrives(
    cloud: Cloud,
) -> None:
    store = await cloud.enroll("S001")
    token = receipt_token(store.key, "S001", 9)
    assert (
        await cloud.post(f"/r/{token}/claim", data={"name": "Han", "phone": "13900139000"})
    ).status == 200
    await _sale(store, 9)
    async with cloud.engine.connect() as conn:
        claimed_by = await conn.scalar(select(receipt_claims.c.member_id))
        sale_member = await conn.scalar(select(sales.c.member_id))
    assert sale_member == claimed_by


async def test_bad_claim_forms_name_the_field(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    token = receipt_token(store.key, "S001", 1)
    no_name = await cloud.post(f"/r/{token}/claim", data={"name": " ", "phone": "13800138000"})
    assert no_name.status == 422
    assert "name" in no_name.text
    bad_phone = await cloud.post(f"/r/{token}/claim", data={"name": "Li", "phone": "call me"})
    assert bad_phone.status == 422
    assert "phone" in bad_phone.text
    tampered = await cloud.post(
        f"/r/{_tamper(token, len(token) - 10)}/claim", data={"name": "Li", "phone": "1380013800"}
    )
    assert tampered.status == 400


def test_money_formats_minor_units() -> None:
    assert money(59901, "CNY") == "CNY 599.01"
    assert money(5, "USD") == "USD 0.05"
    assert money(1200, "JPY") == "JPY 1,200"
