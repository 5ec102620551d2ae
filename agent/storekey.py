"""The store's Ed25519 key pair: signs receipt tokens; its public half is enrolled with the cloud.

Blocking file I/O: call at start-up before the event loop runs, or through asyncio.to_thread.

Exceptions::

    Exception
     └── StoreKeyError   key file unreadable, too open, or not an Ed25519 private key
"""

import base64
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_FILE = "store_key.pem"


class StoreKeyError(Exception):
    """The store key file cannot be used."""


def load_or_create_store_key(data_dir: Path) -> Ed25519PrivateKey:
    """Load data_dir/store_key.pem, creating it (mode 0600) on first use."""
    path = data_dir / KEY_FILE
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    key = Ed25519PrivateKey.generate()
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        published = _publish(path, _private_pem(key))
    except OSError as err:
        raise StoreKeyError(f"cannot create store key {path}: {err}") from err
    if published:
        return key
    # Another process (say `enroll` racing `run`) created the key first: use theirs.
    return _load(path)


def public_key_pem(key: Ed25519PrivateKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM text."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def public_key_b64(key: Ed25519PrivateKey) -> str:
    """The raw 32-byte public key, base64url without padding."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load(path: Path) -> Ed25519PrivateKey:
    # Checking the open descriptor, not the path, so the file cannot be swapped in between.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise StoreKeyError(f"cannot open store key {path}: {err}") from err
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise StoreKeyError(f"store key {path} is not a regular file")
        if info.st_mode & 0o077:
            raise StoreKeyError(
                f"store key {path} has mode {stat.S_IMODE(info.st_mode):04o}; "
                f"it must not be readable by group or others (chmod 600 {path})"
            )
        data = file.read()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise StoreKeyError(f"store key {path} is not an unencrypted PEM private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise StoreKeyError(f"store key {path} is a {type(key).__name__}, not an Ed25519 key")
    return key


def _publish(path: Path, pem: bytes) -> bool:
    """Write pem to path atomically and durably; False if path already exists."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        # link, unlike rename, never replaces a key another process has just published.
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
