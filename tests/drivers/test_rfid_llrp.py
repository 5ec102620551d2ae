"""LLRP framing: what the simulator sends, decoded by sllurp; what sllurp sends, parsed by us."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from sllurp.llrp import LLRPClient, LLRPMessage, LLRPReaderConfig
from sllurp.llrp_proto import LLRPROSpec

from drivers.rfid import llrp
from drivers.rfid.reads import TagRead
from drivers.rfid.sgtin import encode_sgtin96

EPC = encode_sgtin96("80614141123458", 6789, company_prefix_length=7)
T_US = 1_767_603_600_123_456


def sllurp_decode(frame: bytes) -> tuple[str, dict[str, Any]]:
    msg = LLRPMessage(msgbytes=frame)
    name = msg.getName()
    return name, msg.msgdict[name]


def sllurp_encode(msg: dict[str, dict[str, object]], message_id: int = 7) -> bytes:
    for body in msg.values():
        body["ID"] = message_id
    out = LLRPMessage(msgdict=msg).msgbytes
    assert isinstance(out, bytes)
    return out


def test_header_layout_is_version_type_length_id() -> None:
    frame = llrp.encode_keepalive(0x01020304)
    assert frame == bytes.fromhex("043e 0000000a 01020304".replace(" ", ""))


def test_connection_event_is_a_success_for_sllurp() -> None:
    name, msg = sllurp_decode(llrp.encode_connection_event(1, T_US))
    assert name == "READER_EVENT_NOTIFICATION"
    data = msg["ReaderEventNotificationData"]
    assert data == {
        "UTCTimestamp": {"Microseconds": T_US},
        "ConnectionAttemptEvent": {"Status": "Success"},
    }


def test_capabilities_carry_what_sllurp_needs() -> None:
    model = llrp.ReaderModel()
    name, caps = sllurp_decode(llrp.encode_capabilities_response(2, model))
    assert name == "GET_READER_CAPABILITIES_RESPONSE"
    assert caps["GeneralDeviceCapabilities"]["MaxNumberOfAntennaSupported"] == 4
    band = caps["RegulatoryCapabilities"]["UHFBandCapabilities"]
    power = band["TransmitPowerLevelTableEntry"]
    assert power[0] == {"Index": 1, "TransmitPowerValue": 1000}
    assert power[-1] == {"Index": 91, "TransmitPowerValue": 3250}
    assert band["FrequencyInformation"]["Hopping"] is True
    modes = band["UHFC1G2RFModeTable"]["UHFC1G2RFModeTableEntry"]
    assert [m["ModeIdentifier"] for m in modes] == [0, 1, 2, 1000]
    assert "C1G2LLRPCapabilities" in caps


def test_reader_config_response_decodes() -> None:
    name, cfg = sllurp_decode(llrp.encode_reader_config_response(3, llrp.ReaderModel(), 5000))
    assert name == "GET_READER_CONFIG_RESPONSE"
    assert cfg["KeepaliveSpec"] == {"KeepaliveTriggerType": "Immediate", "TimeInterval": 5000}
    assert len(cfg["AntennaProperties"]) == 4


def test_ro_access_report_round_trips_through_sllurp() -> None:
    reads = [
        TagRead("r", 2, EPC, -47.4, T_US, 3),
        TagRead("r", 4, bytes(range(16)), -80.6, T_US + 10, 1),
    ]
    name, report = sllurp_decode(llrp.encode_ro_access_report(9, reads, llrp.ContentSelector(), 1))
    assert name == "RO_ACCESS_REPORT"
    tags = report["TagReportData"]
    assert tags == [
        {
            "EPC-96": EPC.hex().encode(),
            "EPC": EPC.hex().encode(),
            "ROSpecID": 1,
            "AntennaID": 2,
            "PeakRSSI": -47,
            "FirstSeenTimestampUTC": T_US,
            "LastSeenTimestampUTC": T_US,
            "TagSeenCount": 3,
        },
        {
            "EPC": bytes(range(16)).hex().encode(),
            "ROSpecID": 1,
            "AntennaID": 4,
            "PeakRSSI": -81,
            "FirstSeenTimestampUTC": T_US + 10,
            "LastSeenTimestampUTC": T_US + 10,
            "TagSeenCount": 1,
        },
    ]


def test_content_selector_leaves_fields_out() -> None:
    selector = llrp.ContentSelector.from_flags(0x1000 | 0x0100)  # AntennaID + LastSeen only
    _, report = sllurp_decode(
        llrp.encode_ro_access_report(9, [TagRead("r", 2, EPC, -47, T_US, 3)], selector, 1)
    )
    tags = report["TagReportData"]
    assert isinstance(tags, list)
    assert len(tags) == 1
    assert set(tags[0]) == {"EPC-96", "EPC", "AntennaID", "LastSeenTimestampUTC"}


def test_impinj_extension_response_decodes() -> None:
    frame = llrp.encode_frame(
        llrp.Msg.CUSTOM_MESSAGE, 5, llrp.llrp_status(), vendor_id=llrp.VENDOR_IMPINJ, subtype=22
    )
    msg = LLRPMessage(msgbytes=frame)
    assert msg.getName() == "IMPINJ_ENABLE_EXTENSIONS_RESPONSE"
    assert msg.isSuccess()


def test_error_message_names_the_problem() -> None:
    _, msg = sllurp_decode(llrp.encode_error_message(4, llrp.Status.UNSUPPORTED_MESSAGE, "no"))
    assert msg["LLRPStatus"] == {"StatusCode": "UnsupportedMessage", "ErrorDescription": b"no"}


def test_parse_add_rospec_as_sllurp_builds_it() -> None:
    rospec = LLRPROSpec(
        None,
        1,
        antennas=(1, 3),
        tx_power={1: 41, 3: 60},
        session=1,
        tag_population=16,
        report_every_n_tags=1,
        impinj_search_mode=2,
        tag_content_selector={"EnableAntennaID": True, "EnablePeakRSSI": False},
    )
    frame = sllurp_encode({"ADD_ROSPEC": {"ROSpecID": 1, "ROSpec": rospec}})
    (parsed,) = llrp.FrameSplitter().feed(frame)
    assert parsed.msg_type == llrp.Msg.ADD_ROSPEC
    info = llrp.parse_add_rospec(parsed.body)
    assert info.rospec_id == 1
    assert info.start_immediate
    assert info.antennas == (1, 3)
    assert info.tx_power_index == {1: 41, 3: 60}
    assert info.session == 1
    assert info.search_mode == 2
    assert info.selector.antenna_id
    assert not info.selector.peak_rssi


def test_parse_keepalive_from_sllurps_set_reader_config() -> None:
    sent: list[bytes] = []
    client = LLRPClient(
        LLRPReaderConfig({"keepalive_interval": 1500}), transport_tx_write=sent.append
    )
    client.send_SET_READER_CONFIG(onCompletion=None)
    (frame,) = llrp.FrameSplitter().feed(b"".join(sent))
    assert frame.msg_type == llrp.Msg.SET_READER_CONFIG
    assert llrp.parse_keepalive_ms(frame.body) == 1500


def test_splitter_reassembles_frames_fed_byte_by_byte() -> None:
    stream = llrp.encode_keepalive(1) + llrp.encode_frame(
        llrp.Msg.CUSTOM_MESSAGE, 2, b"\x00\x00\x00\x00", vendor_id=llrp.VENDOR_IMPINJ, subtype=21
    )
    splitter = llrp.FrameSplitter()
    frames = [f for b in stream for f in splitter.feed(bytes([b]))]
    assert [(f.name, f.message_id, f.vendor_id, f.subtype) for f in frames] == [
        ("KEEPALIVE", 1, 0, 0),
        ("CUSTOM_MESSAGE", 2, llrp.VENDOR_IMPINJ, 21),
    ]
    assert frames[1].body == b"\x00\x00\x00\x00"
    assert splitter.pending == 0


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (struct.pack("!HII", 0x0400 | 62, 4, 1), "declares length 4"),
        (struct.pack("!HII", 0x0400 | 61, 1 << 30, 1), "declares length"),
        (struct.pack("!HII", 0x0400 | 1023, 12, 1) + b"\x00\x00", "declares length 12"),
    ],
)
def test_splitter_rejects_impossible_headers(frame: bytes, message: str) -> None:
    with pytest.raises(llrp.LlrpFrameError, match=message):
        llrp.FrameSplitter().feed(frame)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x81\x00", "TV parameter type 1 truncated"),
        (b"\xff\x00", "unknown TV parameter type 127"),
        (llrp.tlv(240, b"abc")[:-1], "declares length 7"),
        (b"\x00", "stray bytes"),
        (struct.pack("!HH", 240, 2), "declares length 2"),
        (struct.pack("!HH", 1023, 6) + b"\x00\x00", "custom parameter"),
    ],
)
def test_bad_parameters_are_named(data: bytes, message: str) -> None:
    with pytest.raises(llrp.LlrpFrameError, match=message):
        list(llrp.iter_params(data, "test"))


def test_bad_add_rospec_bodies_raise_frame_errors() -> None:
    with pytest.raises(llrp.LlrpFrameError, match="no ROSpec"):
        llrp.parse_add_rospec(llrp.tlv(llrp.Par.LLRP_STATUS, b"\x00\x00\x00\x00"))
    with pytest.raises(llrp.LlrpFrameError, match="ROSpec is 2 bytes"):
        llrp.parse_add_rospec(llrp.tlv(llrp.Par.ROSPEC, b"\x00\x01"))
    with pytest.raises(llrp.LlrpFrameError, match="4-byte ROSpecID"):
        llrp.parse_rospec_id(b"\x00", "ENABLE_ROSPEC")
