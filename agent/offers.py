"""The receipt footer offer: the member's segments against the offers head office defined.

Active offers whose segments meet the member's (or that name none: everyone) are candidates,
highest priority first, ties broken by offer id so the same data always gives the same
receipt. One rule holds whatever the data says (PRODUCT.md: a high-value customer who keeps
receiving clearance offers feels cheapened): a member in any high-value segment never gets a
clearance offer. A member segment the replica does not know yet counts as high-value for
that rule, the safe side, until the segment arrives.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import aiosqlite

from agent.replica import member_segments


@dataclass(frozen=True, slots=True)
class Offer:
    """An offer as the replica holds it; empty ``segments`` targets every member."""

    id: str
    text: str
    segments: frozenset[str]
    clearance: bool
    priority: int
    active: bool = True


def choose_offer(
    member_segments: Collection[str], high_value: Mapping[str, bool], offers: Iterable[Offer]
) -> Offer | None:
    """The offer to print for a member, or None; ``high_value`` maps known segment ids."""
    mine = frozenset(member_segments)
    # Unknown segments count as high-value: never risk a clearance offer on a valued member.
    valued = any(high_value.get(segment, True) for segment in mine)
    candidates = [
        offer
        for offer in offers
        if offer.active
        and (not offer.segments or offer.segments & mine)
        and not (offer.clearance and valued)
    ]
    return min(candidates, key=lambda o: (-o.priority, o.id), default=None)


async def receipt_offer(conn: aiosqlite.Connection, member_id: str) -> str | None:
    """The footer offer text for a member's receipt, or None (not in the replica, no offer)."""
    segments = await member_segments(conn, member_id)
    if segments is None:
        return None
    known = await conn.execute_fetchall("SELECT id, high_value FROM segments")
    rows = await conn.execute_fetchall(
        "SELECT id, text, segments, clearance, priority FROM offers WHERE active = 1"
    )
    offers = [
        Offer(id, text, frozenset(json.loads(targets)), bool(clearance), priority)
        for id, text, targets, clearance, priority in rows
    ]
    chosen = choose_offer(segments, {id: bool(hv) for id, hv in known}, offers)
    return None if chosen is None else chosen.text
