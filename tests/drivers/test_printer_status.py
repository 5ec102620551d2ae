"""Decoding the DLE EOT 1..4 status bytes, golden values from the TM-T88 bit tables."""

import itertools

import pytest

from drivers.printer import PrinterError, PrinterStatus, parse_status
from drivers.printer.status import encode_status


@pytest.mark.parametrize(
    ("answers", "status", "ready", "described"),
    [
        ((0x12, 0x12, 0x12, 0x12), PrinterStatus(online=True), True, "online"),
        (
            (0x12, 0x12, 0x12, 0x1E),
            PrinterStatus(online=True, paper_near_end=True),
            True,
            "paper near end",
        ),
        (
            (0x1A, 0x32, 0x12, 0x7E),
            PrinterStatus(online=False, paper_out=True, paper_near_end=True),
            False,
            "paper out",
        ),
        (
            (0x1A, 0x16, 0x12, 0x12),
            PrinterStatus(online=False, cover_open=True),
            False,
            "cover open",
        ),
        ((0x1A, 0x52, 0x1A, 0x12), PrinterStatus(online=False, error=True), False, "error"),
        ((0x1A, 0x12, 0x12, 0x12), PrinterStatus(online=False), False, "offline"),
        (
            (0x1A, 0x16, 0x12, 0x1E),
            PrinterStatus(online=False, cover_open=True, paper_near_end=True),
            False,
            "cover open, paper near end",
        ),
        # The drawer pin (n=1 bit 2) and FEED button (n=1 bit 6) do not affect printing.
        ((0x56, 0x12, 0x12, 0x12), PrinterStatus(online=True), True, "online"),
    ],
)
def test_status_bytes_decode(
    answers: tuple[int, int, int, int], status: PrinterStatus, ready: bool, described: str
) -> None:
    decoded = parse_status(*answers)
    assert decoded == status
    assert decoded.ready is ready
    assert decoded.describe() == described


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ((0x00, 0x12, 0x12, 0x12), "garbled answer to status query DLE EOT 1: 0x00"),
        ((0x12, 0x13, 0x12, 0x12), "garbled answer to status query DLE EOT 2: 0x13"),
        ((0x12, 0x12, 0x92, 0x12), "garbled answer to status query DLE EOT 3: 0x92"),
        ((0x12, 0x12, 0x12, 0x02), "garbled answer to status query DLE EOT 4: 0x02"),
    ],
)
def test_garbage_is_rejected(answers: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(PrinterError) as caught:
        parse_status(*answers)
    assert str(caught.value) == (
        f"{message} (a status byte has bits 1 and 4 set and bits 0 and 7 clear)"
    )


def test_encode_paper_out_matches_the_golden_bytes() -> None:
    status = PrinterStatus(online=False, paper_out=True, paper_near_end=True)
    assert encode_status(status) == {1: 0x1A, 2: 0x32, 3: 0x12, 4: 0x7E}


def test_every_status_survives_encode_then_parse() -> None:
    for flags in itertools.product((False, True), repeat=5):
        status = PrinterStatus(*flags)
        answers = encode_status(status)
        assert parse_status(answers[1], answers[2], answers[3], answers[4]) == status
