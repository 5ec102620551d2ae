"""Prometheus metrics of one cloud process, on a registry of its own (never the global one)."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """The counters and histograms the cloud exports at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "storelink_cloud_request_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.events_ingested = Counter(
            "storelink_cloud_events_ingested",
            "Events newly stored, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.events_rejected = Counter(
            "storelink_cloud_events_rejected",
            "Events refused as invalid",
            registry=self.registry,
        )

    def middleware(self) -> Middleware:
        """An aiohttp middleware that times every request."""

        @web.middleware
        async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
            except web.HTTPException as err:
                status = err.status
                raise
            else:
                status = response.status
                return response
            finally:
                # The route template, not the path: store ids and tokens would explode labels.
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else "unmatched"
                self.request_seconds.labels(request.method, route, str(status)).observe(
                    time.perf_counter() - started
                )

        return timed

    async def handle(self, _request: web.Request) -> web.Response:
        """``GET /metrics`` in the Prometheus text format."""
        response = web.Response(body=generate_latest(self.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response
