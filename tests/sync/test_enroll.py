"""Enrollment: the store's public key reaches the cloud once per token, with clear refusals."""

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from agent.cli import main as agent_main
from agent.db import DB_FILE, Database, Durability
from agent.enroll import EnrollError, enroll
from agent.storekey import load_or_create_store_key, public_key_b64
from agent.sync.client import CloudClient
from tests.helpers import free_port
from tests.sync.conftest import Cloud, store_config


async def state(path: Path) -> dict[str, str]:
    async with Database(path) as db:
        rows = await db.reader.execute_fetchall("SELECT key, value FROM sync_state")
    return {str(key): str(value) for key, value in rows}


async def test_enroll_registers_the_key_and_records_cloud_and_epoch(
    tmp_path: Path, cloud: Cloud
) -> None:
    config = await store_config(tmp_path, cloud.url)
    enrolled = await enroll(config, cloud.url + "/", await cloud.token())

    key = await asyncio.to_thread(load_or_create_store_key, config.store.data_dir)
    assert enrolled.public_key == public_key_b64(key)
    assert await cloud.scalar("SELECT public_key FROM stores WHERE id = 'S001'") == public_key_b64(
        key
    )
    recorded = await state(config.store.data_dir / DB_FILE)
    assert recorded["cloud_url"] == cloud.url
    assert recorded["epoch"] == cloud.epoch == enrolled.epoch
    assert "enrolled_at" in recorded
    # The key now signs requests the cloud accepts.
    async with CloudClient(cloud.url, "S001", key) as client:
        assert (await client.get_sync_state()).max_seq == 0


async def test_enrolling_again_with_a_new_token_is_harmless(tmp_path: Path, cloud: Cloud) -> None:
    config = await store_config(tmp_path, cloud.url)
    first = await enroll(config, cloud.url, await cloud.token())
    second = await enroll(config, cloud.url, await cloud.token())
    assert first.public_key == second.public_key
    assert (await state(config.store.data_dir / DB_FILE))["epoch"] == first.epoch


async def test_a_used_token_is_refused(tmp_path: Path, cloud: Cloud) -> None:
    config = await store_config(tmp_path, cloud.url)
    token = await cloud.token()
    await enroll(config, cloud.url, token)
    with pytest.raises(EnrollError, match="already used; ask head office for a new token"):
        await enroll(config, cloud.url, token)


async def test_an_expired_token_is_refused(tmp_path: Path, cloud: Cloud) -> None:
    config = await store_config(tmp_path, cloud.url)
    token = await cloud.token(ttl=timedelta(seconds=-1))
    with pytest.raises(EnrollError, match="expired; ask head office for a new token"):
        await enroll(config, cloud.url, token)


@pytest.mark.parametrize("other_store", [False, True])
async def test_a_wrong_token_is_refused(tmp_path: Path, cloud: Cloud, other_store: bool) -> None:
    config = await store_config(tmp_path, cloud.url)
    await cloud.token()
    token = await cloud.token("S002") if other_store else "not-a-token"
    with pytest.raises(EnrollError, match="it must be the one printed for store S001"):
        await enroll(config, cloud.url, token)


async def test_an_unreachable_cloud_is_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config = await store_config(tmp_path, url)
    with pytest.raises(
        EnrollError, match=f"cannot enroll at {url}: .*check --cloud and the network"
    ):
        await enroll(config, url, "token")


async def test_something_else_than_a_cloud_is_named(tmp_path: Path, cloud: Cloud) -> None:
    config = await store_config(tmp_path, cloud.url)
    with pytest.raises(EnrollError, match="no enrollment endpoint"):
        await enroll(config, cloud.url + "/nothing-here", await cloud.token())


async def test_a_data_dir_of_another_store_is_refused_before_the_token_is_spent(
    tmp_path: Path, cloud: Cloud
) -> None:
    config = await store_config(tmp_path, cloud.url)
    token = await cloud.token()
    await asyncio.to_thread(config.store.data_dir.mkdir, parents=True)
    async with Database(config.store.data_dir / DB_FILE) as db, db.write(Durability.FULL) as conn:
        await conn.execute("INSERT INTO store_meta (key, value) VALUES ('store_id', 'S002')")
    with pytest.raises(EnrollError, match="store id mismatch: data_dir belongs to store 'S002'"):
        await enroll(config, cloud.url, token)
    other = await store_config(tmp_path / "other", cloud.url)
    await enroll(other, cloud.url, token)


async def test_cli_exit_codes_and_messages(
    tmp_path: Path, cloud: Cloud, capsys: pytest.CaptureFixture[str]
) -> None:
    config = await store_config(tmp_path, cloud.url)
    path = tmp_path / "agent.toml"
    text = f'[store]\nid = "S001"\ndata_dir = "{config.store.data_dir}"\n'
    text += f'[api]\nkey = "pos-key-123"\n[cloud]\nurl = "{cloud.url}"\n'
    await asyncio.to_thread(path.write_text, text)
    argv = ["enroll", "--config", str(path), "--cloud", cloud.url, "--token"]

    assert await asyncio.to_thread(agent_main, [*argv, await cloud.token()]) == 0
    assert "store S001 enrolled with" in capsys.readouterr().out
    assert await asyncio.to_thread(agent_main, [*argv, "wrong"]) == 1
    assert "enrollment failed: the cloud refused the token" in capsys.readouterr().err
    # A token may start with "-" (base64url): it is still the token, not an option.
    assert await asyncio.to_thread(agent_main, [*argv, "-looks-like-an-option"]) == 1
    assert "the cloud refused the token" in capsys.readouterr().err
