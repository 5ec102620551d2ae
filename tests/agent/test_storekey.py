"""The store key file: created once with mode 0600, reused, refused when unsafe or foreign."""

import base64
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.storekey import (
    KEY_FILE,
    StoreKeyError,
    load_or_create_store_key,
    public_key_b64,
    public_key_pem,
)


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_created_with_mode_0600(tmp_path: Path) -> None:
    key = load_or_create_store_key(tmp_path / "data")
    path = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert os.listdir(tmp_path / "data") == [KEY_FILE]  # no temporary file left behind
    assert isinstance(key, Ed25519PrivateKey)


def test_reused_on_second_call(tmp_path: Path) -> None:
    first = load_or_create_store_key(tmp_path)
    second = load_or_create_store_key(tmp_path)
    assert raw_public(first) == raw_public(second)


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    barrier = Barrier(8)

    def start() -> bytes:
        barrier.wait()
        return raw_public(load_or_create_store_key(tmp_path))

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: start(), range(8)))
    assert keys == {raw_public(load_or_create_store_key(tmp_path))}


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_refuses_group_or_other_access(tmp_path: Path, mode: int) -> None:
    load_or_create_store_key(tmp_path)
    (tmp_path / KEY_FILE).chmod(mode)
    with pytest.raises(StoreKeyError, match="chmod 600"):
        load_or_create_store_key(tmp_path)


def test_refuses_other_key_types(tmp_path: Path) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / KEY_FILE
    path.write_bytes(other)
    path.chmod(0o600)
    with pytest.raises(StoreKeyError, match="not an Ed25519 key"):
        load_or_create_store_key(tmp_path)


def test_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    path.write_bytes(b"not a key\n")
    path.chmod(0o600)
    with pytest.raises(StoreKeyError, match="not an unencrypted PEM private key"):
        load_or_create_store_key(tmp_path)
    assert path.read_bytes() == b"not a key\n"  # never replaced


def test_refuses_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    load_or_create_store_key(real)
    (tmp_path / KEY_FILE).symlink_to(real / KEY_FILE)
    with pytest.raises(StoreKeyError, match="cannot open"):
        load_or_create_store_key(tmp_path)


def test_public_key_forms(tmp_path: Path) -> None:
    key = load_or_create_store_key(tmp_path)
    text = public_key_b64(key)
    assert len(text) == 43
    assert base64.urlsafe_b64decode(text + "=") == raw_public(key)
    pem = public_key_pem(key)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    loaded = serialization.load_pem_public_key(pem.encode())
    assert loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == (
        raw_public(key)
    )
