"""IE fingerprints: stable across a randomising phone's MACs, distinct across device models."""

from __future__ import annotations

import random
from dataclasses import replace

from drivers.wifi.fingerprint import fingerprint
from drivers.wifi.probe import ProbeParser
from tests import wifi_pcap as wp


def parse_fingerprint(probe: wp.Probe, parser: ProbeParser | None = None) -> int:
    """The fingerprint the parser reports for ``probe``."""
    got = (parser or ProbeParser(lambda mac: b"h")).parse(wp.probe_frame(probe), probe.ts_us)
    assert got is not None
    return got.fingerprint


def ie_region(probe: wp.Probe) -> memoryview:
    """The IE region of ``probe``'s 802.11 frame (after the 24-byte header)."""
    return memoryview(wp.dot11_probe(probe))[24:]


def test_randomised_phone_keeps_its_fingerprint() -> None:
    rng = random.Random(7)
    base = wp.Probe(mac=wp.random_mac(rng), ies=wp.IPHONE_IES)
    variants = [
        replace(
            base,
            mac=wp.random_mac(rng),
            seq=rng.randrange(4096),
            rssi=rng.randrange(-90, -40),
            freq=freq,
            ssid=ssid,
            ts_us=base.ts_us + i,
        )
        for i, (freq, ssid) in enumerate(
            [(2412, b""), (2437, b"Home"), (2462, b""), (5180, b"Cafe Wi-Fi"), (2412, b"x" * 32)]
        )
    ]
    parser = ProbeParser(lambda mac: mac)
    fingerprints = {parse_fingerprint(v, parser) for v in variants}
    assert len({parser.parse(wp.probe_frame(v), 0).device for v in variants}) == 5  # type: ignore[union-attr]
    assert fingerprints == {parse_fingerprint(base)}
    # A fresh parser (no cache) and the function on the raw IE region agree.
    assert fingerprint(ie_region(variants[3])) == parse_fingerprint(variants[3])


def test_device_models_differ() -> None:
    models = (wp.IPHONE_IES, wp.ANDROID_IES, wp.LAPTOP_IES)
    fingerprints = [parse_fingerprint(wp.Probe(mac="02:00:00:00:00:01", ies=m)) for m in models]
    assert len(set(fingerprints)) == 3


def test_only_stable_parts_count() -> None:
    base = wp.Probe(mac="02:00:00:00:00:01", ies=wp.IPHONE_IES)
    reference = parse_fingerprint(base)
    # A vendor element's body after OUI + type may change per frame: ignored.
    tail_changed = wp.IPHONE_IES.replace(
        bytes.fromhex("0017f20a000103040000000b00"), bytes.fromhex("0017f20a00ffffffffffff0b00")
    )
    assert tail_changed != wp.IPHONE_IES
    assert parse_fingerprint(replace(base, ies=tail_changed)) == reference
    # Without a DS Parameter Set element: same device.
    assert parse_fingerprint(replace(base, ds_channel=False)) == reference
    # Different supported rates, a different vendor OUI, or another element order: different.
    rates = wp.IPHONE_IES.replace(bytes.fromhex("010402040b16"), bytes.fromhex("010482848b96"))
    oui = wp.IPHONE_IES.replace(bytes.fromhex("0017f20a"), bytes.fromhex("0050f208"))
    first = wp.element(1, bytes.fromhex("02040b16"))
    reordered = wp.IPHONE_IES.replace(first, b"") + first
    for ies in (rates, oui, reordered):
        assert ies != wp.IPHONE_IES
        assert parse_fingerprint(replace(base, ies=ies)) != reference


def test_unknown_element_counts_by_id_only() -> None:
    base = wp.Probe(mac="02:00:00:00:00:01", ies=wp.LAPTOP_IES)
    one = replace(base, ies=wp.LAPTOP_IES + wp.element(10, b"\x01\x02"))
    two = replace(base, ies=wp.LAPTOP_IES + wp.element(10, b"\x07\x08\x09"))
    assert parse_fingerprint(one) == parse_fingerprint(two) != parse_fingerprint(base)


def test_fingerprint_is_stable_across_processes() -> None:
    """A fixed value: fingerprints are persisted (fixed devices), so they must not drift."""
    probe = wp.Probe(mac="02:00:00:00:00:01", ies=wp.LAPTOP_IES)
    assert fingerprint(ie_region(probe)) == fingerprint(memoryview(wp.LAPTOP_IES))
    assert fingerprint(memoryview(wp.LAPTOP_IES)) == 0x133F8151766B13CB
