"""How a finished turn becomes its api-call row: one mapping, for the plugin and the manual context alike,
so a call saved either way reads the same in ``mofa usage`` and the statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast, get_args

from .._vocab import ApiCallStatus, MessageStatus
from ..llm import Usage, current_trace_id

__all__ = ["TurnOutcome", "call_fields", "call_status"]

_CALL_STATUSES: frozenset[str] = frozenset(get_args(ApiCallStatus))


class TurnOutcome(Protocol):
    """What a finished turn says about its call: a ``TurnResult`` or a finished ``ChatStream``."""

    @property
    def status(self) -> MessageStatus | None: ...
    @property
    def error(self) -> BaseException | None: ...
    @property
    def notes(self) -> Sequence[str]: ...
    @property
    def usage(self) -> Usage | None: ...
    @property
    def latency_ms(self) -> int | None: ...
    @property
    def time_to_first_token_ms(self) -> int | None: ...
    @property
    def tokens_per_second(self) -> float | None: ...
    @property
    def response_id(self) -> str | None: ...


def call_status(status: MessageStatus | None, error: BaseException | None) -> ApiCallStatus:
    """A provider error says which failure it was (``call_status``: timeout, rate_limited …)."""
    if status == "complete":
        return "success"
    if status == "cancelled":
        return "cancelled"
    named = getattr(error, "call_status", None)
    return cast(ApiCallStatus, named) if named in _CALL_STATUSES else "failed"


def call_fields(outcome: TurnOutcome) -> dict[str, Any]:
    """The ``LLMApiCall`` fields the outcome decides: status, error, usage and timings."""
    status = outcome.status
    # a stream's ``error`` may be a finishing hook's failure after a complete reply: not the call's
    error = outcome.error if status == "error" else None
    error_message = (
        str(error) if error is not None else "cancelled by the consumer" if status == "cancelled" else None
    )
    error_code = getattr(error, "code", type(error).__name__) if error is not None else None
    if outcome.notes:  # what was repaired or dropped at the provider boundary
        repaired = "provider output repaired: " + "; ".join(outcome.notes)
        error_message = f"{error_message} ({repaired})" if error_message else repaired
        # a call that succeeded only after the stream layer repaired its output says so
        error_code = error_code or "repaired"
    fields: dict[str, Any] = {
        "status": call_status(status, error),
        "error_message": error_message,
        "error_code": error_code,
        "time_to_first_token_ms": outcome.time_to_first_token_ms,
        "tokens_per_second": outcome.tokens_per_second,
        "provider_response_id": outcome.response_id,
        # the trace the call ran in (the turn's span is current where its rows are written)
        "trace_id": current_trace_id(),
    }
    if outcome.latency_ms is not None:
        fields["latency_ms"] = max(0, outcome.latency_ms)
    usage = outcome.usage
    if usage is not None:
        fields.update(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            prompt_tokens_details=usage.prompt_tokens_details,
            completion_tokens_details=usage.completion_tokens_details,
            tokens_estimated=usage.estimated,
        )
    return fields
