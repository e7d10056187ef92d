"""Tenant API keys: made here, stored hashed, checked on every request of ``mofa serve``.

A key is ``mofa_sk_`` followed by 32 random bytes (urlsafe base64). Only its SHA-256 is stored. A fast hash
is the right one here: a key has 256 bits of entropy, so nobody can search the hash space, and a slow password
hash (bcrypt, scrypt) would only add milliseconds to every request. Looking a key up by its hash also means the
comparison never happens on the secret itself.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import MutableMapping

from ..entities import ApiKey
from ..errors import ConfigError
from ..ids import utc_now
from ._store import Store

__all__ = ["API_KEY_PREFIX", "authenticate_api_key", "hash_api_key", "issue_api_key", "mask_api_key"]

API_KEY_PREFIX = "mofa_sk_"
#: last-used times are written at most this often per key (a write per request would be a write per request)
TOUCH_INTERVAL_SECONDS = 60.0


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def mask_api_key(key: ApiKey) -> str:
    """How a key may be shown once made: the prefix and its last 4 characters."""
    return f"{API_KEY_PREFIX}…{key.key_hint}"


async def issue_api_key(
    store: Store, tenant_id: uuid.UUID, user_id: uuid.UUID, name: str = ""
) -> tuple[ApiKey, str]:
    """Make a key for ``tenant_id`` acting as ``user_id``; return the stored row and the key. The key exists
    only in the return value: show it once, it cannot be read back."""
    if not isinstance(name, str):
        raise ConfigError(f"the key name must be text, got {type(name).__name__}")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(tenant_id=tenant_id, user_id=user_id, name=name, key_hash=hash_api_key(key), key_hint=key[-4:])
    return await store.create_api_key(row), key


async def authenticate_api_key(
    store: Store, key: str, *, touched: MutableMapping[uuid.UUID, float] | None = None
) -> ApiKey | None:
    """The live (not revoked) key row for ``key``, or None. Records when it was last used, at most once a
    minute per key; ``touched`` (a service's own memory of when it last did, by key id) keeps a burst of
    concurrent requests with one key from all writing that row at once."""
    if not key.startswith(API_KEY_PREFIX) or len(key) > 200:
        return None
    row = await store.get_api_key_by_hash(hash_api_key(key))
    if row is None or row.revoked:
        return None
    now = utc_now()
    if row.last_used_time is None or (now - row.last_used_time).total_seconds() > TOUCH_INTERVAL_SECONDS:
        clock = time.monotonic()
        if touched is None or clock - touched.get(row.id, -TOUCH_INTERVAL_SECONDS) > TOUCH_INTERVAL_SECONDS:
            if touched is not None:
                touched[row.id] = clock
            await store.touch_api_key(row.tenant_id, row.id, now)
    return row
