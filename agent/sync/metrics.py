"""Prometheus metrics of the sync daemon, served at ``GET /metrics`` on a local port.

The backlog gauges (unsent events, age of the oldest, last success) are read from the
database at each scrape, so they are true even right after a restart; the counter of events
the cloud acknowledged and the upload latency histogram count what this process did.
The port is ``[sync] metrics_listen`` (loopback by default; ``""`` turns it off). A port
that is taken costs the metrics, never the syncing: the daemon logs it and runs on.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from types import TracebackType
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from agent.configbase import split_host_port
from agent.db import Database
from agent.outbox import BACKLOG_SQL
from agent.sync.client import CloudClient, UploadAnswer
from agent.sync.state import state_value

log = logging.getLogger(__name__)

# A batch is up to 5,000 events: tens of milliseconds on a LAN, seconds over a bad uplink.
UPLOAD_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class SyncMetrics:
    """The sync daemon's metrics, in a registry of their own (no global state)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.registry = CollectorRegistry()
        self.acked = Counter(
            "storelink_sync_events_acked",
            "Events the cloud acknowledged as stored (rate() gives events/s)",
            registry=self.registry,
        )
        self.upload_seconds = Histogram(
            "storelink_sync_upload_seconds",
            "Time from sending a batch of events to the cloud's answer",
            ["outcome"],
            buckets=UPLOAD_BUCKETS,
            registry=self.registry,
        )
        self.unsent = Gauge(
            "storelink_sync_outbox_unsent",
            "Outbox events not yet acknowledged by the cloud (rejected ones excluded)",
            registry=self.registry,
        )
        self.oldest_age = Gauge(
            "storelink_sync_oldest_unsent_age_seconds",
            "Age of the oldest unsent event (0 when nothing is unsent)",
            registry=self.registry,
        )
        self.last_success = Gauge(
            "storelink_sync_last_success_timestamp_seconds",
            "Unix time of the last exchange that moved data (0: never)",
            registry=self.registry,
        )

    async def refresh(self) -> None:
        """Read the backlog and the last success from the database into the gauges."""
        ((count, oldest_ms),) = await self._db.reader.execute_fetchall(BACKLOG_SQL)
        now = time.time()
        self.unsent.set(int(count))
        self.oldest_age.set(max(0.0, now - oldest_ms / 1000) if oldest_ms is not None else 0.0)
        last = await state_value(self._db.reader, "last_success_at")
        self.last_success.set(_iso_seconds(last) if last else 0.0)

    async def handle(self, _request: web.Request) -> web.Response:
        """``GET /metrics`` in the Prometheus text format."""
        await self.refresh()
        response = web.Response(body=generate_latest(self.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response


class MeteredCloudClient(CloudClient):
    """A :class:`CloudClient` that times each upload and counts the events acknowledged."""

    def __init__(self, *args: Any, metrics: SyncMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    async def post_events(self, gzipped_body: bytes) -> UploadAnswer:
        """``POST events``, timed, its stored ids counted."""
        started = time.perf_counter()
        outcome = "error"
        try:
            answer = await super().post_events(gzipped_body)
            outcome = "ok"
        finally:
            self._metrics.upload_seconds.labels(outcome).observe(time.perf_counter() - started)
        self._metrics.acked.inc(len(answer.stored))
        return answer


class MetricsServer:
    """Serves ``GET /metrics`` on ``listen`` while entered; nothing when ``listen`` is empty."""

    def __init__(self, metrics: SyncMetrics, listen: str) -> None:
        self._metrics = metrics
        self._listen = listen
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> MetricsServer:
        if not self._listen:
            return self
        app = web.Application()
        app.router.add_get("/metrics", self._metrics.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = split_host_port(self._listen)
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as err:
            await runner.cleanup()
            log.warning("sync metrics are off: cannot listen on %s: %s", self._listen, err)
            return self
        self._runner = runner
        log.info("sync metrics on http://%s/metrics", self._listen)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
