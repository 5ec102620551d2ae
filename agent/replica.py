"""The store's replica of its cloud slice, with member personal data sealed at rest.

The sync daemon writes the replica (agent.sync.download); the agent reads it (member look-ups,
receipt offers) and applies an associate's tag changes at once. A member's personal data
(name, phone, consent, tags) is one AES-GCM sealed JSON blob keyed by ``data_dir/replica.key``
(32 random bytes, mode 0600); the member id is the associated data, so a blob copied onto
another member's row does not open. Only what the store queries stays in clear: home store,
assigned associate and segment ids.

Exceptions::

    ReplicaError
     └── SealBroken   a sealed member does not open with this replica key
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.keyfile import KeyFileError, publish_key_file, read_key_file

KEY_FILE = "replica.key"
REPLICA_TABLES = ("members", "catalogue", "staff", "segments", "offers")
_KEY_BYTES = 32
_NONCE_BYTES = 12
# First byte of every sealed blob: the format, so a later key rotation can tell blobs apart.
_SEAL_V1 = b"\x01"


class ReplicaError(Exception):
    """The replica or its key cannot be used."""


class SealBroken(ReplicaError):
    """A sealed member does not open: another key, or the bytes were altered."""


class Personal(msgspec.Struct, frozen=True):
    """What the replica keeps sealed about a member."""

    name: str
    phone: str | None
    consent: bool
    tags: list[str]


_PERSONAL = msgspec.json.Decoder(Personal)


@dataclass(frozen=True, slots=True)
class Member:
    """A member of the store's slice, opened."""

    id: str
    personal: Personal
    home_store: str | None
    associate_id: str | None
    segments: tuple[str, ...]


class MemberSeal:
    """Seals and opens members' personal data with the replica key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, member_id: str, personal: Personal) -> bytes:
        """The sealed form of a member's personal data."""
        nonce = os.urandom(_NONCE_BYTES)
        plain = msgspec.json.encode(personal)
        return _SEAL_V1 + nonce + self._aead.encrypt(nonce, plain, member_id.encode())

    def open(self, member_id: str, sealed: bytes) -> Personal:
        """The personal data of a sealed member; SealBroken if it does not open."""
        if sealed[:1] != _SEAL_V1:
            raise SealBroken(f"member {member_id}: unknown sealed format")
        nonce, box = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            plain = self._aead.decrypt(nonce, box, member_id.encode())
        except InvalidTag as err:
            raise SealBroken(f"member {member_id} does not open with {KEY_FILE}") from err
        return _PERSONAL.decode(plain)


def load_or_create_replica_key(data_dir: Path) -> MemberSeal:
    """The seal keyed by data_dir/replica.key, created (mode 0600) on first use; blocking."""
    path = data_dir / KEY_FILE
    try:
        key = _read_key(path)
    except FileNotFoundError:
        try:
            publish_key_file(path, AESGCM.generate_key(bit_length=_KEY_BYTES * 8))
        except OSError as err:
            raise ReplicaError(f"cannot create replica key {path}: {err}") from err
        # Read back whether or not this process won the race: all must use the published key.
        key = _read_key(path)
    return MemberSeal(key)


def _read_key(path: Path) -> bytes:
    try:
        key = read_key_file(path, "replica key")
    except KeyFileError as err:
        raise ReplicaError(str(err)) from err
    if len(key) != _KEY_BYTES:
        raise ReplicaError(f"replica key {path} is {len(key)} bytes, not {_KEY_BYTES}")
    return key


_UPSERT_MEMBER = (
    "INSERT INTO members (id, sealed, home_store, associate_id, segments, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed,"
    " home_store = excluded.home_store, associate_id = excluded.associate_id,"
    " segments = excluded.segments, updated_at = excluded.updated_at"
)


async def put_members(
    conn: aiosqlite.Connection, seal: MemberSeal, members: Sequence[Member], now: str
) -> None:
    """Insert or replace whole members, inside the caller's write transaction."""
    await conn.executemany(
        _UPSERT_MEMBER,
        [
            (
                m.id,
                seal.seal(m.id, m.personal),
                m.home_store,
                m.associate_id,
                json.dumps(list(m.segments)),
                now,
            )
            for m in members
        ],
    )


async def get_member(conn: aiosqlite.Connection, seal: MemberSeal, member_id: str) -> Member | None:
    """The member if it is in the replica."""
    async with conn.execute(
        "SELECT sealed, home_store, associate_id, segments FROM members WHERE id = ?",
        (member_id,),
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    sealed, home_store, associate_id, segments = row
    return Member(
        member_id,
        seal.open(member_id, sealed),
        home_store,
        associate_id,
        tuple(json.loads(segments)),
    )


async def member_segments(conn: aiosqlite.Connection, member_id: str) -> tuple[str, ...] | None:
    """The member's segment ids, or None when the member is not in the replica."""
    async with conn.execute("SELECT segments FROM members WHERE id = ?", (member_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else tuple(json.loads(row[0]))


async def clear_replica(conn: aiosqlite.Connection) -> None:
    """Delete every replicated row, inside the caller's write transaction."""
    for table in REPLICA_TABLES:
        await conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
