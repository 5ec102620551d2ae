"""Member phone numbers at rest: AES-256-GCM ciphertext plus a keyed hash for lookups.

Both keys live in ``data_dir/field.key`` (mode 0600, created on first use): 64 random bytes,
the first 32 the AES-GCM key, the last 32 the HMAC-SHA256 key. Losing the file makes every
stored phone number unreadable, so it belongs in the same backups as the database.

Ciphertext layout: one version byte (1), a 12-byte random nonce, then AES-GCM's output
(ciphertext and 16-byte tag). The version byte leaves room for key rotation.

Blocking file I/O: call :func:`load_field_crypt` at start-up or through asyncio.to_thread.

Exceptions::

    Exception
     └── FieldCryptError   key file unreadable, too open or malformed; ciphertext altered
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from pathlib import Path

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "field.key"
_KEY_BYTES = 32
_VERSION = 1
_NONCE_BYTES = 12
# Binds ciphertexts to this purpose, so bytes encrypted elsewhere with the key never decrypt.
_AAD = b"storelink member field v1"
_PHONE = re.compile(r"\+?[0-9 ()./-]+")
_MIN_DIGITS = 5
_MAX_DIGITS = 15  # E.164


class FieldCryptError(Exception):
    """The field key cannot be used, or a ciphertext does not decrypt."""


def normalise_phone(phone: str) -> str:
    """Digits only, keeping one leading ``+``: ``"+86 138-0013 8000"`` -> ``"+8613800138000"``."""
    text = phone.strip()
    if not _PHONE.fullmatch(text):
        raise ValueError("a phone number may hold only digits, spaces, ()./- and a leading +")
    digits = re.sub(r"[^0-9]", "", text)
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS:
        raise ValueError(f"a phone number has {_MIN_DIGITS} to {_MAX_DIGITS} digits")
    return ("+" if text.startswith("+") else "") + digits


class FieldCrypt:
    """Encrypts personal fields and hashes phone numbers with the cloud's field keys."""

    def __init__(self, key_material: bytes) -> None:
        if len(key_material) != 2 * _KEY_BYTES:
            raise FieldCryptError(f"field key material must be {2 * _KEY_BYTES} bytes")
        self._aead = AESGCM(key_material[:_KEY_BYTES])
        self._mac_key = key_material[_KEY_BYTES:]

    def encrypt(self, text: str) -> bytes:
        """Encrypt text with a fresh random nonce."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode("utf-8"), _AAD)
        return bytes([_VERSION]) + nonce + sealed

    def decrypt(self, blob: bytes) -> str:
        """Decrypt what :meth:`encrypt` produced; FieldCryptError if it was altered."""
        if len(blob) < 1 + _NONCE_BYTES or blob[0] != _VERSION:
            raise FieldCryptError("not a version 1 field ciphertext")
        nonce = blob[1 : 1 + _NONCE_BYTES]
        try:
            plain = self._aead.decrypt(nonce, blob[1 + _NONCE_BYTES :], _AAD)
        except InvalidTag as err:
            raise FieldCryptError("field ciphertext does not verify") from err
        return plain.decode("utf-8")

    def phone_hash(self, phone: str) -> str:
        """HMAC-SHA256 (hex) of the normalised number; equal for every spelling of it."""
        normalised = normalise_phone(phone).encode("ascii")
        return hmac.new(self._mac_key, normalised, hashlib.sha256).hexdigest()


FIELD_CRYPT = web.AppKey("field_crypt", FieldCrypt)


def load_field_crypt(data_dir: Path) -> FieldCrypt:
    """Load data_dir/field.key, creating it (mode 0600) on first use; blocking."""
    path = data_dir / KEY_FILE
    try:
        return FieldCrypt(_load(path))
    except FileNotFoundError:
        pass
    material = secrets.token_bytes(2 * _KEY_BYTES)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        published = _publish(path, material)
    except OSError as err:
        raise FieldCryptError(f"cannot create field key {path}: {err}") from err
    if published:
        return FieldCrypt(material)
    # Another process (a second cloud worker starting) created the key first: use theirs.
    return FieldCrypt(_load(path))


def _load(path: Path) -> bytes:
    # Checking the open descriptor, not the path, so the file cannot be swapped in between.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise FieldCryptError(f"cannot open field key {path}: {err}") from err
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise FieldCryptError(f"field key {path} is not a regular file")
        if info.st_mode & 0o077:
            raise FieldCryptError(
                f"field key {path} has mode {stat.S_IMODE(info.st_mode):04o}; "
                f"it must not be readable by group or others (chmod 600 {path})"
            )
        data = file.read()
    if len(data) != 2 * _KEY_BYTES:
        raise FieldCryptError(f"field key {path} is {len(data)} bytes, not {2 * _KEY_BYTES}")
    return data


def _publish(path: Path, material: bytes) -> bool:
    """Write material to path atomically and durably; False if path already exists."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(material)
            file.flush()
            os.fsync(file.fileno())
        # link, unlike rename, never replaces a key another process has just published.
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True
