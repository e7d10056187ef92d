"""Which agent answers a turn: the provider choice ``mofa chat`` makes, per request.

An agent row named in the request (by code, in the key's tenant), else the agent row the session was made
with, else the service's default: ``LLMAgentBuilder.from_env`` (OpenAI-compatible when ``OPENAI_*`` is set,
else the local model), with one provider shared by every run so that the local model is loaded once.
"""

from __future__ import annotations

import uuid

from ...entities import AgentConfig, Session
from ...errors import AgentUnavailableError, ConfigError, MofaError, NotFoundError, ServiceUnavailableError
from ...llm import LLMAgentBuilder, LLMProvider, default_provider
from ...persistence import Store

__all__ = ["AgentChooser"]


class AgentChooser:
    def __init__(self, store: Store, provider: LLMProvider | None) -> None:
        self._store = store
        self._default = provider

    @property
    def default_provider(self) -> LLMProvider:
        if self._default is None:
            try:
                self._default = default_provider()
            except ConfigError as exc:  # the service's configuration, not the request, is at fault
                raise ServiceUnavailableError(f"no LLM provider is configured for this service: {exc}",
                                              code="no_provider") from None
        return self._default

    async def builder(
        self, tenant_id: uuid.UUID, session: Session, agent_code: str | None
    ) -> tuple[LLMAgentBuilder, AgentConfig | None]:
        """A builder for the turn, and the agent row it came from (None: the default provider)."""
        config: AgentConfig | None = None
        if agent_code is not None:
            config = await self._store.get_agent_by_code_and_tenant_with_provider(tenant_id, agent_code)
            if config is None:
                raise NotFoundError(f"no agent with code {agent_code!r} (and its provider) in this tenant")
        elif session.agent_id is not None:
            agent = await self._store.get_agent(tenant_id, session.agent_id)
            if agent is not None:
                config = await self._store.get_agent_by_code_and_tenant_with_provider(tenant_id, agent.agent_code)
        try:
            if config is not None:
                return LLMAgentBuilder.from_agent_config(config), config
            return LLMAgentBuilder.from_env(provider=self.default_provider), None
        except ServiceUnavailableError:
            raise
        except MofaError as exc:
            if config is not None:
                raise AgentUnavailableError(str(exc)) from None
            raise ServiceUnavailableError(str(exc), code="agent_unavailable") from None
