"""Try-on → purchase conversion, in SQL that runs on SQLite and PostgreSQL alike.

A try-on **converts** when, in the same store, either

- a sale line of the same SKU was sold at or after the try-on started and at most
  ``[tryons] conversion_window_minutes`` (default 120) after it ended, or
- a sale line carried the try-on's EPC (the POS read the very garment) at or after the try-on
  started, however much later.

A sale before the try-on started never converts it, nor does another store's sale. Sales
between start and end do: the session ends when the garment is last seen, a little after the
shopper left the room. SKUs are compared after resolving each side through the catalogue when
only a GTIN is known (``coalesce(sku, catalogue.sku of its gtin)``); GTINs must match as text.

**Two try-ons, one sale**: each try-on is judged on its own, so one sale converts every try-on
of its SKU in the window before it (a shopper trying a garment twice, or two shoppers and one
purchase, both count). ``converted`` can therefore exceed ``purchases``; the EPC rule is the
exact one when the POS sends EPCs.

The report (:func:`report_query`) has one row per store, SKU and **UTC day** (the cloud does
not know stores' time zones): ``tryons`` started that day, how many of them converted, and
``purchases``: units of the SKU sold that day in that store. Rows exist for every (store, SKU,
day) with a try-on or a sale, in stores that have sent at least one try-on, so a SKU sold
without being tried on shows ``tryons = 0``. Try-ons whose SKU cannot be resolved are left out
of the report (they stay in the sessions export). An export's from/to select try-ons by start
and purchases by sale time; whether a try-on converted may depend on a sale after ``to``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    Row,
    Select,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
    union,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Subquery

from cloud.schema import catalogue, sale_line_epcs, sale_lines, sales, tryons
from cloud.sqltime import plus_minutes, utc_day

# A WHERE condition on a column: the export's time window or the user's store scope.
Condition = Callable[[Any], ColumnElement[bool]]


def _catalogue_sku(gtin: Any) -> Any:
    return select(func.min(catalogue.c.sku)).where(catalogue.c.gtin == gtin).scalar_subquery()


def resolved_tryons(in_window: Condition, scoped: Condition) -> Subquery:
    """The try-ons in the window and scope, ``sku`` resolved: as the agent sent it, else the
    catalogue's for its GTIN.

    Resolved here, once, and not inside :func:`converted`: a scalar subquery nested two levels
    below ``tryons`` would not be correlated with it.
    """
    return (
        select(
            *(c for c in tryons.c if c.key != "sku"),
            func.coalesce(tryons.c.sku, _catalogue_sku(tryons.c.gtin)).label("sku"),
        )
        .where(in_window(tryons.c.started_at), scoped(tryons.c.store_id))
        .subquery("resolved_tryons")
    )


def line_sku() -> ColumnElement[Any]:
    """A sale line's SKU: as the POS sent it, else the catalogue's for its GTIN."""
    return func.coalesce(sale_lines.c.sku, _catalogue_sku(sale_lines.c.gtin))


_SALE_OF_LINE = and_(
    sales.c.store_id == sale_lines.c.store_id, sales.c.sale_id == sale_lines.c.sale_id
)


def converted(tryon: Subquery, window_minutes: int) -> ColumnElement[bool]:
    """Whether a row of :func:`resolved_tryons` converted (see the module docstring)."""
    # Driven by the index on sales (store_id, occurred_at): a few sales per try-on.
    by_sku = exists(
        select(literal(1))
        .select_from(sales.join(sale_lines, _SALE_OF_LINE))
        .where(
            sales.c.store_id == tryon.c.store_id,
            sales.c.occurred_at >= tryon.c.started_at,
            sales.c.occurred_at <= plus_minutes(tryon.c.ended_at, window_minutes),
            line_sku() == tryon.c.sku,
        )
        .correlate(tryon)
    )
    # Driven by the EPC (the key of sale_line_epcs starts with store and EPC); the sale's time
    # is looked up by its key. Joining sales instead lets SQLite's planner start from every
    # sale of the store after the try-on.
    sold_at = (
        select(sales.c.occurred_at)
        .where(
            sales.c.store_id == sale_line_epcs.c.store_id,
            sales.c.sale_id == sale_line_epcs.c.sale_id,
        )
        .scalar_subquery()
    )
    by_epc = exists(
        select(literal(1))
        .select_from(sale_line_epcs)
        .where(
            sale_line_epcs.c.store_id == tryon.c.store_id,
            sale_line_epcs.c.epc == tryon.c.epc,
            sold_at >= tryon.c.started_at,
        )
        .correlate(tryon)
    )
    return or_(by_sku, by_epc)


def sessions_query(in_window: Condition, scoped: Condition, window_minutes: int) -> Select[Any]:
    """Raw try-on sessions with their resolved SKU and whether each converted."""
    t = resolved_tryons(in_window, scoped)
    return select(
        t.c.store_id,
        t.c.session_id,
        t.c.reader,
        t.c.room,
        t.c.epc,
        t.c.gtin,
        t.c.sku,
        t.c.started_at,
        t.c.ended_at,
        t.c.dwell_s,
        t.c.closed_by,
        type_coerce(converted(t, window_minutes), Boolean).label("converted"),
    ).order_by(t.c.started_at, t.c.store_id, t.c.session_id)


def report_query(in_window: Condition, scoped: Condition, window_minutes: int) -> Select[Any]:
    """Try-ons, converted try-ons and purchases per store, SKU and UTC day."""
    t = resolved_tryons(in_window, scoped)
    per_tryon = select(
        t.c.store_id,
        t.c.sku,
        utc_day(t.c.started_at).label("day"),
        case((converted(t, window_minutes), 1), else_=0).label("converted"),
    ).subquery("per_tryon")
    tried = (
        select(
            per_tryon.c.store_id,
            per_tryon.c.sku,
            per_tryon.c.day,
            func.count().label("tryons"),
            func.sum(per_tryon.c.converted).label("converted"),
        )
        .where(per_tryon.c.sku.is_not(None))
        .group_by(per_tryon.c.store_id, per_tryon.c.sku, per_tryon.c.day)
        .subquery("tried")
    )
    per_line = (
        select(
            sales.c.store_id,
            line_sku().label("sku"),
            utc_day(sales.c.occurred_at).label("day"),
            sale_lines.c.qty,
        )
        .select_from(sales.join(sale_lines, _SALE_OF_LINE))
        .where(
            in_window(sales.c.occurred_at),
            scoped(sales.c.store_id),
            sales.c.store_id.in_(select(tryons.c.store_id).distinct()),
        )
        .subquery("per_line")
    )
    bought = (
        select(
            per_line.c.store_id,
            per_line.c.sku,
            per_line.c.day,
            func.sum(per_line.c.qty).label("purchases"),
        )
        .where(per_line.c.sku.is_not(None))
        .group_by(per_line.c.store_id, per_line.c.sku, per_line.c.day)
        .subquery("bought")
    )
    keys = union(
        select(tried.c.store_id, tried.c.sku, tried.c.day),
        select(bought.c.store_id, bought.c.sku, bought.c.day),
    ).subquery("report_keys")

    def same_key(other: Any) -> ColumnElement[bool]:
        return and_(
            other.c.store_id == keys.c.store_id,
            other.c.sku == keys.c.sku,
            other.c.day == keys.c.day,
        )

    return (
        select(
            keys.c.store_id,
            keys.c.sku,
            keys.c.day,
            func.coalesce(tried.c.tryons, 0).label("tryons"),
            type_coerce(func.coalesce(tried.c.converted, 0), Integer).label("converted"),
            type_coerce(func.coalesce(bought.c.purchases, 0), Integer).label("purchases"),
        )
        .select_from(keys.outerjoin(tried, same_key(tried)).outerjoin(bought, same_key(bought)))
        .order_by(keys.c.day, keys.c.store_id, keys.c.sku)
    )


async def report_records(_conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    """Report rows as records: the day as a date, conversion = converted / try-ons."""
    return [
        {
            "day": date.fromisoformat(row.day),
            "store_id": row.store_id,
            "sku": row.sku,
            "tryons": int(row.tryons),
            "converted": int(row.converted),
            "purchases": int(row.purchases),
            "conversion": row.converted / row.tryons if row.tryons else None,
        }
        for row in rows
    ]
