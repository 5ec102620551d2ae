"""A sale as the POS posts it, validated strictly: integers in minor units, totals that add up.

Validation only: nothing here touches the database or the printer.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from agent.validation import FieldProblem, describe

MAX_LINES = 500
# An amount larger than this (in minor units) is a typo, not a sale: 10^12 cents = 10 billion.
MAX_AMOUNT = 10**12


class InvalidSale(Exception):
    """The posted sale is invalid; ``problems`` names each field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def gtin_check_digit_ok(gtin: str) -> bool:
    """GS1 mod-10 check digit of a GTIN-8/12/13/14."""
    digits = [int(c) for c in gtin]
    body, check = digits[:-1], digits[-1]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def _gtin(value: str) -> str:
    if not value.isdigit() or len(value) not in (8, 12, 13, 14):
        raise ValueError("a GTIN is 8, 12, 13 or 14 digits")
    if not gtin_check_digit_ok(value):
        raise ValueError(f"GTIN {value} has a wrong check digit")
    return value


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as err:
        raise ValueError("must be a UUID, e.g. 3f2b8c1e-...") from err


Amount = Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT)]
Epc = Annotated[StrictStr, Field(pattern=r"^(?:[0-9A-Fa-f]{2}){4,32}$"), AfterValidator(str.upper)]
Code = Annotated[StrictStr, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.:-]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SaleLine(_Model):
    gtin: Annotated[StrictStr, AfterValidator(_gtin)] | None = None
    sku: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    epc: Annotated[StrictStr, Field(pattern=r"^[0-9A-Fa-f]{8,64}$")] | None = None
    # EPCs of the garments sold (RFID try-on → purchase matching); at most qty of them.
    epcs: Annotated[tuple[Epc, ...], Field(max_length=100_000)] = ()
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    qty: Annotated[StrictInt, Field(ge=1, le=100_000)]
    unit_price: Amount
    discount: Amount = 0

    @model_validator(mode="after")
    def _identified(self) -> SaleLine:
        if self.gtin is None and self.sku is None:
            raise ValueError("each line needs a gtin or a sku")
        if len(self.epcs) > self.qty:
            raise ValueError(f"{len(self.epcs)} epcs for qty {self.qty}: at most one per item")
        if self.discount > self.qty * self.unit_price:
            raise ValueError(
                f"discount {self.discount} exceeds the line amount {self.qty * self.unit_price}"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_empty_epcs(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Absent means none: sales without EPCs keep their exact former shape and hash.
        data = handler(self)
        if isinstance(data, dict) and not data.get("epcs"):
            data.pop("epcs", None)
        return data

    @property
    def amount(self) -> int:
        """Line amount after discount, in minor units."""
        return self.qty * self.unit_price - self.discount


class Payment(_Model):
    method: Code
    amount: Amount


class Sale(_Model):
    sale_id: Annotated[StrictStr, AfterValidator(_uuid)]
    register_id: Code
    staff_id: Code | None = None
    member_id: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = None
    lines: Annotated[list[SaleLine], Field(min_length=1, max_length=MAX_LINES)]
    payments: Annotated[list[Payment], Field(min_length=1, max_length=20)]
    total: Amount
    currency: Annotated[StrictStr, Field(pattern=r"^[A-Z]{3}$")]
    occurred_at: AwareDatetime

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _text_time(cls, value: Any) -> Any:
        # JSON carries times as text; refuse numbers so an epoch in ms is not misread.
        if not isinstance(value, str):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError as a field error
                "must be an RFC 3339 time with a UTC offset, e.g. 2026-11-28T10:15:00Z"
            )
        return value

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


def parse_sale(body: Any) -> Sale:
    """Validate a decoded JSON body as a sale, including that the amounts add up."""
    try:
        sale = Sale.model_validate(body)
    except ValidationError as err:
        raise InvalidSale(describe(err)) from err
    problems = []
    lines_total = sum(line.amount for line in sale.lines)
    if lines_total != sale.total:
        problems.append(
            FieldProblem("total", f"is {sale.total} but the lines add up to {lines_total}")
        )
    paid = sum(p.amount for p in sale.payments)
    if paid != sale.total:
        problems.append(FieldProblem("payments", f"add up to {paid} but the total is {sale.total}"))
    if problems:
        raise InvalidSale(problems)
    return sale


def sale_fingerprint(sale: Sale) -> str:
    """Hash of the validated sale, to tell a retried POST from a different sale reusing an id."""
    return hashlib.sha256(sale.model_dump_json().encode()).hexdigest()
