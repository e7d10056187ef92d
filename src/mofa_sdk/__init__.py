"""mofa-sdk: streaming LLM conversations persisted to PostgreSQL or SQLite.

Public surface: :mod:`mofa_sdk.llm` (agents, providers, streams), :mod:`mofa_sdk.persistence`
(stores, plugin, manual context, quick helpers), :mod:`mofa_sdk.errors` and :mod:`mofa_sdk.entities`.
"""

from .errors import MofaError

__all__ = ["MofaError", "__version__"]
__version__ = "0.1.0"
