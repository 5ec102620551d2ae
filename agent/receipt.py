"""Receipts as ESC/POS bytes: the sale's printable form, paper profiles, layout and rendering.

No printer I/O here (drivers/ moves the bytes), but rendering reads a CJK font file when a
line needs one: call render_receipt through asyncio.to_thread from the event loop.
"""

import dataclasses
import logging
import math
from copy import deepcopy
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import qrcode
from escpos.capabilities import CAPABILITIES, Profile
from escpos.constants import QR_ECLEVEL_M
from escpos.printer import Dummy
from PIL import Image, ImageDraw, ImageFont

from agent.receipt_text import TextGrid, clean_text, format_amount, is_gb_double_byte, mask_id

logger = logging.getLogger(__name__)

QR_CAPTION = "Scan for your e-receipt - valid for returns"
COPY_BANNER = "** COPY **"

# python-escpos's capability data has no GB18030 code page; these printers' firmware prints
# GB18030 in Chinese (FS &) mode out of the box. Epson's export TM-T88V does not.
GB18030_PROFILES = frozenset({"POS-5890", "ZJ-5870", "NT-5890K", "Sunmi-V2"})

CJK_FONT_PATHS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
)

_FONT_A_DOTS = (12, 24)  # width, height of a font A cell
_LINE_DOTS = 30  # default line pitch, so raster text lines sit like printed ones
_QR_MIN_MM = 25
_QR_MIN_MODULE_DOTS = 4
_QR_QUIET_MODULES = 4
_CHINESE_ON = b"\x1c&"  # FS &
_CHINESE_OFF = b"\x1c."  # FS .


@dataclasses.dataclass(frozen=True)
class ReceiptLine:
    """One sold item as printed."""

    name: str
    qty: int
    unit_price: int
    discount: int
    sku: str | None
    gtin: str | None


@dataclasses.dataclass(frozen=True)
class ReceiptPayment:
    """One tender as printed."""

    method: str
    amount: int


@dataclasses.dataclass(frozen=True)
class Receipt:
    """Everything a printed receipt shows; money in minor units of `currency`."""

    store_name: str
    store_id: str
    address_lines: tuple[str, ...]
    receipt_no: str
    occurred_at: datetime
    register_id: str
    staff_id: str | None
    member_id: str | None
    lines: tuple[ReceiptLine, ...]
    payments: tuple[ReceiptPayment, ...]
    total: int
    currency: str
    qr_url: str
    offer: str | None = None
    footer: str | None = None
    tz: str = "UTC"  # IANA name of the store's time zone, used for the printed time

    def __post_init__(self) -> None:
        if self.occurred_at.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {self.tz!r}") from err


@dataclasses.dataclass(frozen=True)
class PaperProfile:
    """What layout needs to know about a printer model and its paper."""

    escpos_profile: str
    width_px: int
    columns: int  # font A half-width columns
    native_qr: bool
    gb18030: bool
    paper_mm: int  # 58 or 80
    dpi: int = 203


@dataclasses.dataclass(frozen=True)
class TextRow:
    """One printed line, already laid out to fit `columns // wide` columns."""

    text: str
    bold: bool = False
    wide: int = 1  # character width multiplier
    high: int = 1  # character height multiplier


@dataclasses.dataclass(frozen=True)
class QrRow:
    """A centred QR code."""

    url: str


Row = TextRow | QrRow


@dataclasses.dataclass(frozen=True)
class QrSize:
    """How big a QR code prints: symbol version, modules per side and dots per module."""

    version: int
    modules: int
    module_dots: int


def paper_profile(
    name: str, gb18030: bool | None = None, native_qr: bool | None = None
) -> PaperProfile:
    """Build a PaperProfile from python-escpos's capability data for the named model."""
    profiles: dict[str, Any] = CAPABILITIES["profiles"]
    if name not in profiles:
        raise ValueError(f"unknown printer profile {name!r}; known: {', '.join(sorted(profiles))}")
    data = profiles[name]
    media = data.get("media", {})
    width = media.get("width", {})
    pixels, mm = width.get("pixels"), width.get("mm")
    if isinstance(pixels, int):
        width_px = pixels
        # Capability data gives the printable width (48-57.5 mm on 58 mm paper, 64-80 on 80).
        narrow = mm < 60 if isinstance(mm, int | float) else pixels <= 432
        paper_mm = 58 if narrow else 80
    else:
        width_px, paper_mm = 576, 80
    dpi = media.get("dpi")
    return PaperProfile(
        escpos_profile=name,
        width_px=width_px,
        # Some entries claim more columns than their dots hold; never lay out wider than paper.
        columns=min(data["fonts"]["0"]["columns"], width_px // _FONT_A_DOTS[0]),
        native_qr=bool(data["features"].get("qrCode")) if native_qr is None else native_qr,
        gb18030=name in GB18030_PROFILES if gb18030 is None else gb18030,
        paper_mm=paper_mm,
        dpi=dpi if isinstance(dpi, int) else 203,
    )


def find_cjk_font() -> Path | None:
    """The first installed well-known CJK font, or None."""
    return next((path for path in CJK_FONT_PATHS if path.is_file()), None)


def qr_size(url: str, profile: PaperProfile) -> QrSize:
    """Module size giving a symbol at least ~25 mm wide that still fits the paper."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(url)
    # best_fit only counts bits; make() would also build and mask the whole symbol.
    version = code.best_fit()
    modules = 4 * version + 17
    wanted = math.ceil(_QR_MIN_MM / 25.4 * profile.dpi / modules)
    fits = profile.width_px // (modules + 2 * _QR_QUIET_MODULES)
    # ESC/POS allows 1-16 dots per module.
    dots = max(1, min(max(wanted, _QR_MIN_MODULE_DOTS), fits, 16))
    return QrSize(version=version, modules=modules, module_dots=dots)


def receipt_layout(receipt: Receipt, profile: PaperProfile, *, copy: bool = False) -> list[Row]:
    """Lay a receipt out as rows that fit the profile's columns."""
    grid = TextGrid(profile.columns, profile.gb18030)
    big = TextGrid(profile.columns // 2, profile.gb18030)
    rule = TextRow("-" * grid.columns)
    # A reprint says so first thing and again by the total, where a return desk looks.
    banner = _heading(big, COPY_BANNER) if copy else []
    total_banner = [TextRow(grid.center(line), bold=True) for line in grid.wrap(COPY_BANNER)]
    return [
        *banner,
        *_header(receipt, grid, big),
        rule,
        *_items(receipt, grid),
        rule,
        *_totals(receipt, grid),
        *(total_banner if copy else []),
        rule,
        *_closing(receipt, grid),
    ]


def _header(receipt: Receipt, grid: TextGrid, big: TextGrid) -> list[Row]:
    rows: list[Row] = [*_heading(big, clean_text(receipt.store_name))]
    for address in receipt.address_lines:
        rows += _centred(grid, address)
    local_time = receipt.occurred_at.astimezone(ZoneInfo(receipt.tz))
    rows.append(TextRow("-" * grid.columns))
    rows += _pairs(grid, "Receipt", receipt.receipt_no)
    rows += _pairs(grid, "Date", f"{local_time:%Y-%m-%d %H:%M:%S}")
    rows += _pairs(grid, "Store", receipt.store_id)
    rows += _pairs(grid, "Register", receipt.register_id)
    if receipt.staff_id:
        rows += _pairs(grid, "Associate", receipt.staff_id)
    return rows


def _items(receipt: Receipt, grid: TextGrid) -> list[Row]:
    money = receipt.currency
    rows: list[Row] = []
    for line in receipt.lines:
        rows += [TextRow(text) for text in grid.wrap(clean_text(line.name))]
        qty = f"  {line.qty} x {format_amount(line.unit_price, money)}"
        rows += _pairs(grid, qty, format_amount(line.qty * line.unit_price, money))
        if line.discount:
            rows += _pairs(grid, "  Discount", format_amount(-line.discount, money))
    return rows


def _totals(receipt: Receipt, grid: TextGrid) -> list[Row]:
    money = receipt.currency
    subtotal = sum(line.qty * line.unit_price for line in receipt.lines)
    discount = sum(line.discount for line in receipt.lines)
    rows: list[Row] = [*_pairs(grid, "Subtotal", format_amount(subtotal, money))]
    if discount:
        rows += _pairs(grid, "Discount", format_amount(-discount, money))
    total = grid.split(f"TOTAL {money}", format_amount(receipt.total, money))
    return rows + [TextRow(text, bold=True, high=2) for text in total]


def _closing(receipt: Receipt, grid: TextGrid) -> list[Row]:
    money = receipt.currency
    rows: list[Row] = []
    for payment in receipt.payments:
        rows += _pairs(grid, payment.method, format_amount(payment.amount, money))
    paid = sum(payment.amount for payment in receipt.payments)
    if paid > receipt.total:
        rows += _pairs(grid, "Change", format_amount(paid - receipt.total, money))
    if receipt.member_id:
        rows += _pairs(grid, "Member", mask_id(clean_text(receipt.member_id)))
    if receipt.offer:
        rows.append(TextRow(""))
        rows += [dataclasses.replace(row, bold=True) for row in _centred(grid, receipt.offer)]
    rows.append(QrRow(receipt.qr_url))
    rows += [TextRow(grid.center(line)) for line in _caption(grid)]
    if receipt.footer:
        rows.append(TextRow(""))
        rows += _centred(grid, receipt.footer)
    return rows


def print_test_layout(
    store_name: str, printer_name: str, profile: PaperProfile, qr_url: str, now: datetime
) -> list[Row]:
    """Lay out the page `print-test` prints: what the agent believes about this printer."""
    grid = TextGrid(profile.columns, profile.gb18030)
    rows: list[Row] = [
        TextRow(grid.center(line), bold=True, high=2) for line in grid.wrap("storelink print test")
    ]
    rows += _centred(grid, store_name)
    rows.append(TextRow("-" * grid.columns))
    rows += _pairs(grid, "Printer", printer_name)
    rows += _pairs(grid, "Profile", profile.escpos_profile)
    rows += _pairs(grid, "Paper", f"{profile.paper_mm} mm, {profile.width_px} dots")
    rows += _pairs(grid, "Columns", str(profile.columns))
    rows += _pairs(grid, "QR code", "printer (GS ( k)" if profile.native_qr else "raster image")
    rows += _pairs(grid, "Chinese", "GB18030 (FS &)" if profile.gb18030 else "raster image")
    rows += _pairs(grid, "Time", f"{now:%Y-%m-%d %H:%M:%S %Z}")
    # A full-width ruler shows at a glance whether the column count is right.
    rows.append(TextRow(("1234567890" * grid.columns)[: grid.columns]))
    rows.append(TextRow("中文测试 GB18030"))
    rows.append(QrRow(qr_url))
    return rows


def render_receipt(
    receipt: Receipt, profile: PaperProfile, *, copy: bool = False, cjk_font: Path | None = None
) -> bytes:
    """Render a receipt to the ESC/POS bytes of one print job (ending in feed and cut)."""
    return _Writer(profile, cjk_font).render(receipt_layout(receipt, profile, copy=copy))


def render_test_page(
    store_name: str,
    printer_name: str,
    profile: PaperProfile,
    qr_url: str,
    now: datetime,
    cjk_font: Path | None = None,
) -> bytes:
    """Render the printer test page to ESC/POS bytes."""
    rows = print_test_layout(store_name, printer_name, profile, qr_url, now)
    return _Writer(profile, cjk_font).render(rows)


def _centred(grid: TextGrid, text: str) -> list[TextRow]:
    return [TextRow(grid.center(line)) for line in grid.wrap(clean_text(text))]


def _heading(big: TextGrid, text: str) -> list[TextRow]:
    return [TextRow(big.center(line), bold=True, wide=2, high=2) for line in big.wrap(text)]


def _pairs(grid: TextGrid, label: str, value: str) -> list[TextRow]:
    return [TextRow(text) for text in grid.split(clean_text(label), clean_text(value))]


def _caption(grid: TextGrid) -> list[str]:
    if grid.width(QR_CAPTION) <= grid.columns:
        return [QR_CAPTION]
    # Break where the sentence does rather than wherever the words run out.
    head, tail = QR_CAPTION.split(" - ")
    return [*grid.wrap(f"{head} -"), *grid.wrap(tail)]


def _escpos_printer(profile: PaperProfile) -> Dummy:
    # image() centres on, and checks against, the width in the escpos profile data, which is
    # "Unknown" for some models (it then prints a notice to stdout). Give it a private copy
    # that carries our width instead of changing the shared capability data.
    escpos_profile = Profile()
    data = deepcopy(CAPABILITIES["profiles"][profile.escpos_profile])
    data.setdefault("media", {}).setdefault("width", {})["pixels"] = profile.width_px
    escpos_profile.profile_data = data
    escpos_profile.features = data["features"]
    return Dummy(profile=escpos_profile)


class _Writer:
    """Prints rows through python-escpos, choosing per line how its characters can print."""

    def __init__(self, profile: PaperProfile, cjk_font: Path | None) -> None:
        self.profile = profile
        self.grid = TextGrid(profile.columns, profile.gb18030)
        self.printer = _escpos_printer(profile)
        self.cjk_font = cjk_font
        self.encoder = self.printer.magic.encoder
        self.bold = False
        self.size = (1, 1)

    def render(self, rows: list[Row]) -> bytes:
        self.printer.hw("INIT")
        if self.profile.gb18030:
            # These printers start in Chinese mode, where bytes >= 0x80 are not code page text.
            self.printer._raw(_CHINESE_OFF)
        for row in rows:
            if isinstance(row, QrRow):
                self._qr(row.url)
            else:
                self._text(row)
        self._style(bold=False, wide=1, high=1)
        self.printer.cut()
        output: bytes = self.printer.output
        return output

    def _style(self, *, bold: bool, wide: int, high: int) -> None:
        if (wide, high) != self.size:
            # GS ! sizes Chinese characters too; ESC ! only sizes the alphanumeric font.
            self.printer.set(custom_size=True, width=wide, height=high)
            self.size = (wide, high)
        if bold != self.bold:
            self.printer.set(bold=bold)
            self.bold = bold

    def _text(self, row: TextRow) -> None:
        self._style(bold=row.bold, wide=row.wide, high=row.high)
        text = row.text
        if not all(self._printable(char) for char in text):
            image = self._raster(row)
            if image is not None:
                self.printer.image(image, impl="bitImageRaster")
                return
            text = "".join(char if self._printable(char) else "?" for char in text)
        if self.profile.gb18030 and not text.isascii():
            self.printer._raw(_CHINESE_ON + text.encode("gb18030") + _CHINESE_OFF + b"\n")
        else:
            self.printer.text(text + "\n")

    def _printable(self, char: str) -> bool:
        if " " <= char <= "~":
            return True
        if self.profile.gb18030:
            return is_gb_double_byte(char)
        # Wide characters are in no single-byte code page; skip building the code page maps.
        if self.grid.char_width(char) == 2:
            return False
        return any(self.encoder.can_encode(page, char) for page in self.encoder.codepages)

    @cached_property
    def font_path(self) -> Path | None:
        return self.cjk_font if self.cjk_font is not None else find_cjk_font()

    def _raster(self, row: TextRow) -> Image.Image | None:
        """Draw a line on the font-A grid, each character centred in its own cells."""
        path = self.font_path
        if path is None:
            return None
        size = _FONT_A_DOTS[1] * row.high
        try:
            _load_font(path, size)
        except OSError as err:
            logger.warning("cannot load CJK font %s: %s", path, err)
            return None
        cell = _FONT_A_DOTS[0] * row.wide
        height = _LINE_DOTS * row.high
        widths = [self.grid.char_width(char) * cell for char in row.text]
        # Bold the way the printer does it: strike again a dot (per width unit) to the right.
        strike = row.wide if row.bold else 0
        image = Image.new("1", (max(sum(widths), 8), height), 1)
        x = 0
        for char, width in zip(row.text, widths, strict=True):
            if char != " ":
                image.paste(_glyph(path, size, char, width, height, strike), (x, 0))
            x += width
        return image

    def _qr(self, url: str) -> None:
        self._style(bold=False, wide=1, high=1)
        dots = qr_size(url, self.profile).module_dots
        if not self.profile.native_qr:
            image = {"impl": "bitImageRaster", "center": True}
            self.printer.qr(url, ec=QR_ECLEVEL_M, size=dots, image_arguments=image)
            return
        # The blank lines keep the quiet zone clear of text, as qr() does for images.
        self.printer.text("\n")
        # python-escpos cannot centre a native QR code; ESC a 1 does.
        self.printer.set(align="center")
        self.printer.qr(url, ec=QR_ECLEVEL_M, size=dots, native=True)
        self.printer.set(align="left")
        self.printer.text("\n")


# Loading a CJK font takes milliseconds and drawing a glyph a tenth of one, per receipt line;
# both are pure functions of their arguments, so they are memoised for the process.
@lru_cache(maxsize=8)
def _load_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


@lru_cache(maxsize=4096)
def _glyph(path: Path, size: int, char: str, width: int, height: int, strike: int) -> Image.Image:
    """One character in a cell `width` dots wide, squeezed if the font draws it wider."""
    font = _load_font(path, size)
    ascent, descent = font.getmetrics()
    baseline = (height - ascent - descent) // 2 + ascent
    advance = math.ceil(font.getlength(char))
    canvas = Image.new("1", (max(advance, width) + strike, height), 1)
    draw = ImageDraw.Draw(canvas)
    left = max(0, (width - advance) // 2)
    for offset in range(strike + 1):
        draw.text((left + offset, baseline), char, font=font, fill=0, anchor="ls")
    if advance > width:
        return canvas.resize((width, height), Image.Resampling.NEAREST)
    return canvas.crop((0, 0, width, height))
