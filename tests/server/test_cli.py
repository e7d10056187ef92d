"""`mofa keys` and `mofa serve` as commands: the key printed once (the last line of stdout), masked in lists,
revocable; `--workers` > 1 refused on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from mofa_sdk.persistence import API_KEY_PREFIX, authenticate_api_key, connect_store

ROOT = Path(__file__).resolve().parents[2]


def mofa(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mofa_sdk.cli", *args], capture_output=True, text=True,
                          env=full, timeout=60, cwd=ROOT)


async def test_keys_create_list_revoke(sqlite_url: str) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    made = mofa("keys", "create", "--db", sqlite_url, "--tenant", str(tenant), "--user", str(user), "--name", "ci")
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    assert key.startswith(API_KEY_PREFIX) and key.strip() == key and made.stdout.count(key) == 1
    store = await connect_store(sqlite_url)
    try:
        row = await authenticate_api_key(store, key)
        assert row is not None and row.tenant_id == tenant and row.user_id == user and row.name == "ci"
        listed = mofa("keys", "list", "--db", sqlite_url, "--tenant", str(tenant))
        assert listed.returncode == 0 and str(row.id) in listed.stdout and key[-4:] in listed.stdout
        assert key not in listed.stdout and key[len(API_KEY_PREFIX):-4] not in listed.stdout
        gone = mofa("keys", "revoke", str(row.id), "--db", sqlite_url, "--tenant", str(tenant))
        assert gone.returncode == 0 and "revoked" in gone.stdout
        assert await authenticate_api_key(store, key) is None
        other = mofa("keys", "revoke", str(row.id), "--db", sqlite_url, "--tenant", str(uuid.uuid4()))
        assert other.returncode == 1 and "no API key" in other.stderr
    finally:
        await store.close()


def test_serve_refuses_workers_on_sqlite(sqlite_url: str) -> None:
    r = mofa("serve", "--db", sqlite_url, "--workers", "2")
    assert r.returncode == 1 and "--workers 2 needs PostgreSQL" in r.stderr
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists(), "refused before touching the database"
