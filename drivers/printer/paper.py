"""The paper roll a rendered job is printed on: composed line by line, like a thermal printer.

Geometry follows a TM-T88-class printer at 180 dpi: font A is 12x24 dots per half-width
character, font B 9x17, a full-width (CJK) character is two half-width cells wide, and the
default line spacing is 30 dots. A line is printed at the top of its band and then the paper
advances by the line spacing, or by the line's height when that is taller.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

DEFAULT_LINE_SPACING = 30
# About 4 m of paper: a job asking for more is clipped rather than exhausting memory.
MAX_HEIGHT_PX = 30_000

_CUT_BAND_PX = 16
_CELL = {False: (12, 24), True: (9, 17)}  # font B? -> half-width cell (width, height)
_MONO_FONTS = (
    ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", 0),
    ("/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 1),  # face 1 is Micro Hei Mono
)
_CJK_FONTS = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class TextStyle:
    """Print mode applied to characters (ESC !, ESC E, ESC -, ESC M, GS !, GS B)."""

    bold: bool = False
    underline: int = 0
    reverse: bool = False
    font_b: bool = False
    width_mul: int = 1
    height_mul: int = 1

    def cell(self, full_width: bool = False) -> tuple[int, int]:
        """Size in dots of one character cell in this style."""
        width, height = _CELL[self.font_b]
        return width * (2 if full_width else 1) * self.width_mul, height * self.height_mul


@functools.cache
def _font(cjk: bool, size: int) -> Font:
    for path, index in _CJK_FONTS if cjk else _MONO_FONTS:
        if Path(path).is_file():
            return ImageFont.truetype(path, size, index=index)
    if cjk:
        return _font(False, size)
    return ImageFont.load_default(size)


class Paper:
    """A roll of paper ``width_px`` dots wide, printed from top to bottom."""

    def __init__(self, width_px: int) -> None:
        self.width_px = width_px
        self.text_lines: list[str] = []
        self._bands: list[Image.Image | int] = []  # int: blank paper of that height
        self._height = 0
        self._glyphs: dict[tuple[str, bool, TextStyle], Image.Image] = {}
        self.reset()

    def reset(self) -> None:
        """Back to power-on settings, dropping a line not yet printed (ESC @)."""
        self.line_spacing = DEFAULT_LINE_SPACING
        self.align = 0
        self.left_margin = 0
        self.area_width = self.width_px
        self._pieces: list[tuple[int, Image.Image]] = []
        self._text: list[str] = []
        self._x = 0

    @property
    def x(self) -> int:
        """Dots from the start of the current line to the print position."""
        return self._x

    @property
    def line_pending(self) -> bool:
        """Whether a line has been started and not yet printed."""
        return bool(self._pieces or self._x)

    def add_char(self, char: str, style: TextStyle, full_width: bool = False) -> None:
        """Place one character on the current line, wrapping when it does not fit."""
        glyph = self._glyph(char, style, full_width)
        self._place(glyph)
        self._text.append(char)

    def add_image(self, image: Image.Image) -> None:
        """Place a bit image on the current line (ESC *)."""
        self._place(image)

    def skip_to(self, x: int, style: TextStyle) -> None:
        """Move the print position right to ``x`` dots from the margin (HT)."""
        x = min(x, self._usable_width())
        if x > self._x:
            self._text.append(" " * max(1, round((x - self._x) / style.cell()[0])))
            self._x = x

    def end_line(self, advance: int) -> None:
        """Print the current line, then feed ``advance`` dots from its top (LF, ESC d, ESC J)."""
        height = max((piece.height for _, piece in self._pieces), default=0)
        if height:
            band = Image.new("L", (self.width_px, height), 255)
            offset = self._offset(self._x)
            for x, piece in self._pieces:
                band.paste(piece, (offset + x, height - piece.height))
            self._append(band)
        self._append(max(advance - height, 0))
        text = "".join(self._text).rstrip()
        if text:
            self.text_lines.append(text)
        self._pieces, self._text, self._x = [], [], 0

    def print_block(self, image: Image.Image) -> None:
        """Print an image as its own block (raster images, graphics, QR codes)."""
        if self.line_pending:
            self.end_line(self.line_spacing)
        width = min(image.width, self._usable_width())
        band = Image.new("L", (self.width_px, image.height), 255)
        band.paste(image.crop((0, 0, width, image.height)), (self._offset(width), 0))
        self._append(band)

    def cut(self) -> None:
        """Print what is pending and mark the cut with a dashed line."""
        if self.line_pending:
            self.end_line(self.line_spacing)
        band = Image.new("L", (self.width_px, _CUT_BAND_PX), 255)
        draw = ImageDraw.Draw(band)
        y = _CUT_BAND_PX // 2
        for x in range(0, self.width_px, 16):
            draw.line((x, y, x + 7, y), fill=0, width=2)
        self._append(band)

    def compose(self) -> Image.Image:
        """The printed roll as a 1-bit image: white paper, black ink."""
        roll = Image.new("L", (self.width_px, max(self._height, 1)), 255)
        y = 0
        for band in self._bands:
            if isinstance(band, int):
                y += band
            else:
                roll.paste(band, (0, y))
                y += band.height
        return roll.convert("1", dither=Image.Dither.NONE)

    def _usable_width(self) -> int:
        return max(min(self.area_width, self.width_px - self.left_margin), 1)

    def _offset(self, used: int) -> int:
        free = max(self._usable_width() - used, 0)
        return self.left_margin + (0, free // 2, free)[self.align]

    def _place(self, piece: Image.Image) -> None:
        if self._x + piece.width > self._usable_width() and self.line_pending:
            self.end_line(self.line_spacing)
        self._pieces.append((self._x, piece))
        self._x += piece.width

    def _append(self, band: Image.Image | int) -> None:
        room = MAX_HEIGHT_PX - self._height
        if isinstance(band, int):
            band = min(band, room)
            if band:
                self._bands.append(band)
                self._height += band
        elif room > 0:
            band = band.crop((0, 0, band.width, min(band.height, room)))
            self._bands.append(band)
            self._height += band.height

    def _glyph(self, char: str, style: TextStyle, full_width: bool) -> Image.Image:
        key = (char, full_width, style)
        if key not in self._glyphs:
            self._glyphs[key] = _draw_glyph(char, style, full_width)
        return self._glyphs[key]


def _draw_glyph(char: str, style: TextStyle, full_width: bool) -> Image.Image:
    base = TextStyle(font_b=style.font_b)
    width, height = base.cell(full_width)
    cell = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(cell)
    font = _font(full_width, height * 11 // 12 if full_width else height * 5 // 6)
    # Place by the bounding box of a reference string so every glyph shares one baseline.
    _, top, _, bottom = font.getbbox("国g" if full_width else "ÄÉgj")
    x = (width - font.getlength(char)) / 2
    y = (height - (bottom - top)) / 2 - top
    draw.text((x, y), char, font=font, fill=0)
    if style.bold:
        # Emphasis on a thermal head is a second strike one dot to the right.
        draw.text((x + 1, y), char, font=font, fill=0)
    if style.width_mul > 1 or style.height_mul > 1:
        cell = cell.resize(style.cell(full_width), Image.Resampling.NEAREST)
    if style.underline:
        ImageDraw.Draw(cell).rectangle(
            (0, cell.height - style.underline, cell.width - 1, cell.height - 1), fill=0
        )
    if style.reverse:
        cell = cell.point(lambda v: 255 - v)
    return cell
