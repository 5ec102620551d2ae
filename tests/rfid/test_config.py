"""The [rfid] config section: both room forms, and errors that name their key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from tests.helpers import agent_toml

READER = '[[rfid.readers]]\nname = "rooms-a"\nhost = "127.0.0.1:5999"\n'


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(agent_toml(tmp_path / "data", 8380, None, extra=extra))
    return path


def test_rooms_as_table_or_list(tmp_path: Path) -> None:
    table = load_config(
        write(tmp_path, "[rfid]\nmin_dwell_s = 5\n" + READER + 'rooms = {"1" = "a", "2" = "b"}\n')
    ).rfid
    listed = load_config(
        write(
            tmp_path,
            READER
            + 'rooms = [{antenna = 2, room = "b"}, {antenna = 1, room = "a"}]\n'
            + '[[rfid.readers]]\nname = "rooms-b"\nhost = "reader-b.local"\n'
            + 'rooms = {"1" = "c", "3" = "c"}\n',
        )
    ).rfid
    assert table.min_dwell_s == 5
    assert table.readers[0].room_of == {1: "a", 2: "b"} == listed.readers[0].room_of
    assert table.readers[0].address == ("127.0.0.1", 5999)
    assert listed.readers[1].address == ("reader-b.local", 5084)
    assert listed.readers[1].antennas == (1, 3)
    assert listed.raw_read_retention_days == 7


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (READER + 'rooms = {"1" = "a"}\ncolour = "red"\n', "rfid.readers[0].colour: unknown key"),
        (
            READER + 'rooms = [{antenna = 1, room = "a"}, {antenna = 1, room = "b"}]\n',
            "rfid.readers[0].rooms: antenna 1 is mapped to two rooms ('a' and 'b')",
        ),
        (
            READER + 'rooms = {"1" = "a", "01" = "b"}\n',
            "rfid.readers[0].rooms: antenna 1 is mapped to two rooms",
        ),
        (READER + 'rooms = {"left" = "a"}\n', "rfid.readers[0].rooms: antenna 'left' is not"),
        (READER + "rooms = {}\n", "rfid.readers[0].rooms: "),
        (READER.replace("127.0.0.1:5999", "h:99999") + 'rooms = {"1" = "a"}\n', "host: port"),
        (READER + 'rooms = {"1" = "a"}\nsession = 7\n', "rfid.readers[0].session: "),
        (
            READER + 'rooms = {"1" = "a"}\n' + READER + 'rooms = {"1" = "b"}\n',
            "readers[1].name: reader name 'rooms-a' is used twice",
        ),
        (
            READER
            + 'rooms = {"1" = "a"}\n'
            + READER.replace("rooms-a", "rooms-b")
            + 'rooms = {"1" = "a"}\n',
            "readers[1].rooms: room 'a' is already watched by reader 'rooms-a'",
        ),
        ("[rfid]\nwindow = 2\n", "rfid.window: unknown key"),
    ],
)
def test_invalid_rfid_config_names_the_key(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, extra))
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            READER + 'rooms = {"1" = "a"}\nmode = "fast"\n',
            "rfid.readers[0].mode: unknown key",
        ),
        (
            READER + 'rooms = [{antenna = 2, room = "a"}, {antenna = 2, room = "b"}]\n',
            "rfid.readers[0].rooms: antenna 2 is mapped to two rooms",
        ),
    ],
)
def test_agent_run_exits_2_naming_the_key(tmp_path: Path, extra: str, expected: str) -> None:
    path = write(tmp_path, extra)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "storelink-agent"), "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr
    assert str(path) in proc.stderr
    assert not (tmp_path / "data").exists()
