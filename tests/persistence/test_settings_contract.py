"""A session's settings and their changes: columns of their own (migration 0007), on every store."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from mofa_sdk.entities import Session, SessionSettings, SettingsChange
from mofa_sdk.errors import ConfigError, NotFoundError, ValidationError

Store = Any


async def _session(store: Store, tenant: uuid.UUID, user: uuid.UUID, **fields: Any) -> Session:
    created: Session = await store.create_session(Session(tenant_id=tenant, user_id=user, **fields))
    return created


async def test_create_session_keeps_the_settings_given(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
    settings = SessionSettings(agent="bot", model="m", window=None, system_prompt="Be brief.", max_tokens=64)
    change = SettingsChange(at=at, key="window", old=2, new=None)
    s = await _session(store, tenant, user, settings=settings, settings_changes=[change], metadata={"a": 1})
    found = await store.get_session(tenant, s.id)
    assert found is not None
    assert found.settings == settings
    assert found.settings_changes == [change]
    assert found.metadata == {"a": 1}  # the user's metadata holds none of it


async def test_only_the_fields_given_are_recorded(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    # a recorded window of None ("every round") is not the same as no window recorded
    s = await _session(store, tenant, user, settings=SessionSettings(window=None, system_prompt="x"))
    found = await store.get_session(tenant, s.id)
    assert found is not None and found.settings is not None
    assert found.settings.model_fields_set == {"window", "system_prompt"}
    plain = await _session(store, tenant, user)
    again = await store.get_session(tenant, plain.id)
    assert again is not None and again.settings is None and again.settings_changes == []


async def test_record_settings_sets_them_and_appends_changes(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await _session(store, tenant, user, settings=SessionSettings(model="a"), metadata={"keep": True})
    first = [SettingsChange(key="model", old="a", new="b"), SettingsChange(key="window", old=1, new=[1, {"x": 1.5}])]
    done = await store.record_session_settings(tenant, s.id, SessionSettings(model="b", window=3), first)
    assert done.settings == SessionSettings(model="b", window=3)
    assert done.update_time >= s.update_time
    second = [SettingsChange(key="model", old="b", new="c")]
    await store.record_session_settings(tenant, s.id, SessionSettings(model="c"), second)
    found = await store.get_session(tenant, s.id)
    assert found is not None
    assert found.settings == SessionSettings(model="c") and found.settings.model_fields_set == {"model"}
    assert found.settings_changes == first + second
    assert found.metadata == {"keep": True}
    # no changes: only the settings are set
    await store.record_session_settings(tenant, s.id, SessionSettings(agent=None))
    found = await store.get_session(tenant, s.id)
    assert found is not None and found.settings == SessionSettings(agent=None)
    assert found.settings_changes == first + second


async def test_concurrent_records_keep_every_change(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await _session(store, tenant, user)
    await asyncio.gather(*(
        store.record_session_settings(tenant, s.id, SessionSettings(window=i), [SettingsChange(key="w", new=i)])
        for i in range(8)
    ))  # fmt: skip
    found = await store.get_session(tenant, s.id)
    assert found is not None
    assert sorted(c.new for c in found.settings_changes) == list(range(8))


async def test_record_settings_is_scoped_by_tenant(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await _session(store, tenant, user)
    with pytest.raises(NotFoundError):
        await store.record_session_settings(uuid.uuid4(), s.id, SessionSettings(model="x"))
    with pytest.raises(NotFoundError):
        await store.record_session_settings(tenant, uuid.uuid4(), SessionSettings(model="x"))
    found = await store.get_session(tenant, s.id)
    assert found is not None and found.settings is None


async def test_bad_settings_are_refused_with_nothing_written(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await _session(store, tenant, user)
    with pytest.raises(ConfigError, match="SessionSettings"):
        await store.record_session_settings(tenant, s.id, {"model": "x"})
    with pytest.raises(ConfigError, match="SettingsChange"):
        await store.record_session_settings(tenant, s.id, SessionSettings(), [{"key": "k"}])
    with pytest.raises(ValidationError, match="NUL"):
        await store.record_session_settings(tenant, s.id, SessionSettings(system_prompt="a\x00b"))
    with pytest.raises(ValidationError, match="NUL"):
        await store.record_session_settings(tenant, s.id, SessionSettings(), [SettingsChange(key="k", new="\x00")])
    with pytest.raises(ValidationError):
        SessionSettings(window=-1)
    with pytest.raises(ValidationError):
        SessionSettings(colour="red")  # type: ignore[call-arg]
    found = await store.get_session(tenant, s.id)
    assert found is not None and found.settings is None and found.settings_changes == []


async def test_update_session_leaves_the_settings_alone(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await _session(store, tenant, user, settings=SessionSettings(model="m"))
    await store.update_session(tenant, s.id, title="t", metadata={"settings": "the user's own key"})
    found = await store.get_session(tenant, s.id)
    assert found is not None
    assert found.settings == SessionSettings(model="m")
    assert found.metadata == {"settings": "the user's own key"}
