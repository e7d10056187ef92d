"""Messages: saving with seq, reading, paging, updating, deleting, streaming status.

Part of the store contract: every test runs on each store of the ``store`` fixture (tests/support/stores.py).
"""

# a row read back is None only when the test fails: its AttributeError is that failure, so reads are not narrowed
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mofa_sdk.entities import QueryFilter
from mofa_sdk.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from mofa_sdk.ids import utc_now
from mofa_sdk.persistence import Store
from tests.support.builders import call, msg, new_session, same


# -- messages ---------------------------------------------------------------------------------------
async def test_save_and_get_message_round_trips_every_field(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    parent = await store.save_message(msg(s, "question"))
    m = msg(
        s,
        "answer",
        role="assistant",
        agent_id=uuid.uuid4(),
        metadata={"k": [1, 2.5, None, True, {"x": "y"}]},
        parent_message_id=parent.id,
        status="complete",
    )
    saved = await store.save_message(m)
    assert saved.seq == 2
    got = await store.get_message(tenant, m.id)
    assert got is not None
    same(got, saved)
    same(got, m, "seq")


async def test_times_come_back_in_utc_whatever_zone_they_were_given_in(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    naive = datetime(2024, 5, 6, 7, 8, 9, 123456)  # taken as UTC
    plus_two = datetime(2024, 5, 6, 9, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    m = await store.save_message(msg(s, create_time=naive, update_time=plus_two))
    c = await store.save_api_call(call(s, create_time=plus_two))
    expected = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    for got in (m, await store.get_message(tenant, m.id)):
        assert got is not None
        assert (got.create_time, got.update_time) == (expected, expected)
        assert got.create_time.utcoffset() == got.update_time.utcoffset() == timedelta(0)
    read = await store.get_api_call(tenant, c.id)
    assert read is not None and read.create_time == expected and read.create_time.utcoffset() == timedelta(0)
    # a naive bound is UTC too, and compares with the stored times without a TypeError
    window = QueryFilter(tenant_id=tenant, start_time=naive, end_time=naive + timedelta(microseconds=1))
    assert [x.id for x in await store.query_api_calls(window)] == [c.id]


async def test_seq_is_one_to_n_in_save_order(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    saved = [await store.save_message(msg(s, f"m{i}")) for i in range(7)]
    assert [m.seq for m in saved] == list(range(1, 8))
    listed = await store.get_session_messages(tenant, s.id)
    assert [(m.seq, m.content) for m in listed] == [(i + 1, f"m{i}") for i in range(7)]


async def test_save_message_touches_session_update_time(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    old = utc_now() - timedelta(days=3)
    s = await new_session(store, tenant, user, create_time=old, update_time=old)
    await store.save_message(msg(s))
    got = await store.get_session(tenant, s.id)
    assert got is not None and got.update_time > old + timedelta(days=2)


async def test_save_message_needs_the_session_in_this_tenant(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    with pytest.raises(NotFoundError):
        await store.save_message(msg(s).model_copy(update={"session_id": uuid.uuid4()}))
    with pytest.raises(NotFoundError):
        await store.save_message(msg(s).model_copy(update={"tenant_id": uuid.uuid4()}))
    assert await store.count_session_messages(tenant, s.id) == 0


async def test_duplicate_message_id_is_a_conflict_and_leaves_no_gap(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    first = await store.save_message(msg(s, "one"))
    with pytest.raises(ConflictError):
        await store.save_message(msg(s, "dup", id=first.id))
    assert await store.count_session_messages(tenant, s.id) == 1
    assert (await store.get_message(tenant, first.id)).content == "one"
    assert (await store.save_message(msg(s, "two"))).seq == 2  # the failed save handed out no seq


async def test_save_messages_is_ordered_and_all_or_nothing(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    s = await new_session(store, tenant, user)
    saved = await store.save_messages([msg(s, "a"), msg(s, "b", role="assistant"), msg(s, "c")])
    assert [(m.seq, m.content) for m in saved] == [(1, "a"), (2, "b"), (3, "c")]
    bad = [msg(s, "d"), msg(s, "e", id=saved[0].id)]
    with pytest.raises(ConflictError):
        await store.save_messages(bad)
    assert [m.content for m in await store.get_session_messages(tenant, s.id)] == ["a", "b", "c"]
    assert (await store.save_message(msg(s, "f"))).seq == 4


async def test_paginated_messages(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    await store.save_messages([msg(s, str(i)) for i in range(10)])
    page = await store.get_session_messages_paginated(tenant, s.id, 3, 4)
    assert [m.content for m in page] == ["3", "4", "5", "6"]
    assert [m.seq for m in await store.get_session_messages_paginated(tenant, s.id, 8, 5)] == [9, 10]
    assert await store.get_session_messages_paginated(tenant, s.id, 10, 5) == []
    for offset, limit in [(-1, 5), (0, 0), (0, -2), (0, 10_001), ("1", 5), (0, True)]:
        with pytest.raises(ConfigError):
            await store.get_session_messages_paginated(tenant, s.id, offset, limit)  # type: ignore[arg-type]


async def test_get_last_messages_is_oldest_first(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    await store.save_messages([msg(s, str(i)) for i in range(6)])
    assert [m.content for m in await store.get_last_messages(tenant, s.id, 3)] == ["3", "4", "5"]
    assert [m.seq for m in await store.get_last_messages(tenant, s.id, 50)] == [1, 2, 3, 4, 5, 6]
    assert await store.get_last_messages(tenant, s.id, 0) == []
    with pytest.raises(ConfigError):
        await store.get_last_messages(tenant, s.id, -1)


async def test_delete_and_count_messages(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    other = await new_session(store, tenant, user)
    saved = await store.save_messages([msg(s, str(i)) for i in range(4)])
    await store.save_message(msg(other))
    assert await store.count_session_messages(tenant, s.id) == 4
    assert await store.delete_message(tenant, saved[1].id) is True
    assert await store.delete_message(tenant, saved[1].id) is False
    assert await store.get_message(tenant, saved[1].id) is None
    assert [m.seq for m in await store.get_session_messages(tenant, s.id)] == [1, 3, 4]
    assert await store.delete_session_messages(tenant, s.id) == 3
    assert await store.count_session_messages(tenant, s.id) == 0
    assert await store.count_session_messages(tenant, other.id) == 1
    # seq keeps counting after deletes: numbers are never reused
    assert (await store.save_message(msg(s))).seq == 5


async def test_update_message(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user)
    m = await store.save_message(msg(s, "", role="assistant", status="streaming", metadata={"a": 1}))
    await store.update_message(tenant, m.id, content="partial")
    got = await store.get_message(tenant, m.id)
    assert (got.content, got.status, got.metadata) == ("partial", "streaming", {"a": 1})
    assert got.update_time >= m.update_time
    await store.update_message(tenant, m.id, content="full reply", status="complete", metadata={"b": [2]})
    got = await store.get_message(tenant, m.id)
    assert (got.content, got.status, got.metadata, got.seq) == ("full reply", "complete", {"b": [2]}, 1)
    with pytest.raises(NotFoundError):
        await store.update_message(tenant, uuid.uuid4(), content="x")
    with pytest.raises(ValidationError):
        await store.update_message(tenant, m.id, status="done")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await store.update_message(tenant, m.id, content="bad \ud800")
    with pytest.raises(ValidationError):
        await store.update_message(tenant, m.id, metadata={"x": float("nan")})
    got = await store.get_message(tenant, m.id)
    assert (got.content, got.status, got.metadata) == ("full reply", "complete", {"b": [2]})


async def test_stale_streaming_reply_reads_as_interrupted(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    store.streaming_lease_seconds = 60.0
    s = await new_session(store, tenant, user)
    long_ago = utc_now() - timedelta(minutes=10)
    stale = await store.save_message(
        msg(s, "half", role="assistant", status="streaming", update_time=long_ago)
    )
    fresh = await store.save_message(msg(s, "live", role="assistant", status="streaming"))
    assert (await store.get_message(tenant, stale.id)).status == "interrupted"
    assert (await store.get_message(tenant, fresh.id)).status == "streaming"
    assert [m.status for m in await store.get_session_messages(tenant, s.id)] == ["interrupted", "streaming"]
    assert [m.status for m in await store.get_last_messages(tenant, s.id, 2)] == ["interrupted", "streaming"]
    page = await store.get_session_messages_paginated(tenant, s.id, 0, 2)
    assert [m.status for m in page] == ["interrupted", "streaming"]
    # a checkpoint renews the lease
    await store.update_message(tenant, stale.id, content="half and more")
    assert (await store.get_message(tenant, stale.id)).status == "streaming"


async def test_mark_interrupted_persists_only_stale_streaming(
    store: Store, tenant: uuid.UUID, user: uuid.UUID
) -> None:
    store.streaming_lease_seconds = 60.0
    s = await new_session(store, tenant, user)
    long_ago = utc_now() - timedelta(minutes=10)
    stale = await store.save_message(msg(s, "x", role="assistant", status="streaming", update_time=long_ago))
    fresh = await store.save_message(msg(s, "y", role="assistant", status="streaming"))
    done = await store.save_message(msg(s, "z", role="assistant", status="complete", update_time=long_ago))
    assert await store.mark_interrupted(tenant, s.id) == 1
    assert await store.mark_interrupted(tenant, s.id) == 0
    store.streaming_lease_seconds = 10_000.0  # now only a persisted status can read as interrupted
    assert (await store.get_message(tenant, stale.id)).status == "interrupted"
    assert (await store.get_message(tenant, fresh.id)).status == "streaming"
    assert (await store.get_message(tenant, done.id)).status == "complete"


async def test_returned_entities_are_copies(store: Store, tenant: uuid.UUID, user: uuid.UUID) -> None:
    s = await new_session(store, tenant, user, metadata={"k": [1]})
    m = msg(s, metadata={"list": [1, 2]})
    saved = await store.save_message(m)
    m.metadata["list"].append(3)
    saved.metadata["list"].append(4)
    got = await store.get_message(tenant, m.id)
    got.metadata["new"] = True
    assert (await store.get_message(tenant, m.id)).metadata == {"list": [1, 2]}
    (await store.get_session(tenant, s.id)).metadata["k"].append(2)
    assert (await store.get_session(tenant, s.id)).metadata == {"k": [1]}
