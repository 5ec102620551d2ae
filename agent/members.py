"""What a sales associate sees and changes of a member at the store.

A member is looked up in the replica of the store's slice (agent.replica): name, masked phone,
tags, segments and the assigned associate. A tag change becomes one ``member.tags`` event
(config/schemas/member-tags.v1.json) committed with ``synchronous=FULL`` like a sale, and is
applied to the replica in the same transaction, so the associate sees it at once; the cloud
merges it with every other store's operations and the replica follows its verdict on a later
pull.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from agent.db import Database, Durability
from agent.outbox import NewEvent, Outbox, epoch_ms, utc_iso
from agent.replica import Member, MemberSeal, Personal, get_member, put_members

TAGS_EVENT_KIND = "member.tags"
TAGS_EVENT_VERSION = 1
MAX_OPS = 50

Tag = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class TagChange(BaseModel):
    """The body of ``POST /v1/members/{id}/tags``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    add: list[Tag] = Field(default_factory=list)
    remove: list[Tag] = Field(default_factory=list)
    staff_id: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None

    @model_validator(mode="after")
    def _sensible(self) -> TagChange:
        ops = len(self.add) + len(self.remove)
        if not 1 <= ops <= MAX_OPS:
            raise ValueError(f"give 1 to {MAX_OPS} tags in add and remove together, not {ops}")
        both = sorted(set(self.add) & set(self.remove))
        if both:
            raise ValueError(f"tags both added and removed: {', '.join(both)}")
        return self


def mask_phone(phone: str | None) -> str | None:
    """All but the last four digits hidden (a leading + kept): enough to confirm, not to call."""
    if phone is None:
        return None
    head, tail = phone[:-4], phone[-4:]
    return "".join(c if c == "+" else "*" for c in head) + tail


class MemberDirectory:
    """Member look-ups and tag changes against the agent database."""

    def __init__(self, db: Database, outbox: Outbox, seal: MemberSeal) -> None:
        self._db = db
        self._outbox = outbox
        self._seal = seal

    async def view(self, member_id: str) -> dict[str, Any] | None:
        """The associate's view of a member, or None outside the store's slice."""
        member = await get_member(self._db.reader, self._seal, member_id)
        return None if member is None else await self._describe(member)

    async def change_tags(self, member_id: str, change: TagChange) -> dict[str, Any] | None:
        """Record a tag change as an event and apply it to the replica; None if not in it."""
        now = datetime.now(UTC)
        at = utc_iso(now)
        ops = [{"op_id": str(uuid.uuid4()), "op": "add", "tag": t, "at": at} for t in change.add]
        ops += [
            {"op_id": str(uuid.uuid4()), "op": "remove", "tag": t, "at": at} for t in change.remove
        ]
        payload = {"member_id": member_id, "staff_id": change.staff_id, "ops": ops}
        async with self._db.write(Durability.FULL) as conn:
            # Read inside the transaction: the sync daemon may replace the row meanwhile.
            member = await get_member(conn, self._seal, member_id)
            if member is None:
                return None
            tags = (set(member.personal.tags) | set(change.add)) - set(change.remove)
            personal = Personal(
                member.personal.name, member.personal.phone, member.personal.consent, sorted(tags)
            )
            updated = Member(
                member.id, personal, member.home_store, member.associate_id, member.segments
            )
            await put_members(conn, self._seal, [updated], at)
            await self._outbox.append_in(
                conn, NewEvent(TAGS_EVENT_KIND, payload, epoch_ms(now), TAGS_EVENT_VERSION)
            )
        return await self._describe(updated)

    async def _describe(self, member: Member) -> dict[str, Any]:
        conn = self._db.reader
        names: dict[str, tuple[str, bool]] = {}
        if member.segments:
            marks = ",".join("?" * len(member.segments))
            rows = await conn.execute_fetchall(
                f"SELECT id, name, high_value FROM segments WHERE id IN ({marks})",  # noqa: S608
                member.segments,
            )
            names = {id: (name, bool(hv)) for id, name, hv in rows}
        associate = None
        if member.associate_id is not None:
            rows = await conn.execute_fetchall(
                "SELECT name, active FROM staff WHERE id = ?", (member.associate_id,)
            )
            found = next(iter(rows), None)
            associate = {
                "id": member.associate_id,
                "name": None if found is None else found[0],
                "active": None if found is None else bool(found[1]),
            }
        personal = member.personal
        return {
            "id": member.id,
            "name": personal.name,
            "phone": mask_phone(personal.phone),
            "consent": personal.consent,
            "tags": sorted(personal.tags),
            "segments": [
                {
                    "id": segment,
                    "name": names[segment][0] if segment in names else None,
                    "high_value": names[segment][1] if segment in names else None,
                }
                for segment in member.segments
            ],
            "home_store": member.home_store,
            "associate": associate,
        }
