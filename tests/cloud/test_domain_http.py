"""The domain over HTTP: HQ endpoints and the store change feed, through the real cloud app."""

from __future__ import annotations

from typing import Any

import pytest

from cloud import appkeys
from tests.cloud.conftest import Cloud, Response, StoreClient, envelope, sale_event, uuid7


async def _send(
    cloud: Cloud, method: str, path: str, token: str | None, payload: Any = None, **kw: Any
) -> Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with cloud.session.request(
        method, cloud.base_url + path, json=payload, headers=headers, **kw
    ) as resp:
        return Response(resp.status, dict(resp.headers), await resp.read())


async def _all_changes(store: StoreClient, since: int = 0, limit: int = 3) -> dict[str, Any]:
    """Pull the store's feed to the end: the last answer, with every change in .changes."""
    seen: list[dict[str, Any]] = []
    while True:
        answer = await store.request(
            "GET", f"/v1/stores/{store.store_id}/changes?since={since}&limit={limit}"
        )
        assert answer.status == 200, answer.text
        body: dict[str, Any] = answer.json()
        seen += body["changes"]
        since = body["cursor"]
        if not body["more"]:
            return body | {"changes": seen}


@pytest.fixture
async def hq(cloud: Cloud) -> str:
    return await cloud.add_user("hq")


async def test_member_crud_for_hq_and_regions(cloud: Cloud, hq: str) -> None:
    await cloud.add_store("S1", region="east")
    await cloud.add_store("S2", region="west")
    east = await cloud.add_user("regional", "east")
    west = await cloud.add_user("regional", "west")
    member = {"name": "Li Wei", "phone": "+86 138 0013 8000", "consent": True, "home_store": "S1"}
    created = await _send(cloud, "PUT", "/v1/members/M1", hq, member)
    assert created.status == 201, created.text
    assert created.json()["phone"] == "+8613800138000"
    assert (await _send(cloud, "PUT", "/v1/members/M1", hq, member)).status == 200
    assert (await _send(cloud, "PUT", "/v1/members/M2", east, member)).status == 403
    assert (await _send(cloud, "PUT", "/v1/members/M2", None, member)).status == 401
    seen = await cloud.get("/v1/members/M1", token=east)
    assert seen.status == 200
    assert seen.json()["home_store"] == "S1"
    # Another region's member and a member that does not exist look the same.
    assert (await cloud.get("/v1/members/M1", token=west)).status == 404
    assert (await cloud.get("/v1/members/M9", token=west)).status == 404

    tagged = await _send(cloud, "POST", "/v1/members/M1/tags", hq, {"add": ["vip", "golf"]})
    assert tagged.json() == {"id": "M1", "tags": ["golf", "vip"]}
    both = await _send(cloud, "POST", "/v1/members/M1/tags", hq, {"add": ["x"], "remove": ["x"]})
    assert both.status == 422
    await _send(cloud, "PUT", "/v1/stores/S1/staff/A08", hq, {"name": "Zhao Lei"})
    moved = await _send(cloud, "POST", "/v1/members/M1/handover", hq, {"associate_id": "A08"})
    assert moved.json() == {"id": "M1", "associate_id": "A08"}
    assert (await cloud.get("/v1/members/M1", token=hq)).json()["associate_id"] == "A08"

    assert (await _send(cloud, "DELETE", "/v1/members/M1", east)).status == 403
    assert (await _send(cloud, "DELETE", "/v1/members/M1", hq)).json()["erased"] is True
    assert (await cloud.get("/v1/members/M1", token=hq)).status == 404
    assert (await _send(cloud, "DELETE", "/v1/members/M1", hq)).status == 404


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("/v1/members/M1", {"name": "x", "consent": "yes"}, ["consent"]),
        ("/v1/members/M1", {"name": "x", "consent": True, "phone": "call me"}, ["phone"]),
        ("/v1/members/M1", {"name": "x", "consent": True, "home_store": "S9"}, ["home_store"]),
        ("/v1/members/M%201", {"name": "x", "consent": True}, ["id"]),
        ("/v1/catalogue/A", {"name": "a", "price": -1, "currency": "cny", "category": "c"},
         ["price", "currency"]),
        ("/v1/segments/s", {"name": "s", "kind": "tags", "rule": {"any": [""]}}, ["rule"]),
        ("/v1/offers/o", {"text": "t", "segments": ["none"], "clearance": False}, ["segments[0]"]),
        ("/v1/stores/S1/staff/A1", {"name": "x", "colour": "red"}, ["colour"]),
    ],
)  # fmt: skip
async def test_invalid_bodies_get_422_naming_the_field(
    cloud: Cloud, hq: str, path: str, body: dict[str, Any], fields: list[str]
) -> None:
    await cloud.add_store("S1")
    answer = await _send(cloud, "PUT", path, hq, body)
    assert answer.status == 422, answer.text
    assert [f["field"] for f in answer.json()["fields"]] == fields
    assert all(f in answer.json()["message"] for f in fields)


async def test_broken_json_is_400_and_unknown_store_is_404(cloud: Cloud, hq: str) -> None:
    answer = await _send(cloud, "PUT", "/v1/catalogue/A", hq, data=b"{nope")
    assert answer.status == 400
    assert answer.json()["error"] == "bad_json"
    answer = await _send(cloud, "PUT", "/v1/stores/S9/staff/A1", hq, {"name": "x"})
    assert answer.status == 404


async def test_segments_offers_and_recompute(cloud: Cloud, hq: str) -> None:
    rfm = {"name": "Champions", "kind": "rfm", "rule": {"cells": ["5**"]}, "high_value": True}
    assert (await _send(cloud, "PUT", "/v1/segments/champions", hq, rfm)).status == 201
    tags = {"name": "VIP", "kind": "tags", "rule": {"any": ["vip"]}}
    assert (await _send(cloud, "PUT", "/v1/segments/vip", hq, tags)).status == 201
    clearance = {"text": "-70%", "segments": ["champions"], "clearance": True}
    refused = await _send(cloud, "PUT", "/v1/offers/o1", hq, clearance)
    assert refused.status == 422
    assert "high-value" in refused.json()["message"]
    fine = {"text": "New season", "segments": ["vip"], "clearance": False, "priority": 2}
    assert (await _send(cloud, "PUT", "/v1/offers/o2", hq, fine)).json() == {"result": "created"}
    assert (await _send(cloud, "PUT", "/v1/offers/o2", hq, fine)).json() == {"result": "unchanged"}
    recomputed = await _send(cloud, "POST", "/v1/segments/recompute", hq)
    assert recomputed.status == 200
    assert recomputed.json()["changed"] == 0
    listed = (await cloud.get("/v1/segments", token=hq)).json()
    assert [(s["id"], s["rule"], s["members"]) for s in listed["segments"]] == [
        ("champions", {"cells": ["5**"]}, 0),
        ("vip", {"any": ["vip"], "all": [], "none": []}, 0),
    ]
    regional = await cloud.add_user("regional", "east")
    assert (await cloud.get("/v1/segments", token=regional)).status == 403
    assert (await _send(cloud, "POST", "/v1/segments/recompute", regional)).status == 403


async def test_change_feed_carries_the_slice_and_follows_ingest(cloud: Cloud, hq: str) -> None:
    s1 = await cloud.enroll("S1")
    s2 = await cloud.enroll("S2")
    s3 = await cloud.enroll("S3")
    await _send(cloud, "PUT", "/v1/stores/S1/staff/A07", hq, {"name": "Wang Fang"})
    item = {"name": "Merino socks", "price": 5000, "currency": "CNY", "category": "socks"}
    await _send(cloud, "PUT", "/v1/catalogue/SOCK-M", hq, item)
    member = {"name": "Li Wei", "phone": "13800138000", "consent": True, "home_store": "S1",
              "associate_id": "A07"}  # fmt: skip
    await _send(cloud, "PUT", "/v1/members/M1", hq, member)

    first = await _all_changes(s1, limit=1)
    assert first["epoch"] == cloud.app[appkeys.EPOCH]
    assert [(c["entity"], c["id"], c["op"]) for c in first["changes"]] == [
        ("staff", "A07", "upsert"),
        ("catalogue", "SOCK-M", "upsert"),
        ("member", "M1", "upsert"),
    ]
    assert first["changes"][2]["data"]["phone"] == "13800138000"
    assert [c["id"] for c in (await _all_changes(s3))["changes"]] == ["SOCK-M"]

    # A sale at S2 puts the member into S2's slice; a tag from S2 reaches S1 too.
    s2_cursor = (await _all_changes(s2))["cursor"]
    assert (await s2.send_events([sale_event("S2", 1, member="M1")])).status == 200
    tag = {"member_id": "M1", "ops": [{"op_id": uuid7(), "op": "add", "tag": "runner",
                                       "at": "2026-11-28T10:00:00Z"}]}  # fmt: skip
    stored = await s2.send_events([envelope("S2", 2, "member.tags", tag)])
    assert stored.json()["rejected"] == []
    s2_new = (await _all_changes(s2, s2_cursor))["changes"]
    assert [(c["id"], c["data"]["tags"]) for c in s2_new] == [("M1", ["runner"])]
    s1_new = (await _all_changes(s1, first["cursor"]))["changes"]
    assert [(c["id"], c["data"]["tags"]) for c in s1_new] == [("M1", ["runner"])]

    # Erased at HQ: a tombstone for both stores, nothing for S3.
    s3_cursor = (await _all_changes(s3))["cursor"]
    await _send(cloud, "DELETE", "/v1/members/M1", hq)
    for store in (s1, s2):
        last = (await _all_changes(store, first["cursor"]))["changes"][-1]
        assert (last["id"], last["op"], last["data"]) == ("M1", "delete", None)
    assert (await _all_changes(s3, s3_cursor))["changes"] == []


async def test_change_feed_refuses_bad_queries_and_other_stores(cloud: Cloud) -> None:
    s1 = await cloud.enroll("S1")
    for query in ("since=-1", "since=x", "limit=0", "limit=1.5"):
        answer = await s1.request("GET", f"/v1/stores/S1/changes?{query}")
        assert answer.status == 400, query
        assert answer.json()["error"] == "bad_query"
    capped = await s1.request("GET", "/v1/stores/S1/changes?limit=100000")
    assert capped.status == 200
    await cloud.enroll("S2")
    assert (await s1.request("GET", "/v1/stores/S2/changes", keyid="S1")).status == 403
    assert (await cloud.get("/v1/stores/S1/changes")).status == 401
