"""One vocabulary: the literals and the provider-type registry every layer reads (mofa_sdk._vocab)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from mofa_sdk import _vocab, entities
from mofa_sdk.cli._admin import _base, _check_api_base
from mofa_sdk.entities import Agent, AgentConfig, Provider
from mofa_sdk.errors import ConfigError, ValidationError
from mofa_sdk.llm import LLMAgentBuilder, LocalProvider, OpenAICompatibleProvider
from mofa_sdk.llm import _types as llm_types


def test_the_llm_layer_and_the_rows_share_their_literals() -> None:
    assert llm_types.ReplyStatus is entities.MessageStatus is _vocab.MessageStatus
    assert llm_types.Role is entities.MessageRole is _vocab.MessageRole
    assert entities.ApiCallStatus is _vocab.ApiCallStatus
    assert entities.PROVIDER_TYPES is _vocab.PROVIDER_TYPES


def test_every_provider_type_is_exactly_one_kind() -> None:
    for ptype in _vocab.PROVIDER_TYPES:
        assert _vocab.is_openai_provider(ptype) != _vocab.is_local_provider(ptype), ptype
    assert not _vocab.is_openai_provider("carrier-pigeon") and not _vocab.is_local_provider("carrier-pigeon")


def _config(ptype: str, api_base: str) -> AgentConfig:
    tenant = uuid.uuid4()
    provider = Provider(
        tenant_id=tenant, provider_name="p", provider_type=ptype, api_base=api_base, api_key=SecretStr("sk-x")
    )
    agent = Agent(tenant_id=tenant, agent_code="a", agent_name="A", model_name="m", provider_id=provider.id)
    return AgentConfig(agent=agent, provider=provider)


@pytest.mark.parametrize("ptype", _vocab.PROVIDER_TYPES)
def test_every_registered_type_is_stored_built_and_shown_by_its_kind(ptype: str, tmp_path: Path) -> None:
    local = _vocab.is_local_provider(ptype)
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")  # never loaded: building an agent does not read the model
    base = str(model) if local else "http://u:pw@127.0.0.1:9/v1"
    agent = LLMAgentBuilder.from_agent_config(_config(ptype, base)).build()
    assert isinstance(agent.provider, LocalProvider if local else OpenAICompatibleProvider)
    # the CLI shows a local path as given and a URL redacted, and wants a URL only for the OpenAI kinds
    assert (_base(base, ptype) == base) is local
    if local:
        _check_api_base(ptype, str(model))
    else:
        with pytest.raises(ConfigError, match="http:// or https://"):
            _check_api_base(ptype, str(model))


def test_an_unknown_type_is_refused_naming_every_registered_one() -> None:
    with pytest.raises(ValidationError) as caught:
        _config("carrier-pigeon", "http://127.0.0.1:9/v1")
    assert all(ptype in str(caught.value) for ptype in _vocab.PROVIDER_TYPES)
