"""systemd's notify protocol, spoken by hand: readiness, status, stopping and watchdog pings.

Under a ``Type=notify`` unit systemd sets ``NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``).
Each message is one datagram of ``KEY=value`` lines on that AF_UNIX socket. Outside systemd
the variables are absent and every call is a no-op, so ``storelink-agent run`` behaves the
same in a terminal, in tests and in the demo.

Why not a library: ``sdnotify`` on PyPI has not changed since 2017 and swallows every error,
and ``systemd-python`` needs libsystemd's headers and a compiler at install time on the store
PC. The protocol is a datagram of a few bytes.

The watchdog pinger runs as a task on the process's own event loop, not in a thread: if the
loop hangs (a blocking call, a busy loop) the pings stop and systemd restarts the service
after ``WatchdogSec``, which is the point of the watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notify messages to systemd; does nothing when not started by systemd."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for the socket and watchdog systemd passed in the environment."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        text = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process the watchdog is for; a child that inherited the
        # environment must not ping on its parent's behalf.
        if text.isdigit() and (not pid or pid == str(os.getpid())):
            usec = int(text)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        """True when systemd listens (``NOTIFY_SOCKET`` was set)."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between watchdog pings (half the timeout, as sd_watchdog_enabled advises)."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def notify(self, *assignments: str) -> None:
        """Send ``KEY=value`` assignments in one datagram; never blocks, never raises."""
        if self._address is None:
            return
        target = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Non-blocking: a full receive queue drops a message rather than stall the loop.
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto("\n".join(assignments).encode(), target)
        except OSError as err:
            if not self._failing:
                log.warning("cannot notify systemd at %s: %s", self._address, err)
                self._failing = True
            return
        if self._failing:
            log.info("notifying systemd works again")
            self._failing = False

    def ready(self, status: str) -> None:
        """Tell systemd the service is up (``READY=1``) with a one-line status."""
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """Update the status line ``systemctl status`` shows."""
        self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        """Tell systemd the service is shutting down (``STOPPING=1``)."""
        self.notify("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> None:
        """One watchdog ping (``WATCHDOG=1``)."""
        self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket (a later message opens it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def watchdog_pinger(notifier: Notifier) -> None:
    """Ping the watchdog from this event loop until cancelled; returns at once if none is set."""
    interval = notifier.watchdog_interval_s
    if interval is None:
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def pinging(notifier: Notifier) -> AsyncIterator[None]:
    """Run :func:`watchdog_pinger` as a named task while entered."""
    task = asyncio.create_task(watchdog_pinger(notifier), name="systemd-watchdog")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
