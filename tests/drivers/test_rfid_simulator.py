"""The LLRP reader simulator against a raw TCP client: protocol answers and bad client frames."""

from __future__ import annotations

import asyncio
import struct

import pytest

from drivers.rfid import llrp
from drivers.rfid.llrp import Frame, Msg
from drivers.rfid.reads import TagRead
from drivers.rfid.simulator import ReaderSimulator, main
from tests.helpers import free_port


class RawClient:
    """A bare LLRP client: sends bytes, reads whole frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.splitter = llrp.FrameSplitter()
        self.frames: list[Frame] = []

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def next_frame(self, within_s: float = 5.0) -> Frame:
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(65536), within_s)
            if not data:
                raise ConnectionError("simulator closed the connection")
            self.frames.extend(self.splitter.feed(data))
        return self.frames.pop(0)

    async def closed_by_peer(self, within_s: float = 5.0) -> bool:
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), within_s)
                if not data:
                    return True
                self.frames.extend(self.splitter.feed(data))
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def status_code(frame: Frame) -> int:
    (param,) = [p for p in llrp.iter_params(frame.body) if p.type == llrp.Par.LLRP_STATUS]
    return int(struct.unpack_from("!H", param.body)[0])


async def connected(sim: ReaderSimulator) -> RawClient:
    client = await RawClient.connect(sim.port)
    event = await client.next_frame()
    assert event.msg_type == Msg.READER_EVENT_NOTIFICATION
    return client


async def test_rospec_lifecycle_and_reports_to_a_raw_client() -> None:
    async with ReaderSimulator() as sim:
        client = await connected(sim)
        body = llrp.tlv(
            llrp.Par.ROSPEC,
            struct.pack("!IBB", 7, 0, 0)
            + llrp.tlv(llrp.Par.RO_BOUNDARY_SPEC, llrp.tlv(llrp.Par.ROSPEC_START_TRIGGER, b"\x00")),
        )
        await client.send(llrp.encode_frame(Msg.ADD_ROSPEC, 1, body))
        assert (await client.next_frame()).msg_type == Msg.ADD_ROSPEC_RESPONSE
        await client.send(llrp.encode_frame(Msg.ENABLE_ROSPEC, 2, struct.pack("!I", 7)))
        assert status_code(await client.next_frame()) == 0
        assert not sim.inventorying  # start trigger Null: enabled, not started
        await client.send(llrp.encode_frame(Msg.START_ROSPEC, 3, struct.pack("!I", 7)))
        reply = await client.next_frame()
        assert (reply.msg_type, reply.message_id, status_code(reply)) == (
            Msg.START_ROSPEC_RESPONSE,
            3,
            0,
        )
        assert sim.inventorying
        llrp_read = _read()
        sim.inject([llrp_read])
        report = await client.next_frame()
        assert report.msg_type == Msg.RO_ACCESS_REPORT
        (trd,) = list(llrp.iter_params(report.body))
        fields = {p.type: p.body for p in llrp.iter_params(trd.body)}
        assert fields[13] == llrp_read.epc
        assert struct.unpack("!H", fields[1]) == (llrp_read.antenna,)
        await client.send(llrp.encode_frame(Msg.STOP_ROSPEC, 4, struct.pack("!I", 7)))
        assert status_code(await client.next_frame()) == 0
        assert not sim.inventorying
        await client.send(llrp.encode_frame(Msg.DELETE_ROSPEC, 5, struct.pack("!I", 8)))
        assert status_code(await client.next_frame()) == llrp.Status.A_INVALID
        await client.send(llrp.encode_frame(Msg.CLOSE_CONNECTION, 6))
        closing = await client.next_frame()
        assert closing.msg_type == Msg.CLOSE_CONNECTION_RESPONSE
        assert await client.closed_by_peer()
        await client.close()


def _read() -> TagRead:
    return TagRead("", 3, bytes(range(12)), -50.0, 1_767_603_600_000_000, 1)


async def test_bad_header_gets_an_error_and_a_close_then_the_next_client_is_served() -> None:
    async with ReaderSimulator() as sim:
        client = await connected(sim)
        await client.send(struct.pack("!HII", 0x0400 | 1, 3, 1))  # length 3 < header
        error = await client.next_frame()
        assert error.msg_type == Msg.ERROR_MESSAGE
        assert await client.closed_by_peer()
        await client.close()
        assert "declares length 3" in sim.errors[0]
        again = await connected(sim)
        await again.send(llrp.encode_frame(Msg.GET_READER_CAPABILITIES, 9, b"\x00"))
        reply = await again.next_frame()
        assert reply.msg_type == Msg.GET_READER_CAPABILITIES_RESPONSE
        await again.close()


@pytest.mark.parametrize(
    ("frame", "reply_type", "code"),
    [
        (
            llrp.encode_frame(Msg.ADD_ROSPEC, 5, b"\x00\xb1\x00\x09abcde"),
            Msg.ADD_ROSPEC_RESPONSE,
            llrp.Status.PARAMETER_ERROR,
        ),
        (
            llrp.encode_frame(Msg.ENABLE_ROSPEC, 5, b"\x01"),
            Msg.ENABLE_ROSPEC_RESPONSE,
            llrp.Status.PARAMETER_ERROR,
        ),
        (
            llrp.encode_frame(Msg.SET_READER_CONFIG, 5, b"\x00\x00\xdc\x00\x06\x01"),
            Msg.SET_READER_CONFIG_RESPONSE,
            llrp.Status.PARAMETER_ERROR,
        ),
        (llrp.encode_frame(Msg.GET_REPORT, 5), Msg.ERROR_MESSAGE, llrp.Status.UNSUPPORTED_MESSAGE),
        (
            llrp.encode_frame(Msg.GET_READER_CONFIG, 5, version=2),
            Msg.ERROR_MESSAGE,
            llrp.Status.UNSUPPORTED_VERSION,
        ),
    ],
)
async def test_bad_messages_are_answered_and_the_connection_survives(
    frame: bytes, reply_type: int, code: int
) -> None:
    async with ReaderSimulator() as sim:
        client = await connected(sim)
        await client.send(frame)
        reply = await client.next_frame()
        assert (reply.msg_type, reply.message_id, status_code(reply)) == (reply_type, 5, code)
        await client.send(llrp.encode_frame(Msg.KEEPALIVE_ACK, 6))
        await client.send(llrp.encode_frame(Msg.GET_READER_CONFIG, 7, b"\x00" * 7))
        assert (await client.next_frame()).msg_type == Msg.GET_READER_CONFIG_RESPONSE
        assert sim.keepalive_acks == 1
        await client.close()


async def test_truncated_frame_then_disconnect_is_logged_and_survived(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ReaderSimulator() as sim:
        client = await connected(sim)
        await client.send(llrp.encode_frame(Msg.GET_READER_CONFIG, 1, b"\x00" * 7)[:12])
        await client.close()
        await asyncio.sleep(0.1)
        assert "ended inside a frame" in caplog.text
        again = await connected(sim)
        await again.close()
    assert sim.connections == 2


async def test_a_second_client_is_refused_while_one_is_connected() -> None:
    async with ReaderSimulator() as sim:
        first = await connected(sim)
        second = await RawClient.connect(sim.port)
        event = await second.next_frame()
        (data,) = list(llrp.iter_params(event.body))
        status = [p for p in llrp.iter_params(data.body) if p.type == 256]
        assert struct.unpack("!H", status[0].body) == (2,)
        assert await second.closed_by_peer()
        await second.close()
        await first.close()
    assert sim.connections == 1


async def test_keepalives_follow_set_reader_config_and_stop_when_silent() -> None:
    async with ReaderSimulator() as sim:
        client = await connected(sim)
        keepalive = llrp.tlv(llrp.Par.KEEPALIVE_SPEC, struct.pack("!BI", 1, 100))
        await client.send(llrp.encode_frame(Msg.SET_READER_CONFIG, 1, b"\x00" + keepalive))
        assert status_code(await client.next_frame()) == 0
        assert (await client.next_frame()).msg_type == Msg.KEEPALIVE
        sim.silent = True
        await asyncio.sleep(0.05)
        client.frames.clear()
        assert not await client.closed_by_peer(within_s=0.4)
        assert client.frames == []
        await client.close()


async def test_reboot_refuses_connections_while_down() -> None:
    async with ReaderSimulator() as sim:
        client = await connected(sim)
        rebooting = asyncio.create_task(sim.reboot(0.5))
        assert await client.closed_by_peer()
        await client.close()
        await asyncio.sleep(0.1)
        with pytest.raises(ConnectionRefusedError):
            await RawClient.connect(sim.port)
        await rebooting
        again = await connected(sim)
        await again.close()
    assert sim.connections == 2


def test_cli_plays_a_scenario_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert (
        main(["--listen", f"127.0.0.1:{port}", "--scenario", "throughput", "--duration", "0.3"])
        == 0
    )
    assert f"listening on 127.0.0.1:{port}" in capsys.readouterr().out


def test_cli_rejects_a_bad_listen_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--listen", "nowhere"])
    assert "--listen must be HOST:PORT" in capsys.readouterr().err
