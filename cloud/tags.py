"""Member tags: add/remove operations from stores and HQ, merged last-writer-wins.

Every operation is kept in ``member_tag_ops`` (a repeated ``op_id`` is ignored, so a
re-delivered event changes nothing). For each (member, tag) the operation with the greatest
``(at, op_id)`` decides whether the tag is present; ``member_tags`` holds that winner. The
order is total and the merge keeps the maximum, so any arrival order of the same operations
ends in the same tags. ``op_id`` must be globally unique (stores and HQ use UUIDs).

Operations for a member the cloud does not know yet are merged all the same: the member's
tags are ready when HQ creates the member, and only then do stores hear about them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud.changes import record_member_changes
from cloud.db import insert_for, utc
from cloud.schema import member_tag_ops, member_tags, members
from cloud.segments import refresh_tag_segments
from cloud.webjson import problems

TAG_MAX = 40


@dataclass(frozen=True, slots=True)
class TagOp:
    """One add or remove of a tag on a member; ``store_id`` None when HQ made it."""

    op_id: str
    member_id: str
    tag: str
    op: Literal["add", "remove"]
    at: datetime
    store_id: str | None = None


def winner(a: TagOp, b: TagOp) -> TagOp:
    """The operation that decides its (member, tag): the greater (at, op_id)."""
    # op breaks the tie only for two different ops sharing an op_id, which the ops table
    # never lets through; it keeps the function symmetric for any input.
    return b if (utc(b.at), b.op_id, b.op) > (utc(a.at), a.op_id, a.op) else a


class _OpIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    op_id: str = Field(min_length=1, max_length=64)
    op: Literal["add", "remove"]
    tag: str = Field(min_length=1, max_length=TAG_MAX)
    at: AwareDatetime = Field(strict=False)


class _MemberTagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    member_id: str = Field(min_length=1, max_length=64)
    staff_id: str | None = Field(default=None, min_length=1, max_length=32)
    ops: list[_OpIn] = Field(min_length=1, max_length=50)


async def apply_tag_event(conn: AsyncConnection, store_id: str, payload: dict[str, Any]) -> None:
    """Apply a ``member.tags`` v1 payload from the store; ValueError naming the field if invalid."""
    try:
        event = _MemberTagsIn.model_validate(payload)
    except ValidationError as err:
        fields = problems(err, ("payload",))
        raise ValueError("; ".join(f"{f}: {m}" for f, m in fields)) from err
    ops = [TagOp(o.op_id, event.member_id, o.tag, o.op, utc(o.at), store_id) for o in event.ops]
    await apply_tag_ops(conn, ops)


async def apply_tag_ops(conn: AsyncConnection, ops: Sequence[TagOp]) -> bool:
    """Keep the operations, merge them into member_tags; True if a member's tag set changed."""
    fresh = await _keep_new_ops(conn, ops)
    if not fresh:
        return False
    decided: dict[tuple[str, str], TagOp] = {}
    for op in fresh:
        key = (op.member_id, op.tag)
        decided[key] = winner(decided[key], op) if key in decided else op
    member_ids = sorted({op.member_id for op in fresh})
    before = await present_tags(conn, member_ids)
    stmt = insert_for(conn, member_tags)
    # The WHERE makes the merge a maximum, whatever order concurrent transactions commit in.
    stmt = stmt.on_conflict_do_update(
        index_elements=["member_id", "tag"],
        set_={
            "present": stmt.excluded.present,
            "op_at": stmt.excluded.op_at,
            "op_id": stmt.excluded.op_id,
        },
        where=tuple_(stmt.excluded.op_at, stmt.excluded.op_id)
        > tuple_(member_tags.c.op_at, member_tags.c.op_id),
    )
    await conn.execute(
        stmt,
        [
            {
                "member_id": op.member_id,
                "tag": op.tag,
                "present": op.op == "add",
                "op_at": op.at,
                "op_id": op.op_id,
            }
            for op in decided.values()
        ],
    )
    after = await present_tags(conn, member_ids)
    changed = [m for m in member_ids if before.get(m) != after.get(m)]
    if not changed:
        return False
    known = list(await conn.scalars(select(members.c.id).where(members.c.id.in_(changed))))
    if known:
        await refresh_tag_segments(conn, known)
        await record_member_changes(conn, known)
    return True


async def present_tags(
    conn: AsyncConnection, member_ids: Sequence[str]
) -> dict[str, frozenset[str]]:
    """Each given member's present tags (members without tags are left out)."""
    result = await conn.execute(
        select(member_tags.c.member_id, member_tags.c.tag).where(
            member_tags.c.member_id.in_(member_ids), member_tags.c.present.is_(True)
        )
    )
    found: dict[str, set[str]] = {}
    for member_id, tag in result:
        found.setdefault(member_id, set()).add(tag)
    return {m: frozenset(tags) for m, tags in found.items()}


async def _keep_new_ops(conn: AsyncConnection, ops: Sequence[TagOp]) -> list[TagOp]:
    """Insert the operations not seen before; return those (first of each op_id wins)."""
    unique = list({op.op_id: op for op in reversed(ops)}.values())
    seen = set(
        await conn.scalars(
            select(member_tag_ops.c.op_id).where(
                member_tag_ops.c.op_id.in_([op.op_id for op in unique])
            )
        )
    )
    fresh = [op for op in unique if op.op_id not in seen]
    if fresh:
        await conn.execute(
            insert_for(conn, member_tag_ops).on_conflict_do_nothing(index_elements=["op_id"]),
            [
                {
                    "op_id": op.op_id,
                    "member_id": op.member_id,
                    "tag": op.tag,
                    "op": op.op,
                    "at": op.at,
                    "store_id": op.store_id,
                }
                for op in fresh
            ],
        )
    return fresh
