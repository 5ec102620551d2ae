"""Phone numbers at rest: AES-GCM round trip, the key file, keyed hashes of normalised numbers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cloud.fieldcrypt import KEY_FILE, FieldCryptError, load_field_crypt, normalise_phone


def test_round_trip_with_fresh_nonces(tmp_path: Path) -> None:
    crypt = load_field_crypt(tmp_path)
    one, two = crypt.encrypt("+86 138 0013 8000"), crypt.encrypt("+86 138 0013 8000")
    assert one != two
    assert crypt.decrypt(one) == crypt.decrypt(two) == "+86 138 0013 8000"
    assert b"138" not in one


def test_key_file_is_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "dir"
    blob = load_field_crypt(data_dir).encrypt("13800138000")
    path = data_dir / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == 64
    again = load_field_crypt(data_dir)
    assert again.decrypt(blob) == "13800138000"
    assert list(data_dir.iterdir()) == [path]  # no temporary file left behind


def test_altered_ciphertext_and_foreign_key_are_refused(tmp_path: Path) -> None:
    crypt = load_field_crypt(tmp_path / "a")
    blob = bytearray(crypt.encrypt("13800138000"))
    blob[-1] ^= 1
    with pytest.raises(FieldCryptError, match="does not verify"):
        crypt.decrypt(bytes(blob))
    with pytest.raises(FieldCryptError, match="does not verify"):
        load_field_crypt(tmp_path / "b").decrypt(crypt.encrypt("13800138000"))
    with pytest.raises(FieldCryptError, match="version 1"):
        crypt.decrypt(b"\x02" + bytes(40))


def test_key_file_readable_by_others_or_truncated_is_refused(tmp_path: Path) -> None:
    load_field_crypt(tmp_path)
    path = tmp_path / KEY_FILE
    path.chmod(0o644)
    with pytest.raises(FieldCryptError, match="chmod 600"):
        load_field_crypt(tmp_path)
    path.chmod(0o600)
    path.write_bytes(b"short")
    with pytest.raises(FieldCryptError, match="5 bytes"):
        load_field_crypt(tmp_path)


@pytest.mark.parametrize(
    ("spelling", "normal"),
    [
        ("+86 138-0013-8000", "+8613800138000"),
        ("+86 (138) 0013.8000", "+8613800138000"),
        ("  13800138000 ", "13800138000"),
        ("(555) 123-4567", "5551234567"),
        ("555/123 4567", "5551234567"),
    ],
)
def test_phone_normalisation(spelling: str, normal: str) -> None:
    assert normalise_phone(spelling) == normal


@pytest.mark.parametrize("bad", ["", "call me", "12+345678", "1234", "1" * 16, "++8613800138000"])
def test_phone_that_is_not_a_number_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="phone number"):
        normalise_phone(bad)


def test_phone_hash_is_keyed_and_spelling_blind(tmp_path: Path) -> None:
    crypt = load_field_crypt(tmp_path / "a")
    digest = crypt.phone_hash("+86 138-0013-8000")
    assert digest == crypt.phone_hash("+8613800138000")
    assert len(digest) == 64
    assert digest != crypt.phone_hash("8613800138000")  # the + is part of the number
    assert digest != load_field_crypt(tmp_path / "b").phone_hash("+8613800138000")
