"""Segments: RFM cells computed from synced sales, tag rules, and who belongs to which segment.

**RFM.** The population is every member with at least one sale in the 365 days up to ``now``.
For each: recency = whole days since the last purchase, frequency = number of sales, monetary
= sum of sale totals (minor units), all over that window. Each measure is scored 1-5 by
quintile over the population with a mid-rank rule: a member with ``below`` members strictly
worse and ``ties`` members equal (itself included) scores ``1 + floor(5 * (below + ties/2) / n)``.
Equal values always score the same, the result does not depend on input order, and ten
distinct values score 1,1,2,2,3,3,4,4,5,5. Fewer days is better for recency, more is better
for frequency and monetary. The cell is the three scores, e.g. ``"545"``. Members without a
sale in the window have no cell and belong to no RFM segment. Totals are summed as they are:
the chain is assumed to sell in one currency.

**Rules.** An ``rfm`` segment lists cell patterns (``"555"``, ``"5**"``: ``*`` matches any
score). A ``tags`` segment has ``any`` (at least one present; an empty list imposes nothing),
``all`` (every one present) and ``none`` (none present).

Membership is recomputed hourly by :class:`SegmentScheduler` and on demand; tag segments are
also refreshed at once for a member whose tags change. Members whose segment set changes are
recorded in the change feed, so stores pick offers from fresh segments.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Annotated, Any, Literal

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import and_, bindparam, delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cloud import appkeys
from cloud.changes import chunks, expire_member_links, record_member_changes
from cloud.db import begin_write, insert_for, utc
from cloud.schema import member_rfm, member_segments, member_tags, members, meta, sales, segments
from cloud.webjson import problems, require_hq

log = logging.getLogger(__name__)

RFM_WINDOW = timedelta(days=365)
COMPUTED_AT_KEY = "segments_computed_at"
# Arbitrary constant naming the recompute's advisory lock on PostgreSQL ("sl" + "rfm").
_RECOMPUTE_LOCK = 0x736C_72_666D

Tag = Annotated[str, StringConstraints(min_length=1, max_length=40)]
CellPattern = Annotated[str, StringConstraints(pattern=r"^[1-5*]{3}$")]


@dataclass(frozen=True, slots=True)
class MemberActivity:
    """A member's purchases over the RFM window."""

    member_id: str
    last_purchase_at: datetime
    frequency: int
    monetary: int


@dataclass(frozen=True, slots=True)
class RfmCell:
    """A member's RFM measures and their 1-5 scores."""

    recency_days: int
    frequency: int
    monetary: int
    r: int
    f: int
    m: int

    @property
    def cell(self) -> str:
        """The three scores as text, e.g. ``"545"``."""
        return f"{self.r}{self.f}{self.m}"


def quintile_scores(values: Mapping[str, int]) -> dict[str, int]:
    """Score each key 1-5 by its value (higher is better) with the module's mid-rank rule."""
    n = len(values)
    counts: dict[int, int] = defaultdict(int)
    for value in values.values():
        counts[value] += 1
    below = 0
    score_of: dict[int, int] = {}
    for value in sorted(counts):
        ties = counts[value]
        # 1 + floor(5 * (below + ties/2) / n), in integers.
        score_of[value] = 1 + (10 * below + 5 * ties) // (2 * n)
        below += ties
    return {key: score_of[value] for key, value in values.items()}


def rfm_scores(rows: Iterable[MemberActivity], now: datetime) -> dict[str, RfmCell]:
    """The RFM cell of each member in rows, scored over rows as the population."""
    now = utc(now)
    activity = {row.member_id: row for row in rows}
    recency = {m: max(0, (now - utc(a.last_purchase_at)).days) for m, a in activity.items()}
    # Negated so that, like the other two, a higher value is better.
    r = quintile_scores({m: -days for m, days in recency.items()})
    f = quintile_scores({m: a.frequency for m, a in activity.items()})
    mon = quintile_scores({m: a.monetary for m, a in activity.items()})
    return {
        m: RfmCell(recency[m], a.frequency, a.monetary, r[m], f[m], mon[m])
        for m, a in activity.items()
    }


class TagRule(BaseModel):
    """A tags segment's rule."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    any: list[Tag] = Field(default_factory=list, max_length=100)
    all: list[Tag] = Field(default_factory=list, max_length=100)
    none: list[Tag] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _not_empty(self) -> TagRule:
        if not (self.any or self.all or self.none):
            raise ValueError("a tags rule needs at least one tag in any, all or none")
        return self

    def matches(self, tags: Collection[str]) -> bool:
        """Whether a member with these present tags belongs to the segment."""
        return (
            (not self.any or any(t in tags for t in self.any))
            and all(t in tags for t in self.all)
            and not any(t in tags for t in self.none)
        )


class RfmRule(BaseModel):
    """An rfm segment's rule: the cells (or ``*`` patterns) it takes."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    cells: list[CellPattern] = Field(min_length=1, max_length=125)

    def matches(self, cell: str | None) -> bool:
        """Whether a member with this cell (None: no recent purchase) belongs to the segment."""
        if cell is None:
            return False
        return any(
            all(p in ("*", c) for p, c in zip(pattern, cell, strict=True)) for pattern in self.cells
        )


class SegmentIn(BaseModel):
    """PUT /v1/segments/{id} body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["rfm", "tags"]
    rule: dict[str, Any]
    high_value: bool = False

    @field_validator("rule")
    @classmethod
    def _rule_fits_kind(cls, rule: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        kind = info.data.get("kind")
        if kind is None:
            return rule  # kind itself is invalid and reported
        try:
            parsed = parse_rule(kind, rule)
        except ValidationError as err:
            raise ValueError("; ".join(f"{f}: {m}" for f, m in problems(err))) from err
        # Stored normalised: every list of the rule present.
        return parsed.model_dump()


def parse_rule(kind: str, rule: Mapping[str, Any]) -> TagRule | RfmRule:
    """The rule object of a segment of the given kind; pydantic ValidationError if malformed."""
    if kind == "rfm":
        return RfmRule.model_validate(rule)
    return TagRule.model_validate(rule)


@dataclass(frozen=True, slots=True)
class _Segment:
    id: str
    rule: TagRule | RfmRule


async def _load_segments(conn: AsyncConnection, kind: str | None = None) -> list[_Segment]:
    query = select(segments.c.id, segments.c.kind, segments.c.rule).order_by(segments.c.id)
    if kind is not None:
        query = query.where(segments.c.kind == kind)
    result = await conn.execute(query)
    return [_Segment(r.id, parse_rule(r.kind, r.rule)) for r in result]


async def load_activity(conn: AsyncConnection, now: datetime) -> list[MemberActivity]:
    """Purchases per existing member in the RFM window ending at now, aggregated in SQL."""
    now = utc(now)
    result = await conn.execute(
        select(
            sales.c.member_id,
            func.max(sales.c.occurred_at).label("last"),
            func.count().label("frequency"),
            func.sum(sales.c.total).label("monetary"),
        )
        .join(members, members.c.id == sales.c.member_id)
        .where(sales.c.occurred_at >= now - RFM_WINDOW, sales.c.occurred_at <= now)
        .group_by(sales.c.member_id)
    )
    return [MemberActivity(r.member_id, r.last, r.frequency, int(r.monetary)) for r in result]


async def _serialise_recompute(conn: AsyncConnection, now: datetime) -> None:
    """Make this transaction the only recompute running, and note when it ran."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _RECOMPUTE_LOCK})
    # Writing first also takes SQLite's write lock before anything is read.
    stmt = insert_for(conn, meta)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value})
    await conn.execute(stmt, {"key": COMPUTED_AT_KEY, "value": utc(now).isoformat()})


def memberships(
    member_ids: Iterable[str],
    cells: Mapping[str, str],
    tags: Mapping[str, frozenset[str]],
    rules: Sequence[tuple[str, TagRule | RfmRule]],
) -> dict[str, set[str]]:
    """The segment ids each member belongs to, given its RFM cell and present tags."""
    by_cell: dict[str | None, frozenset[str]] = {}
    by_tags: dict[frozenset[str], frozenset[str]] = {}
    rfm_rules = [(i, r) for i, r in rules if isinstance(r, RfmRule)]
    tag_rules = [(i, r) for i, r in rules if isinstance(r, TagRule)]
    wanted: dict[str, set[str]] = {}
    # Members share few distinct cells and tag sets: evaluate each rule once per distinct one.
    for m in member_ids:
        cell = cells.get(m)
        if cell not in by_cell:
            by_cell[cell] = frozenset(i for i, r in rfm_rules if r.matches(cell))
        own = tags.get(m, frozenset())
        if own not in by_tags:
            by_tags[own] = frozenset(i for i, r in tag_rules if r.matches(own))
        wanted[m] = set(by_cell[cell] | by_tags[own])
    return wanted


def _compute(
    activity: list[MemberActivity],
    now: datetime,
    member_ids: list[str],
    tags: Mapping[str, frozenset[str]],
    rules: Sequence[tuple[str, TagRule | RfmRule]],
) -> tuple[dict[str, RfmCell], dict[str, set[str]]]:
    scores = rfm_scores(activity, now)
    cells = {m: c.cell for m, c in scores.items()}
    return scores, memberships(member_ids, cells, tags, rules)


async def recompute_segments(conn: AsyncConnection, now: datetime) -> int:
    """Recompute RFM cells and every segment's members; the number of members whose set changed."""
    await _serialise_recompute(conn, now)
    activity = await load_activity(conn, now)
    member_ids = list(await conn.scalars(select(members.c.id)))
    tags = await _present_tags_of_all(conn)
    rules = [(seg.id, seg.rule) for seg in await _load_segments(conn)]
    # Scoring a million members takes seconds of CPU: keep it off the event loop.
    scores, wanted = await asyncio.to_thread(_compute, activity, now, member_ids, tags, rules)
    await _store_rfm(conn, scores, utc(now))
    current: dict[str, set[str]] = defaultdict(set)
    for member_id, segment_id in await conn.execute(select(member_segments)):
        current[member_id].add(segment_id)
    changed = await _apply_memberships(conn, wanted, current)
    await record_member_changes(conn, changed)
    return len(changed)


async def _store_rfm(conn: AsyncConnection, scores: Mapping[str, RfmCell], now: datetime) -> None:
    """Make member_rfm hold scores, writing only rows that differ (``computed_at``: when)."""
    result = await conn.execute(
        select(
            member_rfm.c.member_id,
            member_rfm.c.recency_days,
            member_rfm.c.frequency,
            member_rfm.c.monetary,
            member_rfm.c.cell,
        )
    )
    stored = {r.member_id: (r.recency_days, r.frequency, r.monetary, r.cell) for r in result}
    gone = [{"b_member": m} for m in stored if m not in scores]
    # Most rows are unchanged from one hourly run to the next; rewriting them all would hold
    # SQLite's write lock (and stall ingest) for the whole member base.
    new = [
        {
            "member_id": m,
            "recency_days": c.recency_days,
            "frequency": c.frequency,
            "monetary": c.monetary,
            "cell": c.cell,
            "computed_at": now,
        }
        for m, c in sorted(scores.items())
        if stored.get(m) != (c.recency_days, c.frequency, c.monetary, c.cell)
    ]
    for part in chunks(gone):
        await conn.execute(
            delete(member_rfm).where(member_rfm.c.member_id == bindparam("b_member")), list(part)
        )
    stmt = insert_for(conn, member_rfm)
    stmt = stmt.on_conflict_do_update(
        index_elements=["member_id"],
        set_={
            k: stmt.excluded[k]
            for k in ("recency_days", "frequency", "monetary", "cell", "computed_at")
        },
    )
    for part in chunks(new):
        await conn.execute(stmt, list(part))


async def refresh_tag_segments(conn: AsyncConnection, member_ids: Collection[str]) -> set[str]:
    """Re-evaluate tags segments for these members; those whose set changed (caller records)."""
    tag_segments = await _load_segments(conn, "tags")
    ids = sorted(member_ids)
    result = await conn.execute(
        select(member_tags.c.member_id, member_tags.c.tag).where(
            member_tags.c.member_id.in_(ids), member_tags.c.present.is_(True)
        )
    )
    tags: dict[str, set[str]] = defaultdict(set)
    for member_id, tag in result:
        tags[member_id].add(tag)
    rules = [(seg.id, seg.rule) for seg in tag_segments]
    wanted = memberships(ids, {}, {m: frozenset(t) for m, t in tags.items()}, rules)
    current: dict[str, set[str]] = {m: set() for m in ids}
    if tag_segments:
        result = await conn.execute(
            select(member_segments.c.member_id, member_segments.c.segment_id).where(
                member_segments.c.member_id.in_(ids),
                member_segments.c.segment_id.in_([s.id for s in tag_segments]),
            )
        )
        for member_id, segment_id in result:
            current[member_id].add(segment_id)
    return await _apply_memberships(conn, wanted, current)


async def _present_tags_of_all(conn: AsyncConnection) -> dict[str, frozenset[str]]:
    result = await conn.execute(
        select(member_tags.c.member_id, member_tags.c.tag).where(member_tags.c.present.is_(True))
    )
    found: dict[str, set[str]] = defaultdict(set)
    for member_id, tag in result:
        found[member_id].add(tag)
    return {m: frozenset(t) for m, t in found.items()}


async def _apply_memberships(
    conn: AsyncConnection, wanted: Mapping[str, set[str]], current: Mapping[str, set[str]]
) -> set[str]:
    """Make member_segments hold wanted (dropping rows of members not in it); who changed."""
    gone = [
        {"b_member": m, "b_segment": s}
        for m, segs in current.items()
        for s in sorted(segs - wanted.get(m, set()))
    ]
    new = [
        {"member_id": m, "segment_id": s}
        for m, segs in wanted.items()
        for s in sorted(segs - current.get(m, set()))
    ]
    for part in chunks(gone):
        await conn.execute(
            delete(member_segments).where(
                and_(
                    member_segments.c.member_id == bindparam("b_member"),
                    member_segments.c.segment_id == bindparam("b_segment"),
                )
            ),
            list(part),
        )
    for part in chunks(new):
        await conn.execute(insert(member_segments), list(part))
    changed = {row["b_member"] for row in gone if row["b_member"] in wanted}
    changed.update(row["member_id"] for row in new)
    return changed


async def run_maintenance(engine: AsyncEngine, now: datetime) -> int:
    """Expire old store links and recompute segments, one transaction; members changed."""
    async with begin_write(engine) as conn:
        expired = await expire_member_links(conn, now)
        changed = await recompute_segments(conn, now)
    log.info("segments recomputed: %d members changed, %d store links expired", changed, expired)
    return changed


class SegmentScheduler:
    """Runs :func:`run_maintenance` every ``interval`` while entered (APScheduler)."""

    def __init__(self, engine: AsyncEngine, interval: timedelta = timedelta(hours=1)) -> None:
        if interval <= timedelta(0):
            raise ValueError("the segment recompute interval must be positive")
        self._engine = engine
        self._interval = interval
        # An explicit time zone keeps APScheduler from reading the host's zone files.
        self._scheduler = AsyncIOScheduler(timezone=UTC)

    async def __aenter__(self) -> SegmentScheduler:
        self._scheduler.add_job(
            self._run,
            "interval",
            seconds=self._interval.total_seconds(),
            id="segments",
            coalesce=True,
            max_instances=1,
        )
        self._scheduler.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._scheduler.shutdown(wait=False)

    async def _run(self) -> None:
        try:
            await run_maintenance(self._engine, datetime.now(UTC))
        except Exception:
            # The next run tries again; one failure must not stop the schedule.
            log.exception("scheduled segment recompute failed")


async def _post_recompute(request: web.Request) -> web.Response:
    await require_hq(request)
    now = datetime.now(UTC)
    changed = await run_maintenance(request.app[appkeys.ENGINE], now)
    return web.json_response({"changed": changed, "computed_at": now.isoformat()})


async def list_segments(conn: AsyncConnection) -> dict[str, Any]:
    """Every segment with its rule and member count, and when membership was last computed."""
    counted = await conn.execute(
        select(member_segments.c.segment_id, func.count()).group_by(member_segments.c.segment_id)
    )
    counts = {segment_id: int(n) for segment_id, n in counted}
    result = await conn.execute(select(segments).order_by(segments.c.id))
    computed_at = await conn.scalar(select(meta.c.value).where(meta.c.key == COMPUTED_AT_KEY))
    return {
        "computed_at": computed_at,
        "segments": [
            {
                "id": r.id,
                "name": r.name,
                "kind": r.kind,
                "rule": r.rule,
                "high_value": r.high_value,
                "members": counts.get(r.id, 0),
                "updated_at": utc(r.updated_at).isoformat(),
            }
            for r in result
        ],
    }


async def _get_segments(request: web.Request) -> web.Response:
    await require_hq(request)
    async with request.app[appkeys.ENGINE].connect() as conn:
        body = await list_segments(conn)
    return web.json_response(body)


def setup_routes(app: web.Application) -> None:
    """Register POST /v1/segments/recompute and GET /v1/segments (HQ)."""
    app.router.add_post("/v1/segments/recompute", _post_recompute)
    app.router.add_get("/v1/segments", _get_segments)
