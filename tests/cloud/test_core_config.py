"""cloud.toml: strict keys, errors naming the key, nothing touched on disk while validating."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloud.config import ConfigError, load_config, parse_config
from tests.cloud.conftest import cloud_toml


def test_minimal_config_has_defaults(tmp_path: Path) -> None:
    config = parse_config(cloud_toml(tmp_path / "data"))
    assert config.listen == ("127.0.0.1", 8080)
    assert config.database is None
    assert config.security.clock_skew_s == 300
    assert config.security.enrollment_ttl_hours == 72
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('listne = "x"', "cloud.toml: server.listne: unknown key"),
        ("[extra]\nx = 1", "cloud.toml: extra: unknown key"),
        ('[database]\nurl = "mysql://x"', "cloud.toml: database.url: expected a postgresql:// URL"),
        ("[security]\nclock_skew_s = 0", "cloud.toml: security.clock_skew_s:"),
        ("[security]\nenrollment_ttl = 1", "cloud.toml: security.enrollment_ttl: unknown key"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    base = cloud_toml(tmp_path)
    body = (
        base.replace("[server]\n", f"[server]\n{text}\n", 1)
        if text.startswith("listne")
        else base + text
    )
    with pytest.raises(ConfigError) as err:
        parse_config(body)
    assert message in str(err.value)


def test_missing_and_malformed_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.public_url: missing"):
        parse_config(f'[server]\nlisten = "127.0.0.1:1"\ndata_dir = "{tmp_path}"\n')
    with pytest.raises(ConfigError, match=r"server\.listen: expected HOST:PORT"):
        parse_config(cloud_toml(tmp_path).replace("127.0.0.1:8080", "localhost"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[server")


def test_postgresql_url_gets_the_asyncpg_driver(tmp_path: Path) -> None:
    config = parse_config(
        cloud_toml(tmp_path, '[database]\nurl = "postgresql://u:p@db/storelink"\n')
    )
    assert config.database is not None
    assert config.database.url == "postgresql+asyncpg://u:p@db/storelink"


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cloud.toml"
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)
    path.write_text('[server]\nlistne = "x"\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: server.listne: unknown key")):
        load_config(path)
