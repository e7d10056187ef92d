"""``settle_settings``: the one rule that turns a session's recorded settings and what a caller asks for into
what answers it (issue 21). Pure: no store, no provider call."""

from __future__ import annotations

from mofa_sdk.entities import SessionSettings
from mofa_sdk.llm import ScriptedProvider, provider_label, settings_changes, settle_settings

DEFAULTS = SessionSettings(model="default-model", system_prompt="Default.", window=None)


def settle(stored: SessionSettings | None, given: SessionSettings, label: str = "p1",
           serves: bool = True) -> dict[str, object]:
    out = settle_settings(stored, given, DEFAULTS, label=label, serves=lambda _: serves)
    return out.model_dump(exclude_unset=True)


def test_a_new_session_takes_the_defaults_and_what_is_given() -> None:
    assert settle(None, SessionSettings(window=2)) == {
        "provider": "p1", "model": "default-model", "system_prompt": "Default.", "window": 2,
    }


def test_what_was_recorded_wins_over_the_defaults_and_what_is_given_over_both() -> None:
    stored = SessionSettings(provider="p1", model="m", system_prompt="Kept.", window=None, max_tokens=9, agent="a")
    assert settle(stored, SessionSettings()) == stored.model_dump(exclude_unset=True)
    assert settle(stored, SessionSettings(window=3, agent=None))["window"] == 3
    assert settle(stored, SessionSettings(agent=None))["agent"] is None


def test_a_model_is_restored_only_on_its_provider_and_when_served() -> None:
    stored = SessionSettings(provider="p1", model="m")
    assert settle(stored, SessionSettings())["model"] == "m"
    assert settle(stored, SessionSettings(), label="p2")["model"] == "default-model"
    assert settle(stored, SessionSettings(), serves=False)["model"] == "default-model"
    assert settle(stored, SessionSettings(model="asked"), label="p2")["model"] == "asked"


def test_the_reply_cap_and_agent_are_recorded_only_once_asked_for() -> None:
    out = settle(None, SessionSettings())
    assert "max_tokens" not in out and "agent" not in out
    assert settle(None, SessionSettings(max_tokens=None))["max_tokens"] is None


def test_changes_name_only_recorded_settings_given_another_value() -> None:
    stored = SessionSettings(model="m", window=1)
    settled = SessionSettings(model="m", window=None, system_prompt="new")
    [change] = settings_changes(stored, settled)
    assert (change.key, change.old, change.new) == ("window", 1, None)
    assert settings_changes(None, settled) == []


def test_the_label_names_the_provider_without_secrets() -> None:
    assert provider_label(ScriptedProvider()) == "scripted"
    from mofa_sdk.llm import OpenAICompatibleProvider

    hosted = OpenAICompatibleProvider(base_url="http://user:s3cret@127.0.0.1:9/v1?api_key=k3y", api_key="sk-x")
    label = provider_label(hosted)
    assert label.startswith("openai-compatible http://") and "s3cret" not in label and "k3y" not in label
