"""An asyncio TCP proxy that misbehaves on purpose, between the sync daemon and the cloud.

Each new client connection gets one :class:`Fault`, chosen by ``proxy.policy(n)`` (n counts
connections from 0). The faults are what a store's uplink does to HTTP:

- ``PASS``: forward both ways.
- ``DELAY``: forward, but hold every chunk ``delay_s`` first (a slow, congested line).
- ``HANG``: accept and read, never answer (a dead middlebox; the client must time out).
- ``RESET``: accept and reset at once (RST, no FIN).
- ``CUT_RESPONSE``: forward the request, then only the first bytes of the response, then close.
- ``DROP_AFTER_COMMIT``: forward the request, wait until the cloud starts answering — it
  commits before it answers — then close without passing on a byte of the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
from collections import Counter
from collections.abc import Callable
from types import TracebackType


class Fault(enum.Enum):
    PASS = "pass"
    DELAY = "delay"
    HANG = "hang"
    RESET = "reset"
    CUT_RESPONSE = "cut_response"
    DROP_AFTER_COMMIT = "drop_after_commit"


class FaultProxy:
    """``async with FaultProxy(upstream_port) as proxy``; point the client at ``proxy.port``."""

    def __init__(self, upstream_port: int, *, delay_s: float = 0.3, cut_after: int = 40) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.cut_after = cut_after
        self.policy: Callable[[int], Fault] = lambda n: Fault.PASS
        self.seen: Counter[Fault] = Counter()
        self._server: asyncio.Server | None = None
        self._count = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def heal(self) -> None:
        """Every new connection passes from now on."""
        self.policy = lambda n: Fault.PASS

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fault = self.policy(self._count)
        self._count += 1
        self.seen[fault] += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._serve(fault, reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            with contextlib.suppress(ConnectionError, OSError):
                writer.close()

    async def _serve(
        self, fault: Fault, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if fault is Fault.RESET:
            sock = writer.get_extra_info("socket")
            # SO_LINGER with a zero timeout turns close() into a reset.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        if fault is Fault.HANG:
            while await reader.read(65536):
                pass
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            return  # the cloud is down: the client sees its connection closed
        self._writers.add(up_writer)
        try:
            upstream = asyncio.create_task(self._pipe(reader, up_writer, fault, response=False))
            downstream = asyncio.create_task(self._pipe(up_reader, writer, fault, response=True))
            done, pending = await asyncio.wait(
                {upstream, downstream}, return_when=asyncio.FIRST_COMPLETED
            )
            if downstream not in done:
                await downstream
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            self._writers.discard(up_writer)
            up_writer.close()

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        fault: Fault,
        *,
        response: bool,
    ) -> None:
        passed = 0
        while chunk := await source.read(65536):
            if fault is Fault.DELAY:
                await asyncio.sleep(self.delay_s)
            if response and fault is Fault.DROP_AFTER_COMMIT:
                return  # the cloud has committed and is answering: the answer is lost
            if response and fault is Fault.CUT_RESPONSE:
                room = self.cut_after - passed
                if room <= 0:
                    return
                chunk = chunk[:room]
            sink.write(chunk)
            await sink.drain()
            passed += len(chunk)
        if not response:
            with contextlib.suppress(OSError):
                sink.write_eof()
