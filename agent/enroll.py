"""``storelink-agent enroll``: register the store's public key with the cloud using a token.

The store key is loaded, or created on first use; only its public half leaves the store. The
cloud's answer is recorded in the agent database: the cloud URL the sync daemon talks to and
the cloud's epoch. An epoch already recorded is kept: if the cloud's differs, the daemon sees
the change and resyncs, sending again whatever that cloud does not hold. Running it again with
a new token is harmless (the cloud replaces the key with the same one).

Exceptions::

    Exception
     └── EnrollError   enrollment failed; the message says why and what to do
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.app import StartupError, claim_store, prepare_data_dir
from agent.config import AgentConfig
from agent.db import DB_FILE, Database, DatabaseError, Durability
from agent.outbox import utc_iso
from agent.storekey import StoreKeyError, load_or_create_store_key, public_key_b64
from agent.sync.client import (
    BadAnswer,
    CloudRejected,
    CloudUnavailable,
    Enrollment,
    post_enrollment,
)
from agent.sync.state import state_value, write_state


class EnrollError(Exception):
    """The store could not enroll; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Enrolled:
    """A successful enrollment."""

    store_id: str
    cloud_url: str
    epoch: str
    public_key: str


def normalise_cloud_url(url: str) -> str:
    """The cloud URL without trailing slashes; EnrollError if it is not http(s)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url) < 10:
        raise EnrollError(f"--cloud must be an http:// or https:// URL, not {url!r}")
    return url


def _refusal(err: CloudRejected, store_id: str, cloud_url: str) -> EnrollError:
    """What to tell store IT when the cloud says no."""
    detail = str(err).split(": ", 1)[-1]
    if err.status == 401:
        if "already used" in detail or "expired" in detail:
            hint = "ask head office for a new token (`storelink-cloud stores add` prints one)"
        else:
            hint = f"check the token: it must be the one printed for store {store_id}"
        return EnrollError(f"the cloud refused the token: {detail}; {hint}")
    if err.status == 404:
        return EnrollError(
            f"{cloud_url} has no enrollment endpoint (404): is --cloud the storelink cloud?"
        )
    return EnrollError(f"the cloud refused the enrollment ({err})")


async def _ask_cloud(cloud_url: str, store_id: str, token: str, public_key: str) -> Enrollment:
    try:
        answer = await post_enrollment(cloud_url, store_id, token, public_key)
    except CloudUnavailable as err:
        raise EnrollError(
            f"cannot enroll at {cloud_url}: {err}; check --cloud and the network, then retry"
        ) from err
    except CloudRejected as err:
        raise _refusal(err, store_id, cloud_url) from err
    except BadAnswer as err:
        raise EnrollError(f"{cloud_url} does not answer like a storelink cloud: {err}") from err
    if answer.store_id != store_id:
        raise EnrollError(
            f"store id mismatch: the cloud enrolled store {answer.store_id!r}, "
            f"but this config is store {store_id!r}"
        )
    return answer


async def enroll(config: AgentConfig, cloud_url: str, token: str) -> Enrolled:
    """Enroll the store's key with the cloud and record where and in which epoch."""
    cloud_url = normalise_cloud_url(cloud_url)
    token = token.strip()
    if not token:
        raise EnrollError("--token is empty")
    store_id = config.store.id
    data_dir = config.store.data_dir
    try:
        await asyncio.to_thread(prepare_data_dir, data_dir)
        key = await asyncio.to_thread(load_or_create_store_key, data_dir)
    except (StartupError, StoreKeyError) as err:
        raise EnrollError(str(err)) from err
    public_key = public_key_b64(key)
    try:
        async with Database(data_dir / DB_FILE) as db:
            # Before the token is spent: a data directory of another store is refused.
            try:
                await claim_store(db, store_id)
            except StartupError as err:
                raise EnrollError(f"store id mismatch: {err}") from err
            answer = await _ask_cloud(cloud_url, store_id, token, public_key)
            async with db.write(Durability.FULL) as conn:
                values = {"cloud_url": cloud_url, "enrolled_at": utc_iso(datetime.now(UTC))}
                if await state_value(conn, "epoch") is None:
                    values["epoch"] = answer.epoch
                await write_state(conn, values)
    except (DatabaseError, sqlite3.Error) as err:
        raise EnrollError(f"cannot use the agent database in {data_dir}: {err}") from err
    return Enrolled(store_id, cloud_url, answer.epoch, public_key)
