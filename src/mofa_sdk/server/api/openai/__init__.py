"""The OpenAI views of ``mofa serve``: Chat Completions and Models, legacy Completions, Conversations (sessions),
Responses (runs) and their compaction. Each routes module renders the same runs and rows in OpenAI's shapes;
none imports another but WebSocket mode (``_responses_ws``), the Responses API over another transport."""

from fastapi import APIRouter

from ._chat import router as _chat
from ._compact import router as _compact
from ._completions import router as _completions
from ._conversations import router as _conversations
from ._responses import router as _responses
from ._responses_ws import router as _responses_ws

__all__ = ["router"]

router = APIRouter()
router.include_router(_chat)
router.include_router(_completions)
router.include_router(_conversations)
router.include_router(_responses)
router.include_router(_responses_ws)
router.include_router(_compact)
