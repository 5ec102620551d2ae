"""POS sale validation: strict types, amounts that add up, messages naming the field."""

from typing import Any

import pytest

from agent.sale import InvalidSale, gtin_check_digit_ok, parse_sale
from tests.helpers import make_sale


def problems(body: Any) -> dict[str, str]:
    with pytest.raises(InvalidSale) as info:
        parse_sale(body)
    return {p.field: p.message for p in info.value.problems}


def test_valid_sale() -> None:
    sale = parse_sale(make_sale())
    assert sale.total == sum(line.amount for line in sale.lines)
    assert sale.occurred_at.utcoffset() is not None


def test_gtin_check_digit() -> None:
    assert gtin_check_digit_ok("06901234567892")
    assert gtin_check_digit_ok("4006381333931")
    assert not gtin_check_digit_ok("4006381333932")


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("total",), "59901", "total"),
        (("total",), 599.01, "total"),
        (("total",), True, "total"),
        (("lines", 0, "qty"), 0, "lines[0].qty"),
        (("lines", 0, "unit_price"), -1, "lines[0].unit_price"),
        (("lines", 0, "gtin"), "06901234567891", "lines[0].gtin"),
        (("currency",), "cny", "currency"),
        (("occurred_at",), "2026-11-28T10:00:00", "occurred_at"),
        (("occurred_at",), 1764324000, "occurred_at"),
        (("sale_id",), "not-a-uuid", "sale_id"),
        (("payments", 0, "amount"), "x", "payments[0].amount"),
        (("lines", 0, "colour"), "red", "lines[0].colour"),
    ],
)
def test_bad_field_is_named(path: tuple[Any, ...], value: Any, field: str) -> None:
    body = make_sale()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert field in problems(body)


def test_missing_fields_are_named() -> None:
    body = make_sale()
    del body["register_id"], body["lines"][1]["name"]
    found = problems(body)
    assert found["register_id"] == "missing"
    assert found["lines[1].name"] == "missing"


def test_totals_must_add_up() -> None:
    body = make_sale()
    body["total"] += 1
    found = problems(body)
    assert "lines add up to" in found["total"]
    body = make_sale()
    body["payments"][0]["amount"] -= 1
    assert "payments" in problems(body)


def test_line_needs_an_identifier_and_sane_discount() -> None:
    body = make_sale()
    del body["lines"][0]["gtin"]
    assert "gtin or a sku" in problems(body)["lines[0]"]
    body = make_sale()
    body["lines"][1]["discount"] = 10_001
    assert "exceeds" in problems(body)["lines[1]"]


def test_not_an_object() -> None:
    assert "(top level)" in problems([1, 2, 3])
