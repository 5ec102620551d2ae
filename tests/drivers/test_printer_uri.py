"""Printer URI parsing: accepted forms, canonical strings, and the messages for bad ones."""

import pytest

from drivers.printer import InvalidPrinterURI, PrinterURI, parse_printer_uri

FORMS = "(use socket://host:port, serial:/dev/X?baud=N, file:/path or usb:VID:PID)"


@pytest.mark.parametrize(
    ("uri", "parsed", "canonical"),
    [
        (
            "socket://192.168.1.50",
            PrinterURI("socket", host="192.168.1.50", port=9100),
            "socket://192.168.1.50:9100",
        ),
        (
            "socket://printer.store.lan:9101",
            PrinterURI("socket", host="printer.store.lan", port=9101),
            "socket://printer.store.lan:9101",
        ),
        ("socket://[::1]:9100", PrinterURI("socket", host="::1", port=9100), "socket://[::1]:9100"),
        (
            "serial:/dev/ttyUSB0?baud=9600",
            PrinterURI("serial", path="/dev/ttyUSB0", baud=9600),
            "serial:/dev/ttyUSB0?baud=9600",
        ),
        (
            "serial:///dev/ttyS0",
            PrinterURI("serial", path="/dev/ttyS0", baud=19200),
            "serial:/dev/ttyS0?baud=19200",
        ),
        ("file:/dev/usb/lp0", PrinterURI("file", path="/dev/usb/lp0"), "file:/dev/usb/lp0"),
        ("file:///dev/usb/lp1", PrinterURI("file", path="/dev/usb/lp1"), "file:/dev/usb/lp1"),
        ("usb:04B8:202", PrinterURI("usb", vid=0x04B8, pid=0x0202), "usb:04b8:0202"),
    ],
)
def test_accepted_forms_parse_and_print_canonically(
    uri: str, parsed: PrinterURI, canonical: str
) -> None:
    assert parse_printer_uri(uri) == parsed
    assert str(parsed) == canonical
    assert parse_printer_uri(canonical) == parsed


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("", "empty printer URI"),
        ("ftp://printer", "unsupported printer URI scheme 'ftp'"),
        ("localhost:9100", "unsupported printer URI scheme 'localhost'"),
        ("10.0.0.7:9100", "printer URI {} has no scheme"),
        ("socket://", "printer URI {} has no host"),
        ("socket://printer:0", "invalid port in printer URI {}"),
        ("socket://printer:70000", "invalid port in printer URI {}"),
        ("socket://printer:abc", "invalid port in printer URI {}"),
        ("socket://printer/queue", "unexpected path or query in printer URI {}"),
        ("socket://admin:pw@printer", "printer URI {} must not carry user credentials"),
        ("socket://printer :9100", "printer URI {} contains whitespace or control characters"),
        (
            "serial:/dev/ttyUSB0?baud=1234",
            "invalid baud rate '1234' in printer URI {}, expected one of "
            "1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400",
        ),
        (
            "serial:/dev/ttyUSB0?parity=N",
            "unknown option 'parity' in printer URI {}; the only option is baud",
        ),
        ("serial:ttyUSB0", "printer URI {} needs an absolute device path"),
        ("serial://dev/ttyUSB0", "printer URI {} names a host; write serial:/absolute/path"),
        ("file:/dev/usb/lp0?x=1", "unexpected query in printer URI {}"),
        ("usb:04b8", "printer URI {} needs hex vendor and product ids like usb:04b8:0202"),
        ("usb:epson:0202", "printer URI {} needs hex vendor and product ids like usb:04b8:0202"),
        ("usb:0000:0202", "printer URI {} has a zero USB id"),
    ],
)
def test_bad_forms_say_what_is_wrong_and_what_is_accepted(uri: str, problem: str) -> None:
    with pytest.raises(InvalidPrinterURI) as caught:
        parse_printer_uri(uri)
    assert str(caught.value) == f"{problem.format(repr(uri))} {FORMS}"
    assert isinstance(caught.value, ValueError)
