"""The store's Ed25519 key pair: signs receipt tokens; its public half is enrolled with the cloud.

Blocking file I/O: call at start-up before the event loop runs, or through asyncio.to_thread.

Exceptions::

    Exception
     └── StoreKeyError   key file unreadable, too open, or not an Ed25519 private key
"""

import base64
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.keyfile import KeyFileError, publish_key_file, read_key_file

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
        published = publish_key_file(path, _private_pem(key))
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
    try:
        data = read_key_file(path, "store key")
    except KeyFileError as err:
        raise StoreKeyError(str(err)) from err
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise StoreKeyError(f"store key {path} is not an unencrypted PEM private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise StoreKeyError(f"store key {path} is a {type(key).__name__}, not an Ed25519 key")
    return key
