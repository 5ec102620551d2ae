"""Config validation: every error names its key; nothing on disk is touched."""

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from tests.helpers import agent_toml


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_valid_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, agent_toml(tmp_path / "data", 8380, "socket://127.0.0.1")))
    assert config.store.id == "S001"
    assert config.printers[0].parsed_uri.port == 9100
    assert config.printer_for("R9") is config.printers[0]
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda t: t + 'colour = "red"\n', "printers[0].colour: unknown key"),
        (lambda t: t.replace("[cloud]", "[cloud]\nretries = 3"), "cloud.retries: unknown key"),
        (lambda t: t.replace("socket://127.0.0.1", "ftp://x"), "printers[0].uri: "),
        (lambda t: t.replace('id = "S001"\n', ""), "store.id: missing"),
        (lambda t: t.replace("127.0.0.1:8380", "localhost"), "api.listen: expected HOST:PORT"),
        (lambda t: t.replace('"TM-T88V"', '"NoSuchPrinter"'), "printers[0].profile: "),
        (lambda t: t.replace("Asia/Shanghai", "Mars/Olympus"), "store.timezone: unknown"),
        (lambda t: t.replace('key = "test-pos-key-0123"', 'key = "x"'), "api.key: "),
        (lambda t: t + '[[printers]]\nname = "front"\nuri = "file:/dev/null"\n', "used twice"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, mutate: object, expected: str) -> None:
    text = agent_toml(tmp_path / "data", 8380, "socket://127.0.0.1")
    path = write(tmp_path, mutate(text))  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert not (tmp_path / "data").exists()


def test_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[store\n"))


def test_example_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "config" / "agent.example.toml")
    assert config.printers[0].name == "front"
