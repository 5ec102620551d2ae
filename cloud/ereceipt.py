"""E-receipts: the page behind each receipt QR, claiming it into a membership, connection rate.

``GET /r/{token}`` verifies the token (config/schemas/receipt-token.md) with the public key the
store enrolled, then shows the synced sale, or, before the sale has synced, what the signed
token itself says. ``POST /r/{token}/claim`` (a form: name, phone, optional consent) makes the
customer a member, or finds the member with that phone number, and records the claim; a
receipt is claimed once. When the sale is already in the cloud it is attributed to the
member now; otherwise ingest attributes it when it arrives.

The connection rate of a store is claimed receipts / printed receipts (its synced sales).

Exceptions::

    Exception
     └── ReceiptPageError   token malformed, forged, or of an unknown or revoked store
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud import appkeys, auth, db
from cloud.changes import link_member_to_store
from cloud.fieldcrypt import FIELD_CRYPT, normalise_phone
from cloud.members import MemberIn, put_member
from cloud.receipt_pages import LineView, ReceiptView, message_page, receipt_page
from cloud.schema import members, receipt_claims, sale_lines, sale_payments, sales, stores
from cloud.webjson import InvalidField
from config.receipt_token import (
    ReceiptClaims,
    TokenFormatError,
    decode_token,
    receipt_number,
    unpack,
)

log = logging.getLogger(__name__)

_NAME_MAX = 200


class ReceiptPageError(Exception):
    """A request the e-receipt pages answer with an error page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message

    def response(self) -> web.Response:
        """The error as an HTML page."""
        return _html(message_page(self.title, self.message, error=True), self.status)


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@dataclass(frozen=True, slots=True)
class StoreReceipt:
    """A verified token and the store that signed it."""

    claims: ReceiptClaims
    store_name: str


async def verify_receipt_token(conn: AsyncConnection, token: str) -> StoreReceipt:
    """Decode a token and check its signature with the store's key; ReceiptPageError if not."""
    try:
        payload, signature = decode_token(token)
        claims = unpack(payload)
    except TokenFormatError as err:
        raise ReceiptPageError(
            400, "This receipt link is damaged", "The link is incomplete or was changed."
        ) from err
    row = (
        await conn.execute(
            select(stores.c.name, stores.c.status, stores.c.public_key).where(
                stores.c.id == claims.store_id
            )
        )
    ).first()
    if row is None or row.public_key is None:
        raise ReceiptPageError(404, "Unknown store", "We do not know the store of this receipt.")
    if row.status == "revoked":
        raise ReceiptPageError(
            404, "Receipt no longer valid", "The store that issued this receipt was withdrawn."
        )
    try:
        auth.public_key_from_b64(row.public_key).verify(signature, payload)
    except InvalidSignature as err:
        raise ReceiptPageError(
            400,
            "This receipt could not be verified",
            "The link does not match what the store signed: it may have been altered.",
        ) from err
    return StoreReceipt(claims, row.name)


async def _receipt_view(
    conn: AsyncConnection, receipt: StoreReceipt, claim_action: str
) -> ReceiptView:
    claims = receipt.claims
    sale = (
        await conn.execute(
            select(sales).where(
                sales.c.store_id == claims.store_id, sales.c.receipt_seq == claims.receipt_seq
            )
        )
    ).first()
    claimed = await conn.scalar(
        select(receipt_claims.c.member_id).where(
            receipt_claims.c.store_id == claims.store_id,
            receipt_claims.c.receipt_seq == claims.receipt_seq,
        )
    )
    lines: list[LineView] | None = None
    payments: list[tuple[str, int]] | None = None
    if sale is not None:
        lines = [
            LineView(*line)
            for line in await conn.execute(
                select(
                    sale_lines.c.name,
                    sale_lines.c.qty,
                    sale_lines.c.unit_price,
                    sale_lines.c.discount,
                )
                .where(sale_lines.c.store_id == sale.store_id, sale_lines.c.sale_id == sale.sale_id)
                .order_by(sale_lines.c.line_no)
            )
        ]
        payments = [
            (method, amount)
            for method, amount in await conn.execute(
                select(sale_payments.c.method, sale_payments.c.amount)
                .where(
                    sale_payments.c.store_id == sale.store_id,
                    sale_payments.c.sale_id == sale.sale_id,
                )
                .order_by(sale_payments.c.idx)
            )
        ]
    return ReceiptView(
        store_name=receipt.store_name,
        receipt_no=receipt_number(claims.store_id, claims.receipt_seq),
        issued_at=datetime.fromtimestamp(claims.issued_at, UTC)
        if sale is None
        else db.utc(sale.occurred_at),
        # The synced sale is the store's book; the token only vouches for what it carries.
        total=claims.total if sale is None else sale.total,
        currency=claims.currency if sale is None else sale.currency,
        associate_id=claims.associate_id,
        lines=lines,
        payments=payments,
        test_receipt=claims.receipt_seq == 0,
        claimed=claimed is not None,
        claim_action=claim_action,
    )


async def _get_receipt(request: web.Request) -> web.Response:
    """``GET /r/{token}``: the e-receipt page."""
    token = request.match_info["token"]
    try:
        async with request.app[appkeys.ENGINE].connect() as conn:
            receipt = await verify_receipt_token(conn, token)
            view = await _receipt_view(conn, receipt, f"/r/{token}/claim")
    except ReceiptPageError as err:
        return err.response()
    return _html(receipt_page(view))


@dataclass(frozen=True, slots=True)
class ClaimForm:
    """The claim form, checked."""

    name: str
    phone: str
    consent: bool


def parse_claim_form(form: dict[str, str]) -> ClaimForm:
    """Check the posted fields; ReceiptPageError (422) naming the one that is wrong."""
    name = form.get("name", "").strip()
    if not 1 <= len(name) <= _NAME_MAX:
        raise ReceiptPageError(422, "Please check your name", f"Enter 1 to {_NAME_MAX} characters.")
    try:
        phone = normalise_phone(form.get("phone", ""))
    except ValueError as err:
        raise ReceiptPageError(422, "Please check your phone number", str(err)) from err
    return ClaimForm(name, phone, form.get("consent", "") != "")


async def _member_for(
    conn: AsyncConnection, request: web.Request, form: ClaimForm, claims: ReceiptClaims
) -> str:
    """The member with this phone number, created (home store: the receipt's) if there is none."""
    crypt = request.app[FIELD_CRYPT]
    existing = await conn.scalar(
        select(members.c.id).where(members.c.phone_hash == crypt.phone_hash(form.phone)).limit(1)
    )
    if existing is not None:
        return str(existing)
    member_id = f"M-{secrets.token_hex(6).upper()}"
    now = db.utc_now()
    body = MemberIn(
        name=form.name,
        phone=form.phone,
        consent=form.consent,
        home_store=claims.store_id,
        associate_id=claims.associate_id,
    )
    try:
        await put_member(conn, crypt, member_id, body, now)
    except InvalidField:
        # The receipt's associate is not (or no longer) staff of the store: join without one.
        await put_member(
            conn, crypt, member_id, body.model_copy(update={"associate_id": None}), now
        )
    return member_id


async def _claim(request: web.Request, token: str) -> web.Response:
    engine = request.app[appkeys.ENGINE]
    async with engine.connect() as conn:
        claims = (await verify_receipt_token(conn, token)).claims
    if claims.receipt_seq == 0:
        raise ReceiptPageError(400, "Test receipt", "A printer test receipt cannot be claimed.")
    posted = await request.post()
    form = parse_claim_form({k: v for k, v in posted.items() if isinstance(v, str)})
    receipt_no = receipt_number(claims.store_id, claims.receipt_seq)
    async with db.begin_write(engine) as conn:
        if await _claimed_by(conn, claims) is not None:
            raise ReceiptPageError(
                409, "Already claimed", f"Receipt {receipt_no} is already saved in a membership."
            )
        member_id = await _member_for(conn, request, form, claims)
        await conn.execute(
            receipt_claims.insert().values(
                store_id=claims.store_id,
                receipt_seq=claims.receipt_seq,
                member_id=member_id,
                claimed_at=db.utc_now(),
            )
        )
        sale = (
            await conn.execute(
                select(sales.c.sale_id, sales.c.member_id, sales.c.occurred_at).where(
                    sales.c.store_id == claims.store_id, sales.c.receipt_seq == claims.receipt_seq
                )
            )
        ).first()
        if sale is not None and sale.member_id is None:
            await conn.execute(
                update(sales)
                .where(sales.c.store_id == claims.store_id, sales.c.sale_id == sale.sale_id)
                .values(member_id=member_id)
            )
            await link_member_to_store(conn, member_id, claims.store_id, db.utc(sale.occurred_at))
    log.info("receipt %s claimed by member %s", receipt_no, member_id)
    return _html(
        message_page(
            "Receipt saved",
            f"Thank you, {form.name}. Receipt {receipt_no} is now in your membership "
            f"({member_id}); show this page or give your phone number for returns and exchanges.",
        )
    )


async def _post_claim(request: web.Request) -> web.Response:
    """``POST /r/{token}/claim``: attach the receipt to a (new or existing) membership."""
    try:
        return await _claim(request, request.match_info["token"])
    except ReceiptPageError as err:
        return err.response()


async def _claimed_by(conn: AsyncConnection, claims: ReceiptClaims) -> str | None:
    member = await conn.scalar(
        select(receipt_claims.c.member_id).where(
            receipt_claims.c.store_id == claims.store_id,
            receipt_claims.c.receipt_seq == claims.receipt_seq,
        )
    )
    return None if member is None else str(member)


@dataclass(frozen=True, slots=True)
class ConnectionRate:
    """Claimed receipts out of printed ones (synced sales) for one store."""

    claimed: int
    printed: int

    @property
    def rate(self) -> float | None:
        """claimed / printed, or None before the first sale."""
        return round(self.claimed / self.printed, 4) if self.printed else None


async def counts_by_store(conn: AsyncConnection, query: Select[str, int]) -> dict[str, int]:
    """Run a ``SELECT store_id, count(*) ... GROUP BY store_id``; absent stores have none."""
    return {key: int(count) for key, count in await conn.execute(query)}


async def connection_rates(
    conn: AsyncConnection, store_ids: Sequence[str]
) -> dict[str, ConnectionRate]:
    """The connection rate of each store."""
    printed = await counts_by_store(
        conn,
        select(sales.c.store_id, func.count())
        .where(sales.c.store_id.in_(store_ids))
        .group_by(sales.c.store_id),
    )
    claimed = await counts_by_store(
        conn,
        select(receipt_claims.c.store_id, func.count())
        .where(receipt_claims.c.store_id.in_(store_ids))
        .group_by(receipt_claims.c.store_id),
    )
    return {
        store_id: ConnectionRate(claimed.get(store_id, 0), printed.get(store_id, 0))
        for store_id in store_ids
    }


async def _get_connection_rate(request: web.Request) -> web.Response:
    """``GET /v1/stores/{store_id}/connection-rate`` for users who may see the store."""
    user = await auth.require_user(request)
    store_id = request.match_info["store_id"]
    async with request.app[appkeys.ENGINE].connect() as conn:
        region = await auth.store_region(conn, store_id)
        if region is None or not auth.may_see_store(user, region):
            raise auth.json_error(404, "not_found", f"no store {store_id} visible to you")
        rate = (await connection_rates(conn, [store_id]))[store_id]
    return web.json_response(
        {"store_id": store_id, "claimed": rate.claimed, "printed": rate.printed, "rate": rate.rate}
    )


def setup_routes(app: web.Application) -> None:
    """Register the e-receipt pages and the connection-rate endpoint."""
    app.router.add_get("/r/{token}", _get_receipt)
    app.router.add_post("/r/{token}/claim", _post_claim)
    app.router.add_get("/v1/stores/{store_id}/connection-rate", _get_connection_rate)
