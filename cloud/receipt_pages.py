"""HTML of the e-receipt pages a customer opens from the receipt QR: plain functions, no I/O.

Every value that came from a store, a token or a form is escaped; the pages carry no script
and load nothing from elsewhere, so they work on any phone and leak nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

# ISO 4217 currencies without minor units; everything else here has two.
_ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"} | {
    "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"
})  # fmt: skip

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK SC",sans-serif;
margin:0;background:#f4f4f2;color:#222}
main{max-width:28rem;margin:0 auto;padding:1rem}
.card{background:#fff;border-radius:.6rem;padding:1rem 1.2rem;margin-bottom:1rem;
box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.25rem;margin:.2rem 0}h2{font-size:1.05rem;margin:.2rem 0 .6rem}
.muted{color:#666;font-size:.9rem}.note{background:#fff7d6;border-left:4px solid #e0b400;
padding:.6rem .8rem;border-radius:.3rem}.error{border-left:4px solid #c62828}
table{width:100%;border-collapse:collapse}td{padding:.3rem 0;vertical-align:top}
td.num{text-align:right;white-space:nowrap}tr.total td{border-top:1px solid #ddd;font-weight:bold}
label{display:block;margin:.6rem 0 .2rem}input[type=text],input[type=tel]{width:100%;
box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #bbb;border-radius:.3rem}
button{margin-top:1rem;width:100%;padding:.8rem;font-size:1rem;border:0;border-radius:.3rem;
background:#1b5e20;color:#fff}
"""


@dataclass(frozen=True, slots=True)
class LineView:
    """A receipt line as shown."""

    name: str
    qty: int
    unit_price: int
    discount: int

    @property
    def amount(self) -> int:
        """Line amount after discount, in minor units."""
        return self.qty * self.unit_price - self.discount


@dataclass(frozen=True, slots=True)
class ReceiptView:
    """What an e-receipt page shows; lines and payments are None until the sale has synced."""

    store_name: str
    receipt_no: str
    issued_at: datetime
    total: int
    currency: str
    associate_id: str | None
    lines: Sequence[LineView] | None
    payments: Sequence[tuple[str, int]] | None
    test_receipt: bool
    claimed: bool
    claim_action: str


def money(amount: int, currency: str) -> str:
    """Minor units as text with the currency code, e.g. ``CNY 599.01``."""
    if currency in _ZERO_DECIMAL:
        return f"{currency} {amount:,}"
    sign = "-" if amount < 0 else ""
    units, cents = divmod(abs(amount), 100)
    return f"{currency} {sign}{units:,}.{cents:02d}"


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _lines_table(view: ReceiptView) -> str:
    assert view.lines is not None
    rows = []
    for line in view.lines:
        detail = f"{line.qty} x {money(line.unit_price, view.currency)}"
        if line.discount:
            detail += f", discount {money(line.discount, view.currency)}"
        rows.append(
            f"<tr><td>{escape(line.name)}<br><span class=muted>{escape(detail)}</span></td>"
            f'<td class="num">{escape(money(line.amount, view.currency))}</td></tr>'
        )
    rows.append(
        f'<tr class="total"><td>Total</td>'
        f'<td class="num">{escape(money(view.total, view.currency))}</td></tr>'
    )
    for method, amount in view.payments or ():
        rows.append(
            f"<tr><td class=muted>Paid by {escape(method)}</td>"
            f'<td class="num muted">{escape(money(amount, view.currency))}</td></tr>'
        )
    return "<table>" + "".join(rows) + "</table>"


def _claim_form(view: ReceiptView) -> str:
    if view.test_receipt:
        return ""
    if view.claimed:
        return '<div class="card"><p>This receipt is saved in a membership.</p></div>'
    return (
        '<div class="card"><h2>Keep this receipt with your membership</h2>'
        '<p class="muted">No more lost receipts for returns and exchanges.</p>'
        f'<form method="post" action="{escape(view.claim_action)}">'
        '<label for="name">Name</label>'
        '<input type="text" id="name" name="name" maxlength="200" required autocomplete="name">'
        '<label for="phone">Mobile phone</label>'
        '<input type="tel" id="phone" name="phone" maxlength="32" required autocomplete="tel">'
        '<label><input type="checkbox" name="consent" value="yes"> '
        "Send me offers and news from the store</label>"
        "<button type=submit>Join and save this receipt</button></form></div>"
    )


def receipt_page(view: ReceiptView) -> str:
    """The e-receipt page."""
    when = view.issued_at.strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f'<div class="card"><h1>{escape(view.store_name)}</h1>'
        f'<p class="muted">Receipt {escape(view.receipt_no)} · {escape(when)}'
        + (f" · served by {escape(view.associate_id)}" if view.associate_id else "")
        + "</p>"
    )
    if view.test_receipt:
        body = (
            head + '<p class="note">This is a printer test receipt. It records no sale.</p></div>'
        )
        return _page(f"Test receipt {view.receipt_no}", body)
    if view.lines is None:
        details = (
            f"<table><tr class=total><td>Total</td>"
            f'<td class="num">{escape(money(view.total, view.currency))}</td></tr></table>'
            '<p class="note">The full details appear once the store has synced.</p>'
        )
    else:
        details = _lines_table(view)
    return _page(f"Receipt {view.receipt_no}", head + details + "</div>" + _claim_form(view))


def message_page(title: str, message: str, *, error: bool = False) -> str:
    """A page with a title and one paragraph (errors get a red mark)."""
    css = "note error" if error else "note"
    return _page(
        title,
        f'<div class="card"><h1>{escape(title)}</h1><p class="{css}">{escape(message)}</p></div>',
    )
