"""Receipt rendering: golden ESC/POS bytes, QR codes that scan, CJK text, copies, layout width.

Golden files live in tests/agent/golden; `UPDATE_GOLDEN=1 pytest tests/agent/test_receipt.py`
rewrites them. The TM-T88V file holds Chinese lines drawn with WenQuanYi Micro Hei by Pillow's
FreeType, so a new Pillow or font package can change it: look at the job, then regenerate.
"""

import dataclasses
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from escpos.capabilities import CAPABILITIES

from agent.qrtoken import issue_token
from agent.receipt import (
    COPY_BANNER,
    QR_CAPTION,
    PaperProfile,
    QrRow,
    Receipt,
    ReceiptLine,
    ReceiptPayment,
    TextRow,
    find_cjk_font,
    paper_profile,
    qr_size,
    receipt_layout,
    render_receipt,
    render_test_page,
)
from agent.receipt_text import TextGrid, clean_text, format_amount, mask_id
from config.receipt_token import ReceiptClaims, receipt_url

GOLDEN = Path(__file__).parent / "golden"
WQY = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CLAIMS = ReceiptClaims("S001", 123456, 1767234600, 69201, "CNY", "A07")
URL = receipt_url("http://127.0.0.1:8080", issue_token(CLAIMS, KEY))

RECEIPT = Receipt(
    store_name="Trail Store 旗舰店",
    store_id="S001",
    address_lines=("88 Nanjing Road", "上海市黄浦区"),
    receipt_no="S001-123456",
    occurred_at=datetime(2026, 1, 1, 2, 30, tzinfo=UTC),
    register_id="R1",
    staff_id="A07",
    member_id="M0012345678",
    lines=(
        ReceiptLine("Trail jacket 冲锋衣", 1, 59901, 0, None, "06901234567892"),
        ReceiptLine("Merino hiking socks, cushioned, crew length", 2, 4900, 500, "SOCK-M", None),
    ),
    payments=(ReceiptPayment("card", 60000), ReceiptPayment("cash", 10000)),
    total=69201,
    currency="CNY",
    qr_url=URL,
    offer="10% off your next visit 下次购物9折",
    footer="Thank you! 谢谢惠顾",
    tz="Asia/Shanghai",
)

ODD = dataclasses.replace(
    RECEIPT,
    store_name="\x1b@Evil\x1dV\x00 store 🏔️ with a very long name",
    address_lines=("tab\there\r\nnewline", "\u202eright-to-left override", ""),
    staff_id="A07\x07",
    member_id="12",
    lines=(
        ReceiptLine("超长商品名称没有空格" * 6, 3, 123456789, 0, None, None),
        ReceiptLine("Cafe\u0301 crème brûlée ✓ 👟👟 Ω", 1, 1, 1, None, None),
        ReceiptLine("x" * 100, 99, 10**12, 0, None, None),
        ReceiptLine("", 1, 0, 0, None, None),
    ),
    payments=(ReceiptPayment("支付宝 Alipay with a very very long method name", 10**13),),
    total=10**13,
    offer="\x00" * 5,
    # middle dot, multiplication sign, em dash, e acute, euro, full-width "full"
    footer="\u00b7\u00d7\u2014\u00e9\u20ac 中文 \uff46\uff55\uff4c\uff4c 한국어 日本語",
)


@pytest.fixture(scope="module")
def wqy() -> Path:
    assert WQY.is_file(), "WenQuanYi Micro Hei is missing: scripts/test installs it"
    return WQY


def assert_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return
    expected = path.read_bytes()
    if data != expected:
        at = next(
            (i for i, (a, b) in enumerate(zip(data, expected, strict=False)) if a != b),
            min(len(data), len(expected)),
        )
        pytest.fail(
            f"{name} differs from the golden file at byte {at} ({len(data)} vs {len(expected)}"
            f" bytes): {data[max(0, at - 16) : at + 16]!r}; UPDATE_GOLDEN=1 rewrites it"
        )


def split_job(data: bytes) -> tuple[bytes, list[np.ndarray]]:
    """The job's bytes without raster image data, and each GS v 0 image (0 ink, 255 paper)."""
    rest, images = bytearray(), []
    pos = 0
    while (start := data.find(b"\x1dv0", pos)) >= 0:
        width_bytes = int.from_bytes(data[start + 4 : start + 6], "little")
        height = int.from_bytes(data[start + 6 : start + 8], "little")
        end = start + 8 + width_bytes * height
        rows = np.frombuffer(data[start + 8 : end], np.uint8).reshape(height, width_bytes)
        images.append(((1 - np.unpackbits(rows, axis=1)) * 255).astype(np.uint8))
        rest += data[pos:start]
        pos = end
    return bytes(rest + data[pos:]), images


def native_qr(data: bytes) -> list[tuple[int, bytes]]:
    """(cn, fn) and parameters of each GS ( k command outside image data."""
    text, _ = split_job(data)
    found = []
    pos = 0
    while (start := text.find(b"\x1d(k", pos)) >= 0:
        length = int.from_bytes(text[start + 3 : start + 5], "little")
        body = text[start + 5 : start + 5 + length]
        found.append((body[1], body[2:]))
        pos = start + 5 + length
    return found


def scan(image: np.ndarray) -> str:
    bordered = cv2.copyMakeBorder(image, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=255)
    value, _, _ = cv2.QRCodeDetector().detectAndDecode(bordered)
    return str(value)


def test_golden_tm_t88v(wqy: Path) -> None:
    assert_golden(
        "receipt-tm-t88v.bin", render_receipt(RECEIPT, paper_profile("TM-T88V"), cjk_font=wqy)
    )


def test_golden_pos_5890() -> None:
    # GB18030 printers get every line as text: no font involved.
    assert_golden("receipt-pos-5890.bin", render_receipt(RECEIPT, paper_profile("POS-5890")))


def test_native_qr_carries_the_url() -> None:
    profile = paper_profile("TM-T88V")
    data = render_receipt(RECEIPT, profile)
    commands = dict(native_qr(data))
    assert commands[80] == b"0" + URL.encode()  # fn 80: store the data
    assert commands[69] == b"1"  # error correction M
    size = qr_size(URL, profile)
    assert commands[67] == bytes([size.module_dots])
    assert size.module_dots >= 4
    assert size.modules * size.module_dots / profile.dpi * 25.4 >= 25
    # python-escpos cannot centre native QR codes, so the renderer selects ESC a 1 itself.
    assert b"\x1ba\x01\x1d(k" in data


@pytest.mark.parametrize(
    "profile",
    [
        paper_profile("POS-5890"),
        paper_profile("TM-T88V", native_qr=False),
        paper_profile("ZJ-5870"),
    ],
    ids=lambda p: p.escpos_profile,
)
def test_image_qr_scans(profile: PaperProfile) -> None:
    data = render_receipt(RECEIPT, profile)
    assert not native_qr(data)
    _, images = split_job(data)
    assert URL in [scan(image) for image in images]
    size = qr_size(URL, profile)
    assert size.module_dots >= 4
    assert (size.modules + 8) * size.module_dots <= profile.width_px


def test_qr_caption_under_the_code() -> None:
    profile = paper_profile("POS-5890")
    rows = receipt_layout(RECEIPT, profile)
    at = next(i for i, row in enumerate(rows) if isinstance(row, QrRow))
    caption = [row.text.strip() for row in rows[at + 1 : at + 3] if isinstance(row, TextRow)]
    assert " ".join(caption) == QR_CAPTION
    wide = receipt_layout(RECEIPT, dataclasses.replace(profile, columns=48))
    assert TextRow(" " * 2 + QR_CAPTION) in wide


def test_cjk_becomes_raster_without_gb18030(wqy: Path) -> None:
    data = render_receipt(RECEIPT, paper_profile("TM-T88V"), cjk_font=wqy)
    text, images = split_job(data)
    assert b"?" not in text
    assert "冲锋衣".encode("gb18030") not in text
    assert b"Trail jacket" not in text  # the whole line went to the image
    chinese_rows = [
        row
        for row in receipt_layout(RECEIPT, paper_profile("TM-T88V"))
        if isinstance(row, TextRow) and not row.text.isascii()
    ]
    assert len(images) == len(chinese_rows)
    # Every raster line has ink, and sits on the font-A grid: 30 dots a line, 12 a column.
    for image, row in zip(images, chinese_rows, strict=True):
        assert image.shape[0] == 30 * row.high
        assert (image == 0).any()


def test_cjk_as_gb18030_on_chinese_printers() -> None:
    data = render_receipt(RECEIPT, paper_profile("POS-5890"))
    assert b"\x1c&Trail jacket " + "冲锋衣".encode("gb18030") + b"\x1c.\n" in data
    _, images = split_job(data)
    assert len(images) == 1  # the QR code only


def test_accented_latin_prints_from_a_code_page() -> None:
    receipt = dataclasses.replace(
        RECEIPT, lines=(ReceiptLine("Crème brûlée", 1, 100, 0, None, None),)
    )
    text, _ = split_job(render_receipt(receipt, paper_profile("TM-T88V")))
    assert b"\n" + "Crème brûlée".encode("cp437") + b"\n" in text


def test_missing_font_prints_question_marks(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        data = render_receipt(RECEIPT, paper_profile("TM-T88V"), cjk_font=Path("/nonexistent.ttc"))
    text, images = split_job(data)
    assert b"Trail jacket ???\n" in text
    assert not images
    assert "cannot load CJK font" in caplog.text


def test_find_cjk_font() -> None:
    found = find_cjk_font()
    assert found is None or found.is_file()


@pytest.mark.parametrize("profile", ["TM-T88V", "POS-5890"])
def test_copy_banner_only_on_copies(profile: str) -> None:
    original = render_receipt(RECEIPT, paper_profile(profile))
    copy = render_receipt(RECEIPT, paper_profile(profile), copy=True)
    assert COPY_BANNER.encode() not in original
    assert copy.count(COPY_BANNER.encode()) == 2
    rows = receipt_layout(RECEIPT, paper_profile(profile), copy=True)
    first = rows[0]
    assert isinstance(first, TextRow)
    assert first.text.strip() == COPY_BANNER
    texts = [row.text for row in rows if isinstance(row, TextRow)]
    total_at = next(i for i, text in enumerate(texts) if text.startswith("TOTAL CNY"))
    assert texts[total_at + 1].strip() == COPY_BANNER


def test_store_local_time_and_amounts() -> None:
    rows = [
        row.text
        for row in receipt_layout(RECEIPT, paper_profile("TM-T88V"))
        if isinstance(row, TextRow)
    ]
    assert "Date                   2026-01-01 10:30:00" in rows
    assert "TOTAL CNY                           692.01" in rows
    assert "  Discount                           -5.00" in rows
    assert "Change                                7.99" in rows
    assert "Member                            ****5678" in rows


@pytest.mark.parametrize("name", sorted(CAPABILITIES["profiles"]))
@pytest.mark.parametrize("receipt", [RECEIPT, ODD], ids=["typical", "odd"])
def test_rows_fit_every_profile(name: str, receipt: Receipt) -> None:
    profile = paper_profile(name)
    for copy in (False, True):
        for row in receipt_layout(receipt, profile, copy=copy):
            if isinstance(row, TextRow):
                grid = TextGrid(profile.columns, profile.gb18030)
                assert grid.width(row.text) * row.wide <= profile.columns, row
                assert row.text == clean_text(row.text)
        assert render_receipt(receipt, profile, copy=copy).startswith(b"\x1b@")


def test_odd_text_cannot_inject_commands(wqy: Path) -> None:
    for profile in (paper_profile("TM-T88V"), paper_profile("POS-5890")):
        text, _ = split_job(render_receipt(ODD, profile, cjk_font=wqy))
        assert b"\x1b@" not in text[2:]
        assert b"\x07" not in text
        assert text.count(b"\x1dV") == (1 if profile.escpos_profile == "TM-T88V" else 0)


def test_paper_profiles() -> None:
    assert paper_profile("TM-T88V") == PaperProfile("TM-T88V", 512, 42, True, False, 80, 180)
    assert paper_profile("POS-5890") == PaperProfile("POS-5890", 384, 32, False, True, 58, 203)
    assert paper_profile("ZJ-5870").paper_mm == 58
    assert paper_profile("Sunmi-V2").gb18030
    unknown_width = paper_profile("RP326")
    assert (unknown_width.width_px, unknown_width.paper_mm) == (576, 80)
    overridden = paper_profile("TM-T88V", gb18030=True, native_qr=False)
    assert overridden.gb18030
    assert not overridden.native_qr
    with pytest.raises(ValueError, match="TM-T88V"):
        paper_profile("TM-T99")


def test_unknown_width_profile_renders_without_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    data = render_receipt(RECEIPT, paper_profile("RP326", native_qr=False))
    assert capsys.readouterr().out == ""
    _, images = split_job(data)
    assert URL in [scan(image) for image in images]


def test_receipt_needs_aware_time_and_known_zone() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        dataclasses.replace(RECEIPT, occurred_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="Mars/Olympus"):
        dataclasses.replace(RECEIPT, tz="Mars/Olympus")


def test_test_page(wqy: Path) -> None:
    now = datetime(2026, 1, 1, 2, 30, tzinfo=UTC)
    chinese = render_test_page("Trail Store", "front", paper_profile("POS-5890"), URL, now)
    assert b"storelink print test" in chinese
    assert b"POS-5890" in chinese
    assert "\x1c&中文测试 GB18030\x1c.".encode("gb18030") in chinese
    epson = render_test_page("Trail Store", "front", paper_profile("TM-T88V"), URL, now, wqy)
    text, images = split_job(epson)
    assert b"front" in text
    assert b"512 dots" in text
    assert len(images) == 1  # the Chinese sample line
    assert dict(native_qr(epson))[80] == b"0" + URL.encode()
    assert text.endswith(b"\x1dV\x00")


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (59901, "CNY", "599.01"),
        (5, "USD", "0.05"),
        (0, "EUR", "0.00"),
        (-500, "CNY", "-5.00"),
        (1200, "JPY", "1200"),
        (1200, "KRW", "1200"),
        (1234, "KWD", "1.234"),
        (1005, "BHD", "1.005"),
    ],
)
def test_format_amount(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


def test_text_helpers() -> None:
    assert mask_id("M0012345678") == "****5678"
    assert mask_id("1234") == "****"
    assert clean_text("a\tb\x1b@c\u200bd e\u0301") == "a b@cd é"
    grid = TextGrid(10)
    assert grid.width("冲锋衣 ab") == 9
    assert grid.wrap("冲锋衣冲锋衣冲锋衣") == ["冲锋衣冲锋", "衣冲锋衣"]
    assert grid.split("Total", "1.00") == ["Total 1.00"]
    assert grid.split("Total due", "100.00") == ["Total due", "    100.00"]
    assert TextGrid(10, gb18030=True).width("é·") == 4
