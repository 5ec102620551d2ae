"""Receipt offers: targeting by segment, priority, and never clearance for high-value members."""

import itertools

import pytest

from agent.offers import Offer, choose_offer

SEGMENTS = {"vip": True, "loyal": True, "new": False, "lapsed": False}

EVERYONE = Offer("o-all", "10% off socks", frozenset(), clearance=False, priority=1)
CLEARANCE_ALL = Offer("o-clear", "Clearance: 70% off", frozenset(), clearance=True, priority=50)
CLEARANCE_LAPSED = Offer(
    "o-clear-lapsed", "Come back: clearance", frozenset({"lapsed"}), clearance=True, priority=90
)
VIP = Offer("o-vip", "Private preview", frozenset({"vip"}), clearance=False, priority=10)
NEW = Offer("o-new", "Welcome gift", frozenset({"new"}), clearance=False, priority=20)
ALL = [EVERYONE, CLEARANCE_ALL, CLEARANCE_LAPSED, VIP, NEW]


def test_targeted_offers_need_a_shared_segment() -> None:
    assert choose_offer(["new"], SEGMENTS, [VIP, NEW]) == NEW
    assert choose_offer(["vip"], SEGMENTS, [VIP, NEW]) == VIP
    assert choose_offer(["lapsed"], SEGMENTS, [VIP, NEW]) is None


def test_highest_priority_first_ties_by_id() -> None:
    assert choose_offer(["new", "lapsed"], SEGMENTS, ALL) == CLEARANCE_LAPSED
    twin = Offer("o-aaa", "Same priority", frozenset(), clearance=False, priority=20)
    assert choose_offer(["new"], SEGMENTS, [NEW, twin]) == twin


def test_offers_for_everyone_reach_members_without_segments() -> None:
    assert choose_offer([], SEGMENTS, [EVERYONE, VIP]) == EVERYONE
    assert choose_offer([], SEGMENTS, ALL) == CLEARANCE_ALL


def test_inactive_offers_are_skipped() -> None:
    off = Offer("o-off", "Gone", frozenset(), clearance=False, priority=99, active=False)
    assert choose_offer([], SEGMENTS, [off, EVERYONE]) == EVERYONE


@pytest.mark.parametrize("member", [["vip"], ["loyal"], ["vip", "lapsed"], ["new", "loyal"]])
def test_a_high_value_member_never_gets_clearance(member: list[str]) -> None:
    for size in range(len(ALL) + 1):
        for offers in itertools.combinations(ALL, size):
            chosen = choose_offer(member, SEGMENTS, offers)
            assert chosen is None or not chosen.clearance


def test_an_unknown_segment_counts_as_high_value() -> None:
    # The member's segment has not reached the replica yet: err on the safe side.
    assert choose_offer(["arrives-later"], SEGMENTS, [CLEARANCE_ALL, EVERYONE]) == EVERYONE
    assert choose_offer(["lapsed"], SEGMENTS, [CLEARANCE_ALL, EVERYONE]) == CLEARANCE_ALL
