"""Receipt text in printer columns: cleaning, display width, wrapping, alignment, money.

Font A prints a half-width character in one column and a wide (CJK) character in two. A
printer in GB18030 (FS &) mode prints every double-byte character full-width, including
characters such as "é" or "·" that Unicode counts as narrow.
"""

import unicodedata
from dataclasses import dataclass

# ISO 4217 currencies whose minor unit is not 1/100, by decimal places.
_EXPONENTS = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}


def minor_unit_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (ISO 4217; 2 unless listed otherwise)."""
    return next((places for places, codes in _EXPONENTS.items() if currency in codes.split()), 2)


def format_amount(minor: int, currency: str) -> str:
    """Format an amount in minor units, e.g. 59901 CNY -> "599.01", 1200 JPY -> "1200"."""
    exponent = minor_unit_exponent(currency)
    sign = "-" if minor < 0 else ""
    units, fraction = divmod(abs(minor), 10**exponent)
    return f"{sign}{units}.{fraction:0{exponent}d}" if exponent else f"{sign}{units}"


def mask_id(value: str) -> str:
    """Hide all but the last four characters (and the length) of an identifier."""
    return "****" + value[-4:] if len(value) > 4 else "****"


def clean_text(text: str) -> str:
    """Make text safe to print: NFC, whitespace to spaces, no control or combining marks."""
    kept = []
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if char.isspace():
            kept.append(" ")
        # Control, format, surrogate, private-use and unassigned characters print as garbage or
        # switch printer modes; combining marks left over after NFC have no column of their own.
        elif category[0] != "C" and category not in ("Mn", "Me"):
            kept.append(char)
    return "".join(kept)


def is_gb_double_byte(char: str) -> bool:
    """True if a printer in GB18030 mode prints char from its two-byte (GBK) font."""
    try:
        return len(char.encode("gb18030")) == 2
    except UnicodeEncodeError:
        return False


@dataclass(frozen=True)
class TextGrid:
    """A line of `columns` font-A columns; measures and arranges cleaned text in it."""

    columns: int
    gb18030: bool = False

    def __post_init__(self) -> None:
        # Two columns is the least that holds any single character.
        if self.columns < 2:
            raise ValueError(f"a text grid needs at least 2 columns, got {self.columns}")

    def char_width(self, char: str) -> int:
        """Columns one character takes on the printer."""
        if char.isascii():
            return 1
        if self.gb18030 and is_gb_double_byte(char):
            return 2
        return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1

    def width(self, text: str) -> int:
        """Columns text takes on the printer."""
        return sum(self.char_width(char) for char in text)

    def fit(self, text: str) -> str:
        """The longest prefix of text that fits on one line (at least one character)."""
        used = 0
        for index, char in enumerate(text):
            used += self.char_width(char)
            if used > self.columns:
                return text[: max(index, 1)]
        return text

    def wrap(self, text: str) -> list[str]:
        """Break text into lines at spaces, splitting words longer than a line anywhere."""
        lines: list[str] = []
        line = ""
        for word in text.split():
            candidate = f"{line} {word}" if line else word
            if self.width(candidate) <= self.columns:
                line = candidate
                continue
            if line:
                lines.append(line)
            while self.width(word) > self.columns:
                head = self.fit(word)
                lines.append(head)
                word = word[len(head) :]
            line = word
        if line:
            lines.append(line)
        return lines

    def center(self, line: str) -> str:
        """Indent a line that fits so that it sits in the middle."""
        return " " * ((self.columns - self.width(line)) // 2) + line

    def right(self, line: str) -> str:
        """Indent a line that fits so that it ends at the last column."""
        return " " * (self.columns - self.width(line)) + line

    def split(self, left: str, right: str) -> list[str]:
        """Left text and right-aligned text on one line, or on lines of their own if too long."""
        gap = self.columns - self.width(left) - self.width(right)
        if gap >= 1:
            return [left + " " * gap + right]
        return [*self.wrap(left), *(self.right(part) for part in self.wrap(right))]
