"""Privacy by construction: MAC addresses become keyed hashes the moment a frame is parsed.

The per-store secret (32 random bytes, ``data_dir/wifi_secret.key``, mode 0600, published
atomically like the store key) never leaves the store. From it two keys are derived:

- the *device key*, which rotates every day (the date is part of the derivation) unless
  ``stable_keys`` is on: the same phone gets a new identifier each day, so nothing stored
  links a person's visits across days;
- the *fixed key*, which never rotates: its short tag lets the agent recognise the store's
  own devices (learned as fixed: present most of the day, day after day) after a rotation.
  Tags are only ever written down for devices learned as fixed.

A device identifier is ``device part (12 bytes) || fixed tag (8 bytes)``; both are BLAKE2b in
keyed mode, which is a MAC (RFC 7693 §3), so without the secret the identifiers say nothing.

Exceptions::

    Exception
     └── WifiSecretError   the secret file is unreadable, too open, or the wrong size
"""

from __future__ import annotations

import secrets
from datetime import date
from hashlib import blake2b
from pathlib import Path

from agent.keyfile import KeyFileError, publish_key_file, read_key_file

SECRET_FILE = "wifi_secret.key"  # noqa: S105 - a file name, not a secret
SECRET_BYTES = 32
DEVICE_PART = 12
TAG_PART = 8


class WifiSecretError(Exception):
    """The Wi-Fi secret file cannot be used."""


def load_or_create_secret(data_dir: Path) -> bytes:
    """Load data_dir/wifi_secret.key, creating it (mode 0600) on first use. Blocking I/O."""
    path = data_dir / SECRET_FILE
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    try:
        # False when another process published one first: either way, read what is there.
        publish_key_file(path, secrets.token_bytes(SECRET_BYTES))
    except OSError as err:
        raise WifiSecretError(f"cannot create the Wi-Fi secret {path}: {err}") from err
    return _load(path)


def _load(path: Path) -> bytes:
    try:
        data = read_key_file(path, "Wi-Fi secret")
    except KeyFileError as err:
        raise WifiSecretError(str(err)) from err
    if len(data) != SECRET_BYTES:
        raise WifiSecretError(
            f"Wi-Fi secret {path} has {len(data)} bytes, expected {SECRET_BYTES}; "
            "delete it to create a new one (device identifiers will change)"
        )
    return data


def _derive(secret: bytes, label: str) -> bytes:
    return blake2b(label.encode("ascii"), key=secret, digest_size=32).digest()


class DeviceHasher:
    """Turns a MAC address into a device identifier; call :meth:`rotate` at each new day."""

    def __init__(self, secret: bytes, day: date, *, stable: bool = False) -> None:
        if len(secret) != SECRET_BYTES:
            raise ValueError(f"the Wi-Fi secret must be {SECRET_BYTES} bytes")
        self._secret = secret
        self._stable = stable
        self._fixed_key = _derive(secret, "storelink wifi fixed-device tag v1")
        self._device_key = b""
        self.rotate(day)

    @classmethod
    def ephemeral(cls, day: date) -> DeviceHasher:
        """A hasher with a random secret kept nowhere (replay, calibration, tests)."""
        return cls(secrets.token_bytes(SECRET_BYTES), day)

    def rotate(self, day: date) -> None:
        """Use the device key of ``day`` (a no-op in stable mode)."""
        label = "stable" if self._stable else day.isoformat()
        self._device_key = _derive(self._secret, f"storelink wifi device key v1 {label}")

    def __call__(self, mac: bytes) -> bytes:
        """The identifier of a 6-byte MAC address: device part || fixed tag."""
        return (
            blake2b(mac, key=self._device_key, digest_size=DEVICE_PART).digest()
            + blake2b(mac, key=self._fixed_key, digest_size=TAG_PART).digest()
        )


def fixed_tag(device: bytes) -> bytes:
    """The non-rotating tag part of a device identifier."""
    return device[DEVICE_PART:]
