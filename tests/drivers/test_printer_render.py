"""Rendering ESC/POS bytes built by python-escpos to the receipt a printer would print."""

import base64
import random

import cv2
import numpy as np
import pytest
from escpos.printer import Dummy
from PIL import Image, ImageOps

from drivers.printer.render import render_job
from tests.drivers.printer_samples import RECEIPT_URL, sample_receipt
from tests.qr import decode_qr


def ink_box(image: Image.Image) -> tuple[int, int, int, int]:
    box = ImageOps.invert(image.convert("L")).getbbox()
    assert box is not None, "nothing was printed"
    return box


def ink(image: Image.Image) -> int:
    return image.convert("L").histogram()[0]


def test_receipt_text_comes_out_line_by_line() -> None:
    rendered = render_job(sample_receipt())
    assert rendered.text == [
        "STORELINK OUTDOOR",
        "Trail shoe 42      1 x 899.00",
        "TOTAL 899.00",
    ]
    assert rendered.cuts == 1
    assert not rendered.truncated
    assert rendered.image.width == 512
    assert rendered.image.mode == "1"


@pytest.mark.parametrize(("align", "edge"), [("left", 0), ("center", 256), ("right", 512)])
def test_alignment_places_the_line(align: str, edge: int) -> None:
    p = Dummy()
    p.set(align=align)
    p.textln("ALIGNED")
    left, _, right, _ = ink_box(render_job(p.output).image)
    position = {"left": left, "center": (left + right) // 2, "right": right}[align]
    assert abs(position - edge) <= 4


def test_bold_and_double_size_print_more_ink() -> None:
    def printed(**style: bool) -> Image.Image:
        p = Dummy()
        p.set(**style)
        p.textln("STORELINK")
        return render_job(p.output).image

    plain, bold, double = printed(), printed(bold=True), printed(double_width=True)
    assert ink(bold) > ink(plain) * 1.2
    assert ink_box(double)[2] - ink_box(double)[0] > (ink_box(plain)[2] - ink_box(plain)[0]) * 1.8


@pytest.mark.parametrize(
    "image_arguments",
    [{"impl": "bitImageRaster"}, {"impl": "graphics"}, {"impl": "bitImageColumn"}],
)
def test_image_qr_decodes_from_the_rendered_receipt(image_arguments: dict[str, str]) -> None:
    p = Dummy()
    p.textln("Scan for your e-receipt")
    p.qr(RECEIPT_URL, native=False, size=4, image_arguments=image_arguments)
    p.cut()
    rendered = render_job(p.output)
    assert decode_qr(rendered.image) == [RECEIPT_URL]
    assert rendered.qr_payloads == []  # an image is not a native QR symbol


def test_native_qr_is_drawn_at_the_module_size_and_decodes() -> None:
    rendered = render_job(sample_receipt(native_qr=True))
    assert rendered.qr_payloads == [RECEIPT_URL]
    assert decode_qr(rendered.image) == [RECEIPT_URL]
    widths = {}
    for size in (4, 8):
        p = Dummy()
        p.qr(RECEIPT_URL, native=True, size=size)
        left, _, right, _ = ink_box(render_job(p.output).image)
        widths[size] = right - left
    assert widths[8] == 2 * widths[4]
    assert (widths[4] // 4 - 17) % 4 == 0  # a version-v symbol is 17 + 4v modules wide


def test_random_receipt_urls_all_decode() -> None:
    # The 100% printed-QR target, on both QR paths. OpenCV's classic QRCodeDetector misses
    # about 5% of valid codes of this size, so this uses its Aruco-based detector.
    rng = random.Random(7)
    detector = cv2.QRCodeDetectorAruco()
    for i in range(40):
        url = "https://cloud.example/r/" + base64.urlsafe_b64encode(rng.randbytes(90)).decode()
        p = Dummy()
        p.qr(url, native=i % 2 == 0, size=5)
        p.ln(2)
        image = ImageOps.expand(render_job(p.output).image.convert("L"), border=32, fill=255)
        assert detector.detectAndDecode(np.asarray(image))[0] == url


def test_gb18030_text_inside_kanji_mode() -> None:
    p = Dummy()
    p.textln("Member:")
    p._raw(b"\x1c&" + "会员 张三 ¥128.00".encode("gb18030") + b"\x1c.\n")
    p.textln("Thanks")
    rendered = render_job(p.output)
    assert rendered.text == ["Member:", "会员 张三 ¥128.00", "Thanks"]
    # Full-width characters take two half-width cells: 会员 spans 48 dots.
    p = Dummy()
    p._raw(b"\x1c&" + "会员".encode("gb18030") + b"\x1c.\n")
    left, _, right, _ = ink_box(render_job(p.output).image)
    assert 40 <= right - left <= 48


def test_code_pages_selected_by_python_escpos_decode() -> None:
    p = Dummy()
    p.textln("Café Ä €5")
    p.textln("Привет")
    assert render_job(p.output).text == ["Café Ä €5", "Привет"]


def test_long_lines_wrap_at_the_paper_width() -> None:
    p = Dummy()
    p.textln("x" * 50)
    assert render_job(p.output).text == ["x" * 42, "x" * 8]


def test_cuts_are_counted_and_status_queries_not_printed() -> None:
    p = Dummy()
    p._raw(b"\x10\x04\x01\x10\x04\x04")
    p.textln("first")
    p.cut()
    p.textln("second")
    p.cut(mode="PART", feed=False)
    rendered = render_job(p.output)
    assert rendered.text == ["first", "second"]
    assert rendered.cuts == 2


def test_every_truncation_of_a_receipt_renders_what_came_before() -> None:
    data = sample_receipt(native_qr=False)
    qr_start = data.index(b"\x1dv0")
    for end in [*range(0, 200), *range(200, len(data), 11)]:
        rendered = render_job(data[:end])
        assert rendered.image.width == 512
    rendered = render_job(data[: qr_start + 20])
    assert rendered.truncated
    assert rendered.text[-1] == "TOTAL 899.00"


@pytest.mark.parametrize("seed", range(40))
def test_garbage_and_mutated_receipts_never_raise(seed: int) -> None:
    rng = random.Random(seed)
    mutated = bytearray(sample_receipt(native_qr=bool(seed % 2)))
    for _ in range(20):
        mutated[rng.randrange(len(mutated))] = rng.randrange(256)
    for data in (rng.randbytes(3000), bytes(mutated)):
        rendered = render_job(data)
        assert 1 <= rendered.image.height <= 30_000
