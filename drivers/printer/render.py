"""Render ESC/POS bytes to the receipt a TM-T88-class printer would print.

Pure: bytes in, image and text out; the only I/O is reading font files.

Interprets what python-escpos emits: text in the selected code page (cp437 after power-on)
or GB18030 inside Kanji mode (FS & ... FS .), print modes, alignment, line spacing, margins,
feeds, cuts, raster images (GS v 0), graphics (GS ( L / GS 8 L), column bit images (ESC *)
and native QR codes (GS ( k). Real-time commands (DLE EOT/ENQ/DC4) are skipped: they are
answered on the wire, not printed. Other commands are skipped by their known length, an
unknown ``ESC x`` / ``GS x`` / ``FS x`` as two bytes. Data that ends inside a command stops
the rendering with ``truncated=True``; what was printed until then is kept.

Like the printer, a native QR symbol gets no quiet zone: the receipt layout must leave one.
Not drawn: barcodes (GS k), downloaded and NV images, page mode; model 1 and micro QR are
drawn as model 2.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import qrcode
from PIL import Image
from qrcode.exceptions import DataOverflowError

from drivers.printer.paper import DEFAULT_LINE_SPACING, Paper, TextStyle

ESC, FS, GS, DLE = 0x1B, 0x1C, 0x1D, 0x10
_LF, _HT, _FF = 0x0A, 0x09, 0x0C
_TEXT_RUN = re.compile(rb"[\x20-\xff]+")
_INK = bytes(255 - i for i in range(256))  # set bits are ink; PIL's "1" mode calls them white
_MAX_TABS = 32

# ESC t n -> Python codec, for the pages of the Epson table that Python can decode.
_CODE_PAGES = {
    0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865", 13: "cp857", 14: "cp737",
    15: "iso8859_7", 16: "cp1252", 17: "cp866", 18: "cp852", 19: "cp858", 21: "cp874",
    32: "cp720", 33: "cp775", 34: "cp855", 35: "cp861", 36: "cp862", 37: "cp864",
    38: "cp869", 39: "iso8859_2", 40: "iso8859_15", 44: "cp1125", 45: "cp1250",
    46: "cp1251", 47: "cp1253", 48: "cp1254", 49: "cp1255", 50: "cp1256", 51: "cp1257",
    52: "cp1258", 53: "kz1048",
}  # fmt: skip
_QR_ERROR_LEVELS = {
    48: qrcode.constants.ERROR_CORRECT_L,
    49: qrcode.constants.ERROR_CORRECT_M,
    50: qrcode.constants.ERROR_CORRECT_Q,
    51: qrcode.constants.ERROR_CORRECT_H,
}
# Parameter bytes of commands that are skipped, after the two command bytes.
_ESC_SKIP = {
    ord(c): n
    for c, n in (
        *((c, 1) for c in " %=?KRUVerTu{"),
        *((c, 2) for c in "$\\B"),
        ("p", 3),
        ("c", 2),
        ("W", 8),
    )
}
_GS_SKIP = {ord(c): 1 for c in "HhwfbarIET/|"} | {ord(c): 2 for c in "P\\$"} | {ord("^"): 3}
_FS_SKIP = {ord(c): 1 for c in "!-WC"} | {ord(c): 2 for c in "Sp"}


class _Truncated(Exception):
    """The data ended inside a command."""


@dataclass(frozen=True)
class RenderedJob:
    """A job as it came out of the printer."""

    image: Image.Image
    text: list[str]
    qr_payloads: list[str]
    cuts: int
    truncated: bool = False


def render_job(data: bytes, width_px: int = 512) -> RenderedJob:
    """Print ``data`` on an imagined roll ``width_px`` dots wide (512 = 80 mm paper at 180 dpi)."""
    return _Interpreter(data, width_px).run()


@dataclass
class _QrSymbol:
    module: int = 3
    error_level: int = qrcode.constants.ERROR_CORRECT_L
    data: bytes = b""


class _Interpreter:
    def __init__(self, data: bytes, width_px: int) -> None:
        self._data = data
        self._pos = 0
        self._paper = Paper(width_px)
        self._qr_payloads: list[str] = []
        self._cuts = 0
        self._reset()

    def _reset(self) -> None:
        self._paper.reset()
        self._style = TextStyle()
        self._codec = "cp437"
        self._kanji = False
        self._tabs = [8 * i for i in range(1, _MAX_TABS + 1)]
        self._qr = _QrSymbol()
        self._graphics: Image.Image | None = None

    def run(self) -> RenderedJob:
        truncated = False
        try:
            while self._pos < len(self._data):
                self._step()
        except _Truncated:
            truncated = True
        if self._paper.line_pending:
            self._paper.end_line(self._paper.line_spacing)
        image = self._paper.compose()
        return RenderedJob(image, self._paper.text_lines, self._qr_payloads, self._cuts, truncated)

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise _Truncated
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def _byte(self) -> int:
        return self._take(1)[0]

    def _u16(self) -> int:
        low, high = self._take(2)
        return low | high << 8

    def _step(self) -> None:
        run = _TEXT_RUN.match(self._data, self._pos)
        if run:
            self._pos = run.end()
            self._print_text(run.group())
            return
        code = self._byte()
        if code == ESC:
            self._esc(self._byte())
        elif code == GS:
            self._gs(self._byte())
        elif code == FS:
            self._fs(self._byte())
        elif code == DLE:
            self._dle(self._byte())
        elif code in (_LF, _FF):
            self._paper.end_line(self._paper.line_spacing)
        elif code == _HT:
            self._tab()

    def _print_text(self, raw: bytes) -> None:
        text = raw.decode("gb18030" if self._kanji else self._codec, errors="replace")
        for char in text:
            self._paper.add_char(char, self._style, full_width=self._kanji and ord(char) > 0x7F)

    def _tab(self) -> None:
        column = self._style.cell()[0]
        stop = next((t for t in self._tabs if t > self._paper.x // column), None)
        if stop is not None:
            self._paper.skip_to(stop * column, self._style)

    def _esc(self, cmd: int) -> None:
        style = self._style
        match chr(cmd):
            case "@":
                self._reset()
            case "!":
                n = self._byte()
                self._style = dataclasses.replace(
                    style,
                    font_b=bool(n & 0x01),
                    bold=bool(n & 0x08),
                    height_mul=2 if n & 0x10 else 1,
                    width_mul=2 if n & 0x20 else 1,
                    underline=1 if n & 0x80 else 0,
                )
            case "E" | "G":
                self._style = dataclasses.replace(style, bold=bool(self._byte() & 1))
            case "-":
                self._style = dataclasses.replace(style, underline=_underline(self._byte()))
            case "M":
                self._style = dataclasses.replace(style, font_b=self._byte() in (1, 49))
            case "a":
                n = self._byte()
                self._paper.align = {0: 0, 1: 1, 2: 2, 48: 0, 49: 1, 50: 2}.get(n, 0)
            case "t":
                self._codec = _CODE_PAGES.get(self._byte(), "cp437")
            case "d":
                self._paper.end_line(self._byte() * self._paper.line_spacing)
            case "J":
                self._paper.end_line(self._byte())
            case "2":
                self._paper.line_spacing = DEFAULT_LINE_SPACING
            case "3":
                self._paper.line_spacing = self._byte()
            case "A":
                self._paper.line_spacing = self._byte() * 3  # n/60 inch
            case "+":
                self._paper.line_spacing = self._byte() // 2  # n/360 inch
            case "*":
                self._bit_image()
            case "D":
                self._set_tabs()
            case "i" | "m":
                self._cut(0)
            case "&":
                self._skip_user_characters()
            case "(":
                self._take(self._u16())
            case _:
                self._take(_ESC_SKIP.get(cmd, 0))

    def _gs(self, cmd: int) -> None:
        match chr(cmd):
            case "!":
                n = self._byte()
                self._style = dataclasses.replace(
                    self._style, width_mul=(n >> 4 & 7) + 1, height_mul=(n & 7) + 1
                )
            case "B":
                self._style = dataclasses.replace(self._style, reverse=bool(self._byte() & 1))
            case "L":
                self._paper.left_margin = min(self._u16(), self._paper.width_px - 1)
            case "W":
                self._paper.area_width = self._u16()
            case "V":
                self._gs_cut()
            case "v":
                self._raster_image()
            case "(":
                self._gs_paren(self._byte(), self._u16())
            case "8":
                function = self._byte()
                size = int.from_bytes(self._take(4), "little")
                if function == ord("L"):
                    self._graphics_command(self._take(size))
                else:
                    self._take(size)
            case "k":
                self._skip_barcode()
            case "*":
                x, y = self._take(2)
                self._take(x * y * 8)
            case _:
                self._take(_GS_SKIP.get(cmd, 0))

    def _fs(self, cmd: int) -> None:
        if cmd == ord("&"):
            self._kanji = True
        elif cmd == ord("."):
            self._kanji = False
        elif cmd == ord("2"):
            self._take(2 + 72)  # one user-defined 24x24 Kanji
        else:
            self._take(_FS_SKIP.get(cmd, 0))

    def _dle(self, cmd: int) -> None:
        if cmd in (0x04, 0x05):  # DLE EOT n, DLE ENQ n
            self._take(1)
        elif cmd == 0x14:  # DLE DC4 fn ...
            self._take({1: 2, 2: 2, 7: 1, 8: 7}.get(self._byte(), 0))

    def _set_tabs(self) -> None:
        tabs: list[int] = []
        while len(tabs) < _MAX_TABS and (n := self._byte()) != 0:
            if not tabs or n > tabs[-1]:
                tabs.append(n)
        self._tabs = tabs

    def _skip_user_characters(self) -> None:
        height, first, last = self._take(3)
        for _ in range(max(last - first + 1, 0)):
            self._take(height * self._byte())

    def _skip_barcode(self) -> None:
        kind = self._byte()
        if kind <= 6:
            while self._byte() != 0:
                pass
        else:
            self._take(self._byte())

    def _gs_cut(self) -> None:
        mode = self._byte()
        feed = self._byte() if mode in (65, 66, 97, 98, 103, 104) else 0
        self._cut(feed if mode in (65, 66) else 0)

    def _cut(self, feed: int) -> None:
        self._paper.end_line(feed)
        self._paper.cut()
        self._cuts += 1

    def _raster_image(self) -> None:
        if self._byte() != ord("0"):
            return
        mode = self._byte() & 3
        row_bytes, height = self._u16(), self._u16()
        data = self._take(row_bytes * height)
        if row_bytes and height:
            image = _bits(data, row_bytes * 8, height)
            self._paper.print_block(_scale(image, 2 if mode & 1 else 1, 2 if mode & 2 else 1))

    def _gs_paren(self, function: int, size: int) -> None:
        body = self._take(size)
        if function == ord("k"):
            self._qr_command(body)
        elif function == ord("L"):
            self._graphics_command(body)

    def _graphics_command(self, body: bytes) -> None:
        if len(body) < 2:
            return
        fn = body[1]
        if fn in (2, 50) and self._graphics is not None:
            self._paper.print_block(self._graphics)
            self._graphics = None
        elif fn == 112 and len(body) >= 10 and body[2] == 48:
            scale_x, scale_y = body[3], body[4]
            width = body[6] | body[7] << 8
            height = body[8] | body[9] << 8
            row_bytes = (width + 7) // 8
            data = body[10 : 10 + row_bytes * height]
            if len(data) == row_bytes * height and scale_x in (1, 2) and scale_y in (1, 2):
                self._graphics = _bits(data, row_bytes * 8, height).crop((0, 0, width, height))
                self._graphics = _scale(self._graphics, scale_x, scale_y)

    def _qr_command(self, body: bytes) -> None:
        if len(body) < 2 or body[0] != 49:  # cn 49 is QR Code; other symbologies are skipped
            return
        fn, args = body[1], body[2:]
        if fn == 67 and args and 1 <= args[0] <= 16:
            self._qr.module = args[0]
        elif fn == 69 and args and args[0] in _QR_ERROR_LEVELS:
            self._qr.error_level = _QR_ERROR_LEVELS[args[0]]
        elif fn == 80:
            self._qr.data = args[1:]
        elif fn == 81 and self._qr.data:
            image = _qr_image(self._qr)
            if image is not None:
                self._paper.print_block(image)
                self._qr_payloads.append(self._qr.data.decode("utf-8", errors="replace"))

    def _bit_image(self) -> None:
        mode = self._byte()
        columns = self._u16()
        dots = 24 if mode in (32, 33) else 8
        data = self._take(columns * dots // 8)
        if mode not in (0, 1, 32, 33):
            return
        image = _bits(data, dots, columns).transpose(Image.Transpose.TRANSPOSE)
        # Single density halves the horizontal resolution; 8-dot mode prints at 60 dpi vertically.
        self._paper.add_image(_scale(image, 1 if mode & 1 else 2, 1 if dots == 24 else 3))


def _underline(n: int) -> int:
    return {1: 1, 49: 1, 2: 2, 50: 2}.get(n, 0)


def _bits(data: bytes, width: int, height: int) -> Image.Image:
    """A grayscale image of packed 1-bit rows where set bits are ink."""
    return Image.frombytes("1", (width, height), data.translate(_INK)).convert("L")


def _scale(image: Image.Image, sx: int, sy: int) -> Image.Image:
    if sx == sy == 1:
        return image
    return image.resize((image.width * sx, image.height * sy), Image.Resampling.NEAREST)


def _qr_image(symbol: _QrSymbol) -> Image.Image | None:
    code = qrcode.QRCode(error_correction=symbol.error_level, box_size=1, border=0)
    code.add_data(symbol.data)
    try:
        code.make(fit=True)
    except DataOverflowError:
        return None  # the printer prints nothing for data it cannot fit either
    matrix = code.get_matrix()
    image = Image.new("L", (len(matrix), len(matrix)), 255)
    image.putdata([0 if dark else 255 for row in matrix for dark in row])
    return _scale(image, symbol.module, symbol.module)
