"""The RFID service the agent runs (placeholder until the RFID work fills it)."""

from __future__ import annotations

from types import TracebackType

from agent.config import AgentConfig
from agent.db import Database
from agent.jobs import JobScheduler
from agent.outbox import Outbox


class RfidService:
    """Runs while the agent runs; started after the outbox, stopped before it."""

    def __init__(
        self, config: AgentConfig, db: Database, outbox: Outbox, jobs: JobScheduler
    ) -> None:
        self.config = config
        self.db = db
        self.outbox = outbox
        self.jobs = jobs

    async def __aenter__(self) -> RfidService:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None
